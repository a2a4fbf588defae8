"""App speed: a 12 MP photo's verdict, start-up to first paint, and the server's memory.

Four measurements, all against the app as it runs, with the app's default model:

(a) verdict: a 12-megapixel JPEG (4000x3000, photo-like, a few MB) from bytes to verdict and
    explanation map, through ``app.classify`` (JPEG draft decode + ``Classifier.explain``),
    the code path behind every uploaded photo. Reported cold (the first call) and warm (median).
(b) start-up: ``streamlit run app.py`` is started and timed until ``/_stcore/health`` answers
    and until the page's main content has rendered in headless Chromium (Chromium is launched
    before the clock starts). Without Playwright or Chromium, the second figure is replaced by
    health plus one script run through ``AppTest``.
(c) memory: the server's resident set size (``VmRSS``) after a few photos, the 12 MP one
    among them, were classified through the browser; with it, the end-to-end time from
    handing the 12 MP file to the page until its verdict shows.
(d) per model: a decoded photo (a PIL image) to its probability (``predict``) and to its
    verdict with the explanation map (``explain``), warm medians, for every model in the folder.

Models come from ``--models-dir`` (default: ``$HOTDOG_MODELS_DIR`` or ``models/``); when it
holds no default model, a random-weights copy of its architecture is built in a temporary
folder (``"weights": "random"`` in the output). Speed does not depend on the weights.

Usage::

    python benchmarks/bench_app.py [--repeats 5] [--models-dir DIR] [--json]

With ``--json`` the last line of stdout is one JSON object: ``verdict_12mp_ms`` (warm median),
``verdict_12mp_first_ms``, ``decode_12mp_ms``, ``predict_12mp_ms``, ``image_mb``,
``health_s``, ``first_paint_s`` (null without Chromium), ``health_plus_first_run_s`` (only
without Chromium), ``browser_verdict_12mp_s``, ``server_rss_mb``, ``server_rss_8_visitors_mb``
(after eight more visitors upload at once), ``model`` (the default),
``per_model`` (``{name: {"predict_ms", "explain_ms"}}``), ``weights``, ``cpus``.
"""

from __future__ import annotations

import os

# As app.py does, so (a) measures what the server runs: one BLAS thread unless told otherwise.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import io
import json
import logging
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# The repository is not an installed package: make `models` and `app` importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models
from micrograd.backend import cpu_count
from models.architectures import HOTDOG_CNN, build
from models.io import save_model
from models.preprocess import PreprocessConfig, load_image

ROOT = Path(__file__).resolve().parents[1]


def find_chromium() -> str | None:
    """A Chromium to drive: ``$HOTDOG_CHROMIUM``, else ``chromium``, ``chromium-browser`` or
    ``google-chrome`` on the PATH, else the browser Playwright installed itself; None if none."""
    named = os.environ.get("HOTDOG_CHROMIUM")
    if named:
        return named if Path(named).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            own = pw.chromium.executable_path
        return own if own and Path(own).exists() else None
    except Exception:  # no Playwright, or no browser of its own
        return None


CHROMIUM = find_chromium()
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_S = 120


def twelve_megapixel_jpeg(seed: int = 0) -> bytes:
    """A 4000x3000 JPEG that compresses like a photo: smooth shapes plus sensor-like noise."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize((4000, 3000), Image.Resampling.BICUBIC))
    noisy = base.astype(np.int16) + rng.normal(0, 6, base.shape).astype(np.int16)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


#: Stand-ins with random weights when a folder lacks the default model: (architecture, input).
RANDOM_STAND_INS = {
    "hotdog_effnet": (
        {"type": "efficientnet_lite", "num_classes": 2},
        PreprocessConfig(size=224, mean=(0.498,) * 3, std=(0.502,) * 3),
    ),
    "hotdog_cnn": (HOTDOG_CNN, PreprocessConfig()),
}


def models_folder(requested: Path | None, scratch: Path) -> tuple[Path, str]:
    """A folder holding the default model: the requested or shipped one, else random weights."""
    folder = requested or Path(os.environ.get("HOTDOG_MODELS_DIR") or models.MODELS_DIR)
    if (folder / f"{models.DEFAULT_MODEL}.npz").is_file():
        return folder, "shipped" if folder.resolve() == models.MODELS_DIR else str(folder)
    architecture, preprocess = RANDOM_STAND_INS[models.DEFAULT_MODEL]
    config = {
        "architecture": architecture,
        "preprocess": preprocess.to_dict(),
        "classes": ["not_hotdog", "hotdog"],
    }
    path = scratch / f"{models.DEFAULT_MODEL}.npz"
    save_model(path, build(architecture).state_dict(), config, {})
    return scratch, "random"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(milliseconds, result)`` of one call."""
    start = time.perf_counter()
    result = fn()
    return (time.perf_counter() - start) * 1000, result


def bench_verdict(folder: Path, data: bytes, repeats: int) -> dict[str, float]:
    """(a): the app's own ``classify`` on the 12 MP JPEG, cold and warm."""
    logging.getLogger("streamlit").setLevel(logging.ERROR)  # "no runtime" notices, bare mode
    import app

    classifier = models.load(folder / f"{models.DEFAULT_MODEL}.npz")
    photo = app.Photo("twelve_mp.jpg", data)
    first_ms, result = timed(lambda: app.classify(classifier, photo))
    if not isinstance(result, app.Result):
        raise RuntimeError(f"the 12 MP JPEG was not classified: {result}")
    warm = [timed(lambda: app.classify(classifier, photo))[0] for _ in range(repeats)]
    size = classifier.preprocess.size
    decode = [timed(lambda: load_image(data, draft_size=size))[0] for _ in range(repeats)]
    predict = [timed(lambda: classifier.predict(data))[0] for _ in range(repeats)]
    return {
        "verdict_12mp_first_ms": round(first_ms, 1),
        "verdict_12mp_ms": round(statistics.median(warm), 1),
        "decode_12mp_ms": round(statistics.median(decode), 1),
        "predict_12mp_ms": round(statistics.median(predict), 1),
    }


def bench_models(folder: Path, data: bytes, repeats: int) -> dict[str, dict[str, float]]:
    """(d): decoded photo to probability, and to verdict plus explanation, for every model."""
    photo = load_image(data)
    out = {}
    for name in models.available(folder):
        classifier = models.load(folder / f"{name}.npz")
        classifier.explain(photo)  # warm up
        predict = [timed(lambda c=classifier: c.predict(photo))[0] for _ in range(repeats)]
        explain = [timed(lambda c=classifier: c.explain(photo))[0] for _ in range(repeats)]
        out[name] = {
            "predict_ms": round(statistics.median(predict), 1),
            "explain_ms": round(statistics.median(explain), 1),
        }
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """End a server process: politely, then by force after 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (psutil when installed, else /proc)."""
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("cannot read the server's memory")


@contextmanager
def streamlit_server(folder: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen, float]]:
    """Start ``streamlit run app.py`` on loopback; yield ``(url, process, seconds to health)``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true"]
    command += ["--browser.gatherUsageStats", "false"]
    env = {**os.environ, "HOTDOG_MODELS_DIR": str(folder)}
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start:\n{log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.02)
        yield url, proc, time.perf_counter() - start
    finally:
        stop(proc)


def bench_server(folder: Path, big_jpeg: Path, scratch: Path) -> dict[str, Any]:
    """(b) and (c): start-up to first paint, the 12 MP verdict in the browser, server memory."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or CHROMIUM is None:
        return bench_server_without_browser(folder, scratch)

    photos = [ROOT / "examples" / "images" / n for n in ("cat.jpg", "coffee.jpg", "hotdog.jpg")]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_S * 1000)
            start = time.perf_counter()
            with streamlit_server(folder, scratch / "server.log") as (url, proc, health_s):
                page.goto(url)
                page.get_by_text("or try an example").wait_for()
                first_paint_s = time.perf_counter() - start
                present = [p for p in photos if p.is_file()]
                page.locator('input[type="file"]').first.set_input_files(present)
                page.get_by_text("Chance it is a hotdog").nth(len(present) - 1).wait_for()
                page.wait_for_load_state("networkidle")
                # A second visitor uploads the 12 MP photo; timed from file to verdict.
                other = browser.new_page(viewport={"width": 1280, "height": 900})
                other.set_default_timeout(TIMEOUT_S * 1000)
                other.goto(url)
                other.get_by_text("or try an example").wait_for()
                clock = time.perf_counter()
                other.locator('input[type="file"]').first.set_input_files(big_jpeg)
                other.get_by_text("Chance it is a hotdog").first.wait_for()
                browser_verdict_s = time.perf_counter() - clock
                other.wait_for_load_state("networkidle")
                memory = rss_mb(proc.pid)
                visitors_memory = eight_visitors_mb(browser, url, proc.pid, [*present, big_jpeg])
        finally:
            browser.close()
    return {
        "health_s": round(health_s, 2),
        "first_paint_s": round(first_paint_s, 2),
        "browser_verdict_12mp_s": round(browser_verdict_s, 2),
        "server_rss_mb": round(memory, 1),
        "server_rss_8_visitors_mb": round(visitors_memory, 1),
    }


def eight_visitors_mb(browser: Any, url: str, pid: int, photos: list[Path]) -> float:
    """Eight more visitors upload a photo each at the same moment (the 12 MP one among them);
    the server's resident set size once every page shows its verdict, in MB."""
    pages = []
    for _ in range(8):
        page = browser.new_page(viewport={"width": 390, "height": 844})
        page.set_default_timeout(TIMEOUT_S * 1000)
        page.goto(url)
        page.get_by_text("or try an example").wait_for()
        pages.append(page)
    for i, page in enumerate(pages):  # uploads are sent without waiting for answers
        page.locator('input[type="file"]').first.set_input_files(photos[i % len(photos)])
    peak = 0.0
    for page in pages:
        page.get_by_text("Chance it is a hotdog").first.wait_for()
        peak = max(peak, rss_mb(pid))
    return max(peak, rss_mb(pid))


def bench_server_without_browser(folder: Path, scratch: Path) -> dict[str, Any]:
    """Fallback for (b) and (c): health, then one script run through ``AppTest``."""
    from streamlit.testing.v1 import AppTest

    with streamlit_server(folder, scratch / "server.log") as (_, proc, health_s):
        os.environ["HOTDOG_MODELS_DIR"] = str(folder)
        run_ms, _ = timed(lambda: AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run())
        memory = rss_mb(proc.pid)
    return {
        "health_s": round(health_s, 2),
        "first_paint_s": None,
        "health_plus_first_run_s": round(health_s + run_ms / 1000, 2),
        "browser_verdict_12mp_s": None,
        "server_rss_mb": round(memory, 1),
        "server_rss_8_visitors_mb": None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="warm repetitions (default 5)")
    parser.add_argument("--models-dir", type=Path, help="folder holding the default model")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_app_") as tmp:
        scratch = Path(tmp)
        folder, weights = models_folder(args.models_dir, scratch)
        data = twelve_megapixel_jpeg()
        big_jpeg = scratch / "twelve_mp.jpg"
        big_jpeg.write_bytes(data)
        report: dict[str, Any] = {"image_mb": round(len(data) / 2**20, 2)}
        report |= bench_verdict(folder, data, args.repeats)
        report["per_model"] = bench_models(folder, data, args.repeats)
        report |= bench_server(folder, big_jpeg, scratch)
    report |= {"model": models.DEFAULT_MODEL, "weights": weights, "cpus": cpu_count()}

    print(f"12 MP JPEG ({report['image_mb']} MB), {report['model']} with {weights} weights, "
          f"{report['cpus']} CPUs")  # fmt: skip
    print(f"  verdict + explanation: {report['verdict_12mp_ms']} ms warm (median), "
          f"{report['verdict_12mp_first_ms']} ms first call")  # fmt: skip
    print(f"    of which decode {report['decode_12mp_ms']} ms; verdict alone (predict) "
          f"{report['predict_12mp_ms']} ms")  # fmt: skip
    print(f"  server health after {report['health_s']} s, first paint after "
          f"{report['first_paint_s']} s")  # fmt: skip
    print(f"  12 MP upload to verdict in the browser: {report['browser_verdict_12mp_s']} s")
    print(f"  server memory after classifying 4 photos: {report['server_rss_mb']} MB, after "
          f"8 more visitors at once: {report['server_rss_8_visitors_mb']} MB")  # fmt: skip
    print("  decoded 12 MP photo to probability / to verdict with explanation, per model:")
    for name, figures in report["per_model"].items():
        print(f"    {name:16} {figures['predict_ms']:7.1f} ms / {figures['explain_ms']:7.1f} ms")
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
