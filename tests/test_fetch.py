"""training.fetch against archives served from a temporary folder on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

import training.fetch as fetch_mod
from training.data import find_images
from training.fetch import DATASETS, FOLDERS, FetchError, RemoteDataset, fetch


def png_bytes(color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, "PNG")
    return buf.getvalue()


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def make_tar(path: Path, files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """(base URL, folder it serves): a loopback-only HTTP server."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(QuietHandler, directory=str(served))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


GITHUB_LIKE = {
    "repo-abc123/README.md": b"# readme",
    "repo-abc123/train/hotdog/1.png": png_bytes(),
    "repo-abc123/train/hotdog/2.jpg": png_bytes(),
    "repo-abc123/train/not_hotdog/1.png": png_bytes((0, 0, 255)),
    "repo-abc123/train/not_hotdog/notes.txt": b"skip me",
    "repo-abc123/val/hotdog/3.png": png_bytes(),
}


def register(monkeypatch: pytest.MonkeyPatch, name: str, url: str, sha256: str | None) -> None:
    spec = RemoteDataset(
        url=url,
        sha256=sha256,
        layout={"train/hotdog": "hot_dog", "train/not_hotdog": "not_hot_dog"},
        strip=1,
    )
    monkeypatch.setitem(DATASETS, name, spec)


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir() if p.name.startswith("."))


def test_fetch_zip_with_checksum(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, served = server
    archive = make_zip(served / "hd.zip", GITHUB_LIKE)
    register(monkeypatch, "tiny", f"{base}/hd.zip", sha256_of(archive))
    dest = tmp_path / "data"
    out = fetch("tiny", dest, progress=False)
    assert out == dest / "tiny"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*")) == [
        "hot_dog/1.png",
        "hot_dog/2.jpg",
        "not_hot_dog/1.png",
    ]
    samples = find_images(dest)
    assert [(s.label, s.source) for s in samples] == [(1, "tiny"), (1, "tiny"), (0, "tiny")]
    assert leftovers(dest) == [] and not list(dest.glob("*.zip"))


def test_checksum_mismatch_removes_the_download(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, served = server
    make_zip(served / "hd.zip", GITHUB_LIKE)
    register(monkeypatch, "tiny", f"{base}/hd.zip", "0" * 64)
    dest = tmp_path / "data"
    with pytest.raises(FetchError, match=r"checksum mismatch for tiny: expected sha256 0{64}, got"):
        fetch("tiny", dest, progress=False)
    assert list(dest.iterdir()) == []  # neither the partial file nor a dataset folder


def test_nothing_is_extracted_without_a_checksum(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    base, served = server
    archive = make_zip(served / "hd.zip", GITHUB_LIKE)
    register(monkeypatch, "tiny", f"{base}/hd.zip", None)
    dest = tmp_path / "data"
    with pytest.raises(FetchError, match=f"nothing was extracted.*--sha256 {sha256_of(archive)}"):
        fetch("tiny", dest, progress=False)
    assert list(dest.iterdir()) == []
    # the digest it printed, passed back, is checked and accepted
    assert fetch("tiny", dest, progress=False, sha256=sha256_of(archive)).is_dir()
    # --insecure extracts without one, and logs the digest
    with caplog.at_level(logging.INFO, logger="training.fetch"):
        fetch("tiny", dest, progress=True, insecure=True, force=True)
    assert sha256_of(archive) in caplog.text and "insecure" in caplog.text
    assert "1 not_hot_dog" in caplog.text
    # An explicit sha256 argument is checked even when the registry has none.
    with pytest.raises(FetchError, match="checksum mismatch"):
        fetch("tiny", tmp_path / "data", progress=False, sha256="f" * 64, force=True)


def test_tar_with_automatic_layout_and_name_collisions(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, served = server
    make_tar(
        served / "mine.tar.gz",
        {
            "pics/Hot Dog/a.png": png_bytes(),
            "pics/extra/hot-dogs/a.png": png_bytes(),  # same file name, same class
            "pics/not-hotdog/nested/b.webp": png_bytes(),
            "pics/unlabelled/c.png": png_bytes(),
            "pics/not-hotdog/._b.png": b"\x00",
        },
        symlinks={"pics/Hot Dog/link.png": "/etc/passwd"},
    )
    out = fetch("mine", tmp_path / "data", url=f"{base}/mine.tar.gz", progress=False, insecure=True)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*"))
    assert files == ["hot_dog/a-2.png", "hot_dog/a.png", "not_hot_dog/b.webp"]
    assert not any(p.is_symlink() for p in out.rglob("*"))


def test_local_archive_path_and_file_url(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "local.zip", {"x/hotdog/1.png": png_bytes()})
    assert (
        fetch("a", tmp_path / "d", url=str(archive), progress=False, insecure=True)
        / "hot_dog/1.png"
    ).is_file()
    out = fetch(
        "b", tmp_path / "d", url=archive.as_uri(), sha256=sha256_of(archive), keep_archive=True
    )
    assert (out / "hot_dog" / "1.png").is_file() and (tmp_path / "d" / "b.zip").is_file()


@pytest.mark.parametrize(
    "evil", ["../evil.png", "/tmp/evil.png", "ok/../../evil.png", "C:/evil.png"]
)
def test_path_traversal_is_refused(tmp_path: Path, evil: str) -> None:
    archive = make_zip(tmp_path / "evil.zip", {"x/hotdog/1.png": png_bytes(), evil: png_bytes()})
    dest = tmp_path / "deep" / "data"
    with pytest.raises(FetchError, match="unsafe path in archive"):
        fetch("evil", dest, url=str(archive), progress=False, insecure=True)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "deep" / "evil.png").exists() and not (tmp_path / "evil.png").exists()


def test_traversal_in_tar_is_refused(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "evil.tar.gz", {"x/hotdog/1.png": png_bytes(), "../e.png": b""})
    with pytest.raises(FetchError, match="unsafe path"):
        fetch("evil", tmp_path / "data", url=str(archive), progress=False, insecure=True)


def test_download_errors(server, tmp_path: Path) -> None:
    base, served = server
    (served / "page.html").write_text("<html>not an archive</html>")
    dest = tmp_path / "data"
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch("gone", dest, url=f"{base}/missing.zip", progress=False)
    with pytest.raises(FetchError, match="not a zip or tar archive"):
        fetch("page", dest, url=f"{base}/page.html", progress=False, insecure=True)
    with pytest.raises(FetchError, match="no images in the expected folders"):
        fetch(
            "empty",
            dest,
            url=str(make_zip(tmp_path / "e.zip", {"a/b.png": png_bytes()})),
            progress=False,
            insecure=True,
        )
    assert leftovers(dest) == []
    with pytest.raises(FetchError, match="unknown dataset 'nope'; known: "):
        fetch("nope", dest)
    with pytest.raises(FetchError, match="invalid dataset name"):
        fetch("../up", dest, url=f"{base}/x.zip")


def test_existing_dataset_is_not_downloaded_again(tmp_path: Path) -> None:
    dest = tmp_path / "data"
    (dest / "tiny" / "hot_dog").mkdir(parents=True)
    (dest / "tiny" / "hot_dog" / "1.png").write_bytes(png_bytes())
    # An unreachable URL proves nothing is fetched.
    assert fetch("tiny", dest, url="http://127.0.0.1:9/none.zip", progress=False) == dest / "tiny"


def test_force_replaces_an_existing_dataset(tmp_path: Path) -> None:
    dest = tmp_path / "data"
    (dest / "t" / "hot_dog").mkdir(parents=True)
    (dest / "t" / "hot_dog" / "old.png").write_bytes(png_bytes())
    archive = make_zip(tmp_path / "new.zip", {"r/not_hotdog/new.png": png_bytes()})
    out = fetch("t", dest, url=str(archive), progress=False, force=True, insecure=True)
    assert [p.relative_to(out).as_posix() for p in out.rglob("*.png")] == ["not_hot_dog/new.png"]


def test_registry_entries_are_well_formed() -> None:
    assert {"hotdog-nothotdog", "hotdog-nothotdog-val", "food101-64"} <= set(DATASETS)
    for name, spec in DATASETS.items():
        assert spec.url.startswith("https://"), name
        assert "/HEAD." not in spec.url and "/main." not in spec.url, name  # immutable refs
        assert spec.sha256 is None or (len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0)
        assert spec.layout and set(spec.layout.values()) <= set(FOLDERS), name
        assert spec.description and spec.license, name


def test_layout_patterns_match_folders_and_files() -> None:
    spec = DATASETS["food101-64"]
    assert fetch_mod._class_of(("data", "train", "hot_dog", "1.jpg"), spec) == "hot_dog"
    assert fetch_mod._class_of(("data", "test", "pizza", "2.jpg"), spec) == "not_hot_dog"
    assert fetch_mod._class_of(("README.md",), spec) is None
    seefood = DATASETS["seefood-hotdogs"]
    parts = ("yolo", "model", "train_data", "val", "images", "hotdog-val_4.jpg")
    assert fetch_mod._class_of(parts, seefood) == "hot_dog"


class CutShort(QuietHandler):
    """Serves ``/short.zip`` promising more bytes than it sends, and ``/chunked.zip`` as a
    chunked stream that breaks off mid-chunk."""

    payload = b""

    def do_GET(self) -> None:
        data = type(self).payload
        self.send_response(200)
        if self.path == "/short.zip":
            self.send_header("Content-Length", str(len(data) + 1000))
            self.end_headers()
            self.wfile.write(data)
        else:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(f"{len(data) + 50:x}\r\n".encode() + data)
        self.wfile.flush()
        self.close_connection = True


@pytest.mark.parametrize("path", ["/short.zip", "/chunked.zip"])
def test_a_download_cut_short_is_refused(tmp_path: Path, path: str) -> None:
    CutShort.payload = make_zip(tmp_path / "hd.zip", GITHUB_LIKE).read_bytes()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), CutShort)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}{path}"
        dest = tmp_path / "data"
        with pytest.raises(FetchError, match="cut off"):
            fetch("cut", dest, url=url, progress=False, insecure=True)
        assert list(dest.iterdir()) == []
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_an_archive_that_expands_too_far_is_refused(tmp_path: Path) -> None:
    bomb = {"x/hotdog/big.png": b"\0" * (8 * 2**20), "x/hotdog/1.png": png_bytes()}
    archive = make_zip(tmp_path / "bomb.zip", bomb)  # 8 MB of zeros packs into a few KB
    dest = tmp_path / "data"
    with pytest.raises(FetchError, match="expands to over"):
        fetch("bomb", dest, url=str(archive), progress=False, insecure=True, max_bytes=2**20)
    assert leftovers(dest) == [] and not (dest / "bomb").exists()


def test_leftovers_of_a_killed_fetch_are_cleared(tmp_path: Path) -> None:
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / ".t.abc.download").write_bytes(b"half")
    (dest / ".t.def.partial").mkdir()
    archive = make_zip(tmp_path / "a.zip", {"r/hotdog/1.png": png_bytes()})
    fetch("t", dest, url=str(archive), progress=False, insecure=True)
    assert leftovers(dest) == []


class Trickle(QuietHandler):
    """Sends one byte every 0.1 s of a long body: each read is within the socket timeout."""

    def do_GET(self) -> None:
        import time

        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:  # the client gave up
            pass


def test_a_trickling_download_is_given_up_at_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch_mod, "DOWNLOAD_DEADLINE_S", 0.5)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/slow.zip"
        dest = tmp_path / "data"
        with pytest.raises(FetchError, match="took over"):
            fetch_mod._download(url, dest.parent, "slow", None, False, True, deadline_s=0.5)
        assert [p for p in tmp_path.iterdir() if p.name.endswith(".download")] == []
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_a_redirect_from_https_to_http_is_refused() -> None:
    import urllib.request

    handler = fetch_mod._NoDowngrade()
    request = urllib.request.Request("https://example.invalid/a.zip")
    with pytest.raises(FetchError, match="refusing a redirect from https"):
        handler.redirect_request(request, None, 302, "Found", {}, "http://example.invalid/a.zip")
    again = handler.redirect_request(request, None, 302, "Found", {}, "https://mirror.invalid/a")
    assert again.full_url == "https://mirror.invalid/a"


def test_a_malformed_sha256_is_refused_before_any_download(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="64 hexadecimal digits"):
        fetch("x", tmp_path, url="http://127.0.0.1:9/never.zip", sha256="nothex", progress=False)
    assert list(tmp_path.iterdir()) == []  # not even the destination was touched


def test_many_members_of_one_name_are_renamed_in_linear_time() -> None:
    import time

    used: dict[str, int] = {}
    start = time.perf_counter()
    names = [fetch_mod._unique_name("IMG.jpg", used) for _ in range(20_000)]
    assert time.perf_counter() - start < 2.0
    assert len(set(names)) == 20_000 and names[:3] == ["IMG.jpg", "IMG-2.jpg", "IMG-3.jpg"]
    assert fetch_mod._unique_name("img-2.JPG", used) == "img-2-2.JPG"  # taken, case-blind


def test_extracted_folders_are_readable_by_others(tmp_path: Path) -> None:
    import os
    import stat

    archive = make_zip(
        tmp_path / "hd.zip", {"hot_dog/a.png": png_bytes(), "not_hot_dog/b.png": png_bytes()}
    )
    target = fetch("perm", tmp_path / "data", url=str(archive), progress=False, insecure=True)
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~mask
