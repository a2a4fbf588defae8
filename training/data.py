"""Folder datasets: discovery, decoding into a uint8 cache, splits and balanced batches.

Layout is torchvision's ImageFolder convention, ``<root>/<class>/<image>``, with the class
folder names of real datasets (``hot_dog``, ``hotdog``, ``not_hot_dog``, ``nothotdog``, ...).
A root may also be a folder of such roots (``../shared/data`` holds four): both are found.

``load_dataset`` decodes every image once through ``models.preprocess`` and keeps two uint8
arrays per image:

- ``images`` ``(N, S, S, 3)``: the centre square at ``S = cache_size`` (a little larger than the
  model input), room for random-resized-crop augmentation;
- ``eval_images`` ``(N, size, size, 3)``: exactly what the app feeds the model for that file
  (``models.preprocess.decode(path, size)``), so validation scores the serving path itself.

Both are cached on disk, keyed by the files' paths, sizes and modification times, so a second
training run skips decoding.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import signal
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from micrograd.backend import cpu_count
from models.classifier import CLASS_NAMES
from models.io import atomic_write
from models.preprocess import REDUCING_GAP, RESAMPLE, ImageError, decode

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif"}
)

# Folder names after lower-casing and dropping spaces, "_" and "-".
_HOTDOG_NAMES = frozenset({"hotdog", "hotdogs"})
_NOT_HOTDOG_NAMES = frozenset({"nothotdog", "nothotdogs", "notahotdog", "other", "others"})

# Bump when the decoding or the cache format changes, so old cache files are not reused.
CACHE_VERSION = 1

Roots = str | os.PathLike | Iterable[str | os.PathLike]
Progress = Callable[[int, int], None]


class DatasetError(ValueError):
    """A dataset that cannot be used; ``str(err)`` is a one-line message."""


class SkippedImagesWarning(UserWarning):
    """Some image files could not be decoded and were left out."""


@dataclass(frozen=True)
class Sample:
    """One image file: its path, label (1 = hotdog, 0 = not) and source (dataset root name)."""

    path: Path
    label: int
    source: str


def label_from_folder(name: str) -> int | None:
    """Map a class-folder name to a label: 1 hotdog, 0 not hotdog, None if neither.

    Case, spaces, ``_`` and ``-`` are ignored: ``Hot_Dog``, ``hot-dog``, ``hotdogs`` -> 1;
    ``not_hot_dog``, ``NotHotdog``, ``not hotdogs``, ``other`` -> 0.
    """
    key = re.sub(r"[\s_\-]+", "", name.lower())
    if key in _HOTDOG_NAMES:
        return 1
    if key in _NOT_HOTDOG_NAMES:
        return 0
    return None


def _as_paths(roots: Roots) -> list[Path]:
    if isinstance(roots, (str, os.PathLike)):
        return [Path(roots)]
    return [Path(r) for r in roots]


def _visible_dirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise DatasetError(f"cannot list {folder}: {exc.strerror or exc}") from None


def _class_dirs(folder: Path) -> list[tuple[Path, int]]:
    found = [(d, label_from_folder(d.name)) for d in _visible_dirs(folder)]
    return [(d, label) for d, label in found if label is not None]


def _dataset_roots(root: Path) -> list[Path]:
    """``root`` itself if it holds class folders, else its sub-folders that do."""
    if not root.exists():
        raise DatasetError(f"no such folder: {root}")
    if not root.is_dir():
        raise DatasetError(f"not a folder: {root}")
    if _class_dirs(root):
        return [root]
    nested = [d for d in _visible_dirs(root) if _class_dirs(d)]
    if nested:
        return nested
    if label_from_folder(root.name) is not None:
        raise DatasetError(f"{root} is a class folder; pass the folder that contains it")
    raise DatasetError(
        f"no class folders in {root} (expected sub-folders such as hot_dog/ and not_hot_dog/, "
        "or dataset folders that contain them)"
    )


def _image_files(folder: Path) -> list[str]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            # Hidden files include macOS "._photo.jpg" resource forks, which are not images.
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                files.append(os.path.join(dirpath, name))
    return sorted(files)


def find_images(roots: Roots) -> list[Sample]:
    """List the labelled images under ``roots`` (one path or several).

    Each root is a dataset root (it holds class folders) or a folder of dataset roots. Class
    folders are searched recursively; hidden files and unknown extensions are ignored. A file
    reachable from two roots (e.g. ``data`` and ``data/food101-64``) is listed once. Order is
    deterministic: roots in the given order (nested roots sorted by name), files by path.

    Raises ``DatasetError`` for a missing root, a root without class folders, or no images.
    """
    samples: list[Sample] = []
    seen: set[str] = set()
    paths = _as_paths(roots)
    if not paths:
        raise DatasetError("no dataset folders given")
    for root in paths:
        for dataset_root in _dataset_roots(root):
            source = dataset_root.resolve().name
            for class_dir, label in _class_dirs(dataset_root):
                # Resolve the folder once, not every file: thousands of realpath calls cost
                # more than decoding a cached dataset.
                prefix, real = len(str(class_dir)), os.path.realpath(class_dir)
                for path in _image_files(class_dir):
                    key = real + path[prefix:]
                    if key not in seen:
                        seen.add(key)
                        samples.append(Sample(Path(path), label, source))
    if not samples:
        shown = ", ".join(str(p) for p in paths)
        raise DatasetError(f"no images found in {shown} (extensions: {_extensions_text()})")
    return samples


def _extensions_text() -> str:
    return " ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))


# ------------------------------------------------------------------------------- datasets


@dataclass
class Dataset:
    """Decoded images with their labels, in ``find_images`` order.

    images: ``uint8 (N, S, S, 3)`` RGB, the centre square at ``S = cache_size`` (for training
        augmentation).
    eval_images: ``uint8 (N, size, size, 3)`` RGB, exactly the serving path's pixels.
    labels: ``int64 (N,)``, 1 = hotdog.
    sources: ``str (N,)``, dataset root name of each image (e.g. ``food101-64``).
    paths: ``str (N,)``, file path of each image.
    skipped: ``(path, reason)`` for every file that could not be decoded.
    """

    images: np.ndarray
    eval_images: np.ndarray
    labels: np.ndarray
    sources: np.ndarray
    paths: np.ndarray
    skipped: tuple[tuple[str, str], ...] = field(default=())

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def size(self) -> int:
        """Model input side (of ``eval_images``)."""
        return int(self.eval_images.shape[1])

    @property
    def cache_size(self) -> int:
        """Side of the stored training squares (of ``images``)."""
        return int(self.images.shape[1])

    def fingerprint(self) -> str:
        """Identity of these images: their pixels as the model sees them, labels and file
        paths (sha256 hex). A checkpoint or a feature cache made from other photos (even ones
        of the same names, sizes and time stamps), or another split, differs."""
        h = hashlib.sha256()
        h.update(json.dumps([self.images.shape, self.eval_images.shape]).encode())
        h.update(hashlib.blake2b(np.ascontiguousarray(self.eval_images).data).digest())
        h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        # surrogateescape: a file name that is not UTF-8 still hashes, byte for byte
        h.update("\n".join(self.paths.tolist()).encode("utf-8", "surrogateescape"))
        return h.hexdigest()

    def subset(self, idx: np.ndarray | Sequence[int]) -> Dataset:
        """The images at integer indices ``idx`` (copies), e.g. a train or validation split."""
        idx = np.asarray(idx, dtype=np.int64)
        return Dataset(
            self.images[idx],
            self.eval_images[idx],
            self.labels[idx],
            self.sources[idx],
            self.paths[idx],
            self.skipped,
        )

    def summary(self) -> dict:
        """JSON-ready counts for model cards (files that could not be read are counted once,
        by the card, not per split).

        ``{"n": N, "sources": {source: {"not_hotdog": n0, "hotdog": n1}}}``
        """
        by_source: dict[str, dict[str, int]] = {}
        for source in sorted(set(self.sources.tolist())):
            mask = self.sources == source
            by_source[source] = {
                name: int(np.sum(self.labels[mask] == label))
                for label, name in enumerate(CLASS_NAMES)
            }
        return {"n": len(self), "sources": by_source}


def default_cache_dir() -> Path:
    """``$HOTDOG_CACHE_DIR``, else ``$XDG_CACHE_HOME/hotdog``, else ``~/.cache/hotdog``."""
    if os.environ.get("HOTDOG_CACHE_DIR"):
        return Path(os.environ["HOTDOG_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hotdog"


def load_dataset(
    roots: Roots,
    size: int = 64,
    cache_size: int | None = None,
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Dataset:
    """Find and decode every image under ``roots`` into a ``Dataset``.

    size: model input side (``eval_images``).
    cache_size: side of the stored training squares (``images``); default ``ceil(1.25 * size)``
        so random crops have room. ``cache_size == size`` decodes once and shares the array
        (what evaluation wants).
    cache: read / write the decoded arrays as ``.npz`` in ``cache_dir`` (default
        ``default_cache_dir()``), keyed by paths, labels, file sizes and mtimes.
    workers: decoding processes (default: the CPUs available; 1 decodes in this process).
    progress: called as ``progress(done, total)`` while decoding.

    Unreadable files are skipped and reported in one ``SkippedImagesWarning``. Raises
    ``DatasetError`` if the folders hold no usable image.
    """
    cache_size = math.ceil(1.25 * size) if cache_size is None else cache_size
    if size < 1 or cache_size < size:
        raise ValueError(f"need 1 <= size <= cache_size, got size={size}, cache_size={cache_size}")
    samples = find_images(roots)
    cache_file = None
    if cache:
        cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        cache_file = cache_dir / f"dataset-{_cache_key(samples, size, cache_size)}.npz"
        dataset = _read_cache(cache_file, size, cache_size)
        if dataset is not None:
            if progress:
                progress(len(samples), len(samples))
            warn_skipped(dataset.skipped)
            return dataset

    dataset = _decode_all(samples, size, cache_size, workers, progress)
    if len(dataset) == 0:
        shown = ", ".join(str(p) for p in _as_paths(roots))
        raise DatasetError(f"none of the {len(samples)} image files in {shown} could be read")
    if cache_file is not None:
        _write_cache(cache_file, dataset)
    warn_skipped(dataset.skipped)
    return dataset


def _content_digest(path: str) -> str:
    """A fast digest of a file's bytes (BLAKE2b, streamed): a photo replaced by another of the
    same size and time stamp is a different photo. "missing" for a file that cannot be read."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
    except OSError:
        return "missing"


def _cache_key(samples: list[Sample], size: int, cache_size: int) -> str:
    h = hashlib.sha256()
    settings = {
        "version": CACHE_VERSION,
        "size": size,
        "cache_size": cache_size,
        "resample": [int(RESAMPLE), REDUCING_GAP],
        "pillow": Image.__version__,  # a new decoder may round differently
    }
    h.update(json.dumps(settings, sort_keys=True).encode())
    for s in samples:
        path = os.path.abspath(s.path)
        stamp = _content_digest(path)
        h.update(f"\n{path}\t{s.label}\t{s.source}\t{stamp}".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:24]


def _decode_one(path: str, size: int, cache_size: int) -> tuple[np.ndarray, np.ndarray] | str:
    """Decode one file -> ``(cache_size square, size square)`` uint8 arrays, or an error text.

    Two decodes when the sizes differ: a big JPEG is decoded at the reduced scale its target
    size allows, so the serving pixels can differ from a resize of the training square.
    """
    try:
        served = decode(path, size)
        return (served if cache_size == size else decode(path, cache_size)), served
    except ImageError as exc:
        return str(exc)
    except Exception as exc:  # a decoder bug must not end a training run; report it instead
        return f"{type(exc).__name__}: {exc}"


def _decode_star(args: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray] | str:
    return _decode_one(*args)


def _ignore_interrupts() -> None:
    """Decoding workers leave Ctrl-C to the main process, which stops them and says so in one
    line; otherwise each worker would print a traceback of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _decode_all(
    samples: list[Sample],
    size: int,
    cache_size: int,
    workers: int | None,
    progress: Progress | None,
) -> Dataset:
    jobs = [(str(s.path), size, cache_size) for s in samples]
    total = len(jobs)
    if workers is None:
        workers = cpu_count()
    workers = max(1, min(workers, total))
    # Results go straight into the final arrays (no list of per-image arrays held twice).
    images = np.zeros((total, cache_size, cache_size, 3), np.uint8)
    eval_images = images if cache_size == size else np.zeros((total, size, size, 3), np.uint8)
    errors: dict[int, str] = {}

    if workers == 1 or total < 64:
        results: Iterator[tuple[np.ndarray, np.ndarray] | str] = map(_decode_star, jobs)
        pool = None
    else:
        # Processes, not threads: resizing and format conversion hold the GIL for part of
        # the work. Chunks amortise the inter-process round trips.
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_ignore_interrupts)
        results = pool.map(_decode_star, jobs, chunksize=max(8, min(256, total // (workers * 8))))
    try:
        for i, result in enumerate(results):
            if isinstance(result, str):
                errors[i] = result
            else:
                images[i] = result[0]
                if eval_images is not images:
                    eval_images[i] = result[1]
            done = i + 1
            if progress and (done % 64 == 0 or done == total):
                progress(done, total)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    keep = np.array([i for i in range(total) if i not in errors], dtype=np.int64)
    if errors:
        images = images[keep]
        eval_images = images if cache_size == size else eval_images[keep]
    return Dataset(
        images=images,
        eval_images=eval_images,
        labels=np.array([samples[i].label for i in keep], dtype=np.int64),
        sources=np.array([samples[i].source for i in keep], dtype=str),
        paths=np.array([str(samples[i].path) for i in keep], dtype=str),
        skipped=tuple((str(samples[i].path), errors[i]) for i in sorted(errors)),
    )


def warn_skipped(skipped: tuple[tuple[str, str], ...]) -> None:
    """One ``SkippedImagesWarning`` for the ``(path, reason)`` of every unreadable file."""
    if skipped:
        n = len(skipped)
        path, reason = skipped[0]
        warnings.warn(
            f"skipped {n} unreadable image{'s' if n != 1 else ''} (e.g. {path}: {reason})",
            SkippedImagesWarning,
            stacklevel=3,
        )


def _read_cache(path: Path, size: int, cache_size: int) -> Dataset | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            images = z["images"]
            eval_images = images if cache_size == size else z["eval_images"]
            dataset = Dataset(
                images=images,
                eval_images=eval_images,
                labels=z["labels"].astype(np.int64),
                sources=z["sources"],
                paths=z["paths"],
                skipped=tuple(
                    zip(z["skipped_paths"].tolist(), z["skipped_reasons"].tolist(), strict=True)
                ),
            )
    except Exception:
        return None  # unreadable or from another version: decode again and overwrite it
    if dataset.cache_size != cache_size or dataset.size != size:
        return None
    return dataset


def _write_cache(path: Path, dataset: Dataset) -> None:
    arrays = {
        "images": dataset.images,
        "labels": dataset.labels,
        "sources": dataset.sources,
        "paths": dataset.paths,
        "skipped_paths": np.array([p for p, _ in dataset.skipped], dtype=str),
        "skipped_reasons": np.array([r for _, r in dataset.skipped], dtype=str),
    }
    if dataset.eval_images is not dataset.images:
        arrays["eval_images"] = dataset.eval_images
    try:
        with atomic_write(path) as f:  # a run killed mid-write never leaves a half cache
            np.savez(f, **arrays)
    except OSError as exc:
        warnings.warn(f"could not write the dataset cache {path}: {exc}", stacklevel=3)


# --------------------------------------------------------------------- splits and sampling


def stratified_split(
    labels: np.ndarray | Sequence[int],
    val_fraction: float = 0.2,
    seed: int = 0,
    groups: np.ndarray | Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into train / validation, stratified by label (and by group if given).

    Each stratum (a label, or a (group, label) pair, e.g. (source, label)) contributes
    ``round(val_fraction * n)`` images to validation, and at least one whenever it has two or
    more, so every source and class is represented. Deterministic for a seed.

    Returns ``(train_idx, val_idx)``: sorted ``int64`` arrays that partition ``range(N)``.
    """
    labels = np.asarray(labels)
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
    if groups is None:
        keys = labels.astype(str)
    else:
        groups = np.asarray(groups, dtype=str)
        if groups.shape != labels.shape:
            raise ValueError("groups and labels must have the same length")
        keys = np.char.add(np.char.add(groups, "\x00"), labels.astype(str))
    rng = np.random.default_rng(seed)
    strata, inverse = np.unique(keys, return_inverse=True)
    val: list[np.ndarray] = []
    for s in range(len(strata)):
        members = rng.permutation(np.flatnonzero(inverse == s))
        n_val = round(val_fraction * len(members))
        if val_fraction > 0 and len(members) >= 2:
            n_val = min(max(n_val, 1), len(members) - 1)
        val.append(members[:n_val])
    val_idx = np.sort(np.concatenate(val)).astype(np.int64) if val else np.zeros(0, np.int64)
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask).astype(np.int64), val_idx


def class_weights(labels: np.ndarray | Sequence[int]) -> np.ndarray:
    """Inverse-frequency weights ``float32 (2,)`` for labels 0 and 1.

    ``w[c] = N / (2 * count[c])`` (scikit-learn's "balanced"): each class contributes equally
    to a weighted loss, and the mean weight over the samples is 1, so the loss keeps its scale.
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels.astype(np.int64), minlength=2)[:2]
    if len(labels) == 0 or (counts == 0).any():
        raise DatasetError(f"class weights need both classes; counts are {counts.tolist()}")
    return (len(labels) / (2.0 * counts)).astype(np.float32)


def balanced_batches(
    labels: np.ndarray | Sequence[int],
    batch_size: int,
    rng: np.random.Generator,
    num_batches: int | None = None,
    groups: np.ndarray | Sequence[str] | None = None,
    group_power: float = 1.0,
) -> Iterator[np.ndarray]:
    """One epoch of index batches in which half of each batch is hotdog.

    Each class is drawn from its own shuffled stream, reshuffled whenever it runs out, so the
    minority class is oversampled without repeating any image before all of that class has
    been seen, and the majority class is drawn without replacement. An epoch is
    ``num_batches`` batches (default ``ceil(N / batch_size)``, the same number of steps as a
    plain epoch). For an odd ``batch_size`` the extra slot alternates between the classes.

    groups, group_power: with groups (e.g. each image's source dataset), each class draws its
    images from group ``g`` with probability proportional to ``count_g ** group_power``:
    1 keeps the natural mix, 0 gives every group an equal share, 0.5 lifts small groups (a
    few hundred photos in a style users upload) without letting them dominate.

    Yields ``int64 (batch_size,)`` arrays, shuffled within the batch. All random draws happen
    when this is called, so ``rng``'s state does not depend on how far the epoch is consumed.
    """
    labels = np.asarray(labels)
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2, not {batch_size}")
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    if len(pos) == 0 or len(neg) == 0:
        raise DatasetError("balanced batches need images of both classes")
    n_batches = math.ceil(len(labels) / batch_size) if num_batches is None else num_batches
    n_pos = [batch_size // 2 + (b % 2) * (batch_size % 2) for b in range(n_batches)]
    pos_stream = _class_stream(pos, sum(n_pos), rng, groups, group_power)
    neg_stream = _class_stream(neg, n_batches * batch_size - sum(n_pos), rng, groups, group_power)
    batches, p, q = [], 0, 0
    for k in n_pos:
        batch = np.concatenate([pos_stream[p : p + k], neg_stream[q : q + batch_size - k]])
        p, q = p + k, q + batch_size - k
        batches.append(rng.permutation(batch))
    return iter(batches)


def _class_stream(
    idx: np.ndarray,
    length: int,
    rng: np.random.Generator,
    groups: np.ndarray | Sequence[str] | None,
    power: float,
) -> np.ndarray:
    """``length`` indices drawn from ``idx``, mixing groups by ``count ** power``."""
    if groups is None or power == 1.0:
        return _shuffled_stream(idx, length, rng)
    member_groups = np.asarray(groups, dtype=str)[idx]
    names, counts = np.unique(member_groups, return_counts=True)
    weights = counts.astype(np.float64) ** power
    shares = rng.multinomial(length, weights / weights.sum())
    parts = [
        _shuffled_stream(idx[member_groups == name], share, rng)
        for name, share in zip(names, shares, strict=True)
        if share
    ]
    return rng.permutation(np.concatenate(parts))


def _shuffled_stream(idx: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    rounds = math.ceil(length / len(idx))
    return np.concatenate([rng.permutation(idx) for _ in range(rounds)])[:length].astype(np.int64)
