"""Download a public hotdog dataset and lay it out as class folders.

``fetch("hotdog-nothotdog", "data/")`` downloads the archive named in ``DATASETS``, checks its
SHA-256, and extracts only the images, into ``data/hotdog-nothotdog/hot_dog/`` and
``data/hotdog-nothotdog/not_hot_dog/`` (the layout ``training.data.find_images`` reads).

Safety: the archive is streamed to a temporary file and hashed as it arrives; a download cut
short (fewer bytes than its Content-Length, or a chunked stream that breaks off) or a checksum
mismatch deletes it. Nothing is extracted without a SHA-256 to check it against: from the
registry, from ``--sha256``, or waived with ``--insecure``; when none is known, the command
stops and prints the download's digest, to be checked and passed as ``--sha256``. Extraction
never trusts member paths: absolute paths and ``..`` are refused, links and devices are
skipped, every file is written under a name chosen here, and the total written is capped
(``MAX_EXTRACT_BYTES``, and 100x the archive's size). Work happens in a hidden staging folder
that is renamed into place only when complete; leftovers of killed runs are removed.

Registry entries point at immutable archives (a commit, over https). Their digests are not
pinned yet: the hosts could not be reached from where this file was written.
"""

from __future__ import annotations

import fnmatch
import hashlib
import http.client
import logging
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tqdm.auto import tqdm

from training.data import IMAGE_EXTENSIONS, DatasetError, label_from_folder

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
#: Most bytes one fetch may write (the full Food-101 is 5 GB).
MAX_EXTRACT_BYTES = 8 * 2**30
#: Most bytes written per byte of archive: photos don't compress, zip bombs do.
MAX_EXPANSION = 100


class FetchError(DatasetError):
    """A download or extraction that failed; ``str(err)`` is a one-line message."""


#: The class folders a fetch writes, by label (the layout of ``../shared/data``).
FOLDERS = ("not_hot_dog", "hot_dog")


@dataclass(frozen=True)
class RemoteDataset:
    """Where a dataset lives and how its archive maps onto class folders.

    url: a zip or tar (optionally compressed) archive.
    sha256: hex digest of the archive, or None if not pinned yet (logged after download).
    layout: ``pattern -> class folder`` (``"hot_dog"`` or ``"not_hot_dog"``). A pattern is
        an ``fnmatch`` glob matched against each image's path in the archive (after dropping
        ``strip`` leading folders) and against each of its parent folders; the first pattern
        that matches decides. Empty: the class comes from the nearest folder whose name is a
        label variant (``hotdog``, ``not-hot-dog``, ...), as in ``training.data``.
    strip: leading path components to drop (GitHub archives wrap everything in one folder).
    """

    url: str
    sha256: str | None = None
    layout: Mapping[str, str] = field(default_factory=dict)
    strip: int = 0
    description: str = ""
    license: str = ""


def _github(repo: str, ref: str) -> str:
    return f"https://github.com/{repo}/archive/{ref}.zip"


_TRUEPOSITIVE = _github("truepositive/hotdog_nothotdog", "5f9315726922502ad66572338443da3993d9c7a3")

DATASETS: dict[str, RemoteDataset] = {
    "hotdog-nothotdog": RemoteDataset(
        url=_TRUEPOSITIVE,
        layout={"train/hotdog": "hot_dog", "train/not_hotdog": "not_hot_dog"},
        strip=1,
        description="Stock-style photos (longest side <= 224 px), train split: 100 + 100.",
        license="AGPL-3.0 (train on it; do not commit the images)",
    ),
    "hotdog-nothotdog-val": RemoteDataset(
        url=_TRUEPOSITIVE,
        layout={"val/hotdog": "hot_dog", "val/not_hotdog": "not_hot_dog"},
        strip=1,
        description="The same dataset's validation split: keep it for the final measurement.",
        license="AGPL-3.0",
    ),
    "flickr-hotdogs": RemoteDataset(
        # Folder 1 is hotdog, 0 is not (the repository's dataset.py prints "Is hot-dog:
        # label == 1"). The commit is the default branch's head since May 2020.
        url=_github(
            "YouCanKeepSilence/hotdog_classifier", "cbbae533a5e5a6df75d76826227631f774689eda"
        ),
        layout={
            "data/train/1": "hot_dog",
            "data/test/1": "hot_dog",
            "data/train/0": "not_hot_dog",
            "data/test/0": "not_hot_dog",
        },
        strip=1,
        description="Flickr photos labelled hotdog / not hotdog (about 2,000), many not food.",
        license="no license stated: research use",
    ),
    "seefood-hotdogs": RemoteDataset(
        url=_github("csluk2001/seefood-not-hotdog", "2a77547a6bc6caf5ae13d7d77221300a2c7e652c"),
        layout={"yolo/model/train_data/*/images/*": "hot_dog"},
        strip=1,
        description="Hotdog photos from a YOLO detection set (positives only).",
        license="no license stated: research use",
    ),
    "food101-64": RemoteDataset(
        url=_github("Gandolier/genai_food101_repo", "02b58ce0a602f2372bbc8dee1dbd0b0ec6ad93f9"),
        layout={"data/*/hot_dog": "hot_dog", "data/*/*": "not_hot_dog"},
        strip=1,
        description="Food-101 at 64x64: hot_dog vs the other 100 foods.",
        license="Food-101: research use",
    ),
    "food-101": RemoteDataset(
        url="https://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",
        layout={"images/hot_dog": "hot_dog", "images/*": "not_hot_dog"},
        strip=1,
        description="The full Food-101 (5 GB; 1,000 hotdogs, 100,000 other foods).",
        license="Food-101 (Bossard et al., ECCV 2014): research use",
    ),
}


def fetch(
    name: str,
    dest: str | os.PathLike,
    url: str | None = None,
    progress: bool = True,
    *,
    sha256: str | None = None,
    force: bool = False,
    keep_archive: bool = False,
    insecure: bool = False,
    max_bytes: int = MAX_EXTRACT_BYTES,
) -> Path:
    """Download dataset ``name`` into ``dest/<name>/{hot_dog,not_hot_dog}/`` and return that path.

    name: a key of ``DATASETS``, or any folder name when ``url`` is given.
    url: override the registry's URL (a mirror of the same archive, a ``file://`` URL or a
        local archive path). An unregistered name uses the automatic layout (class from
        folder names).
    progress: show a tqdm progress bar on stderr.
    sha256: expected digest; default the registry's. With none known, nothing is extracted
        (the error names the download's digest) unless ``insecure``.
    force: download again even if ``dest/<name>`` already holds files.
    keep_archive: keep the downloaded archive as ``dest/<name>.<ext>``.
    insecure: extract without a digest to check (the digest is logged).
    max_bytes: most bytes the extraction may write.

    Raises ``FetchError`` (a ``DatasetError``, so a ``ValueError``) with a one-line message.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise FetchError(f"invalid dataset name {name!r}: use letters, digits, '.', '_', '-'")
    spec = DATASETS.get(name)
    if spec is None and url is None:
        known = ", ".join(sorted(DATASETS))
        raise FetchError(f"unknown dataset {name!r}; known: {known} (or pass a url)")
    spec = spec or RemoteDataset(url=str(url))
    url = _normalise_url(url or spec.url)
    expected = (sha256 or spec.sha256 or "").lower() or None
    if expected is not None and not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise FetchError(f"--sha256 must be 64 hexadecimal digits, not {expected!r}")

    dest = Path(dest)
    target = dest / name
    if not force and target.is_dir() and any(p.is_file() for p in target.rglob("*")):
        log.info("%s is already in %s (force=True downloads it again)", name, target)
        return target
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot create {dest}: {exc.strerror or exc}") from None
    for leftover in (*dest.glob(f".{name}.*.download"), *dest.glob(f".{name}.*.partial")):
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink(missing_ok=True)

    archive = _download(url, dest, name, expected, progress, insecure)
    try:
        limit = min(max_bytes, max(64 * 2**20, MAX_EXPANSION * archive.stat().st_size))
        counts = _extract(archive, dest, name, spec, limit)
    finally:
        if keep_archive:
            archive.replace(dest / f"{name}{_archive_suffix(url)}")
        else:
            archive.unlink(missing_ok=True)
    log.info(
        "%s: %d hot_dog and %d not_hot_dog images in %s",
        name,
        counts["hot_dog"],
        counts["not_hot_dog"],
        target,
    )
    return target


def _normalise_url(url: str) -> str:
    if "://" not in url and Path(url).exists():
        return Path(url).resolve().as_uri()
    return url


def _archive_suffix(url: str) -> str:
    path = urllib.parse.urlparse(url).path.lower()
    for suffix in (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip"):
        if path.endswith(suffix):
            return suffix
    return ".archive"


#: The longest a whole download may take: a server that trickles a byte at a time, each within
#: the socket timeout, is given up on instead of running forever.
DOWNLOAD_DEADLINE_S = 30 * 60


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    """Follows redirects, except from https to plain http (the archive would then come
    unencrypted from wherever the redirect points)."""

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> Any:
        if req.full_url.lower().startswith("https:") and not newurl.lower().startswith("https:"):
            raise FetchError(f"refusing a redirect from https to {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_NoDowngrade)


def _download(
    url: str,
    dest: Path,
    name: str,
    expected: str | None,
    progress: bool,
    insecure: bool,
    deadline_s: float = DOWNLOAD_DEADLINE_S,
) -> Path:
    """Stream ``url`` into a hidden file in ``dest``, checking its length and SHA-256, in at
    most ``deadline_s`` seconds."""
    fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{name}.", suffix=".download")
    path = Path(tmp)
    digest = hashlib.sha256()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "hotdog-fetch/1"})
        give_up = time.monotonic() + deadline_s
        with os.fdopen(fd, "wb") as out, _OPENER.open(request, timeout=60) as response:
            total = response.headers.get("Content-Length")
            with tqdm(
                total=int(total) if total and total.isdigit() else None,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=name,
                disable=not progress,
            ) as bar:
                received = 0
                read = getattr(response, "read1", response.read)  # what has arrived, no waiting
                while chunk := read(_CHUNK):
                    if time.monotonic() > give_up:
                        raise FetchError(
                            f"download of {name} from {url} took over {deadline_s:.0f} s "
                            f"({received:,} bytes so far); gave up, run the command again"
                        )
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
                    received += len(chunk)
            if total and total.isdigit() and received != int(total):
                raise FetchError(
                    f"download of {name} from {url} was cut off: {received:,} of {int(total):,} "
                    "bytes arrived; run the command again"
                )
    except http.client.HTTPException as exc:  # e.g. IncompleteRead: a chunked stream broke off
        path.unlink(missing_ok=True)
        raise FetchError(
            f"download of {name} from {url} was cut off ({type(exc).__name__}); run the "
            "command again"
        ) from None
    except FetchError:
        path.unlink(missing_ok=True)
        raise
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        path.unlink(missing_ok=True)
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code} {exc.reason}"
        else:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise FetchError(f"download of {name} from {url} failed: {reason}") from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise

    actual = digest.hexdigest()
    if expected is not None and actual != expected:
        path.unlink(missing_ok=True)
        raise FetchError(
            f"checksum mismatch for {name}: expected sha256 {expected}, got {actual}; "
            "the download was deleted"
        )
    if expected is None and not insecure:
        path.unlink(missing_ok=True)
        raise FetchError(
            f"no checksum is known for {name}, so nothing was extracted; the download's sha256 "
            f"is {actual}: check it against the source, then run again with --sha256 {actual} "
            "(or --insecure to skip the check)"
        )
    if expected is None:
        log.warning("%s: extracting without a checksum (insecure); its sha256 is %s", name, actual)
    return path


# --------------------------------------------------------------------------- extraction


def _umask() -> int:
    """The process's umask (read by setting it, then putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _safe_parts(member: str) -> tuple[str, ...]:
    """Path components of an archive member, or ``FetchError`` if it could escape."""
    clean = member.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean):
        raise FetchError(f"unsafe path in archive: {member!r}")
    parts = tuple(p for p in clean.split("/") if p not in ("", "."))
    if ".." in parts:
        raise FetchError(f"unsafe path in archive: {member!r}")
    return parts


def _class_of(parts: tuple[str, ...], spec: RemoteDataset) -> str | None:
    """Class folder for an image at ``parts`` (already stripped), or None to skip it."""
    if not spec.layout:
        for folder in reversed(parts[:-1]):
            label = label_from_folder(folder)
            if label is not None:
                return FOLDERS[label]
        return None
    candidates = ["/".join(parts[:k]) for k in range(len(parts), 0, -1)]
    for pattern, cls in spec.layout.items():
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            return cls
    return None


@contextmanager
def _members(archive: Path) -> Iterator[Iterator[tuple[str, IO[bytes] | None]]]:
    """Yield ``(name, stream)`` for each archive member; stream is None for non-regular files.

    Tar archives are read in one forward pass (a compressed tar cannot seek cheaply).
    """
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:

            def zip_members() -> Iterator[tuple[str, IO[bytes] | None]]:
                for info in zf.infolist():
                    mode = info.external_attr >> 16
                    regular = not info.is_dir() and not stat.S_ISLNK(mode)
                    if regular:
                        with zf.open(info) as stream:
                            yield info.filename, stream
                    else:
                        yield info.filename, None

            yield zip_members()
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive, mode="r|*") as tf:

            def tar_members() -> Iterator[tuple[str, IO[bytes] | None]]:
                for member in tf:
                    yield member.name, tf.extractfile(member) if member.isfile() else None

            yield tar_members()
    else:
        raise FetchError("the download is not a zip or tar archive")


def _extract(
    archive: Path, dest: Path, name: str, spec: RemoteDataset, max_bytes: int
) -> dict[str, int]:
    """Copy the archive's images into ``dest/<name>/<class>/``, writing at most ``max_bytes``;
    returns counts per class."""
    staging = Path(tempfile.mkdtemp(dir=dest, prefix=f".{name}.", suffix=".partial"))
    staging.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would hide the data from other users
    counts = dict.fromkeys(FOLDERS, 0)
    used: dict[str, dict[str, int]] = {c: {} for c in FOLDERS}
    written = 0
    try:
        try:
            with _members(archive) as members:
                for member, stream in members:
                    parts = _safe_parts(member)  # checked for every member, even skipped ones
                    if stream is None or len(parts) <= spec.strip:
                        continue
                    parts = parts[spec.strip :]
                    if posixpath.splitext(parts[-1])[1].lower() not in IMAGE_EXTENSIONS:
                        continue
                    if parts[-1].startswith("."):
                        continue
                    cls = _class_of(parts, spec)
                    if cls is None:
                        continue
                    out_name = _unique_name(parts[-1], used[cls])
                    (staging / cls).mkdir(exist_ok=True)
                    with open(staging / cls / out_name, "wb") as out:
                        while block := stream.read(_CHUNK):
                            written += len(block)
                            if written > max_bytes:
                                raise FetchError(
                                    f"the {name} archive expands to over {max_bytes:,} bytes; "
                                    "refusing it (a zip bomb, or not the expected archive)"
                                )
                            out.write(block)
                    counts[cls] += 1
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
            raise FetchError(f"cannot extract the {name} archive: {exc}") from None
        if not any(counts.values()):
            raise FetchError(f"the {name} archive holds no images in the expected folders")
        target = dest / name
        if target.exists():
            shutil.rmtree(target)
        staging.replace(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return counts


def _unique_name(filename: str, used: dict[str, int]) -> str:
    """``filename``, or ``stem-2.ext``, ``stem-3.ext``... if already taken in this class.
    ``used`` maps each name taken (lower case) to the last suffix tried for it, so 20,000
    members of one name cost 20,000 steps, not 200 million."""
    stem, ext = posixpath.splitext(filename)
    key = filename.lower()
    candidate, n = filename, used.get(key, 1)
    while candidate.lower() in used:
        n += 1
        candidate = f"{stem}-{n}{ext}"
    used[key] = n
    used.setdefault(candidate.lower(), 1)
    return candidate
