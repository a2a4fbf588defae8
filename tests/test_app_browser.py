"""app.py end to end: a real ``streamlit run`` server driven by headless Chromium (Playwright).

The server serves the shipped models when the default model's weights exist, else a
random-weight CNN built here. Either way each page must show, for each uploaded file, the
verdict that ``models`` itself gives for those bytes; with the shipped models the drawn hotdog
must also be a hotdog and the cat not. Eight browser contexts at once must each get their own
answer. At phone size (390x844) the verdict must be on screen without scrolling, and refused
files must say why in visible words. Screenshots go to ``test-artifacts/``.

Skips without Playwright or Chromium; fails instead under ``REQUIRE_OPTIONAL_TOOLS=1``.
Everything stays on the loopback interface, and the server is always stopped. Waits follow
progress: a slow machine is slow, not red; only a page that stops changing fails.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import models
from app import verdict_text
from benchmarks.bench_app import CHROMIUM, CHROMIUM_ARGS, free_port, stop
from models.architectures import HOTDOG_CNN
from models.preprocess import PreprocessConfig
from tests.conftest import optional_import, require_tool
from tests.test_app import encode, photo_like, truncated_jpeg, write_random_model

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "images"
ARTIFACTS = ROOT / "test-artifacts"
SHIPPED = ROOT / "models" / f"{models.DEFAULT_MODEL}.npz"
START_TIMEOUT_S = 60
WAIT_MS = 60_000  # one wait in the page, while nothing else shows progress
STALL_S = 120  # the eight visitors fail only after this long without a new result
VERDICT_RE = re.compile(r"^(🌭 Hotdog|Not hotdog|🤔 Not sure)$")
P_RE = re.compile(r"^Chance it is a hotdog: (\d+)%$")
PHONE = {"width": 390, "height": 844}


@dataclass(frozen=True)
class Server:
    url: str
    models_dir: Path
    shipped: bool

    def expected(self, path: Path) -> tuple[str, int]:
        """The verdict text and the whole-percent chance that ``models`` gives for the file."""
        name = models.DEFAULT_MODEL if self.shipped else "hotdog_cnn"
        prediction = models.load(self.models_dir / f"{name}.npz").predict(path.read_bytes())
        return verdict_text(prediction), round(prediction.p_hotdog * 100)


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"streamlit did not answer {url}/_stcore/health in {timeout:.0f} s")


@pytest.fixture(scope="module")
def tools() -> Any:
    """Playwright's sync API, once Playwright and Chromium are known to be there."""
    sync_api = optional_import("playwright.sync_api")
    require_tool(CHROMIUM or "chromium")
    return sync_api


@pytest.fixture(scope="module")
def server(tools: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``streamlit run app.py`` on a free loopback port; stopped when the module is done."""
    shipped = SHIPPED.exists()
    if shipped:
        models_dir = SHIPPED.parent
    else:
        models_dir = tmp_path_factory.mktemp("browser_models")
        write_random_model(models_dir, "hotdog_cnn", HOTDOG_CNN, PreprocessConfig())
    if CHROMIUM is None:
        pytest.fail("no Chromium found")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HOTDOG_MODELS_DIR": str(models_dir)}
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true"]
    command += ["--browser.gatherUsageStats", "false"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_healthy(url, proc, START_TIMEOUT_S)
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(f"{exc}\n{log_path.read_text(errors='replace')[-3000:]}")
        yield Server(url, models_dir, shipped)
    finally:
        stop(proc)


@pytest.fixture
def page(tools: Any, server: Server) -> Iterator[Any]:
    """A fresh browser page on the app, its main content rendered."""
    with tools.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=WAIT_MS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(WAIT_MS)
            page.goto(server.url)
            page.get_by_text("or try an example").wait_for()
            yield page
        finally:
            browser.close()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Eight different images on disk: the five examples and three generated photos."""
    folder = tmp_path_factory.mktemp("browser_images")
    paths = {p.name: p for p in sorted(EXAMPLES.glob("*.jpg"))}
    for seed in range(8 - len(paths)):
        path = folder / f"generated{seed}.png"
        path.write_bytes(encode(photo_like(160, 120, seed=seed), "PNG"))
        paths[path.name] = path
    return paths


def percent(text: str) -> int:
    match = P_RE.match(text.strip())
    assert match, text
    return int(match.group(1))


def results(page: Any, count: int) -> list[tuple[str, int]]:
    """Wait for ``count`` results and read ``(verdict, percent)`` for each, in page order."""
    probabilities = page.get_by_text(P_RE)
    probabilities.nth(count - 1).wait_for()
    verdicts = page.locator("h3").filter(has_text=VERDICT_RE)
    texts = [t.strip() for t in verdicts.all_inner_texts()]
    ps = [percent(t) for t in probabilities.all_inner_texts()]
    assert len(texts) == len(ps) == count, (texts, ps)
    return list(zip(texts, ps, strict=True))


def settle(page: Any) -> None:
    """Wait until the script run is over (no "Running" widget) and the network is quiet."""
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached")
    page.wait_for_load_state("networkidle")


def test_upload_two_photos_and_screenshot(page: Any, server: Server, images: dict) -> None:
    hotdog, cat = images["hotdog.jpg"], images["cat.jpg"]
    page.locator('input[type="file"]').first.set_input_files([hotdog, cat])
    got = results(page, 2)
    assert got == [server.expected(hotdog), server.expected(cat)]
    if server.shipped:  # the drawing may make the pretrained model hesitate (see test_app)
        assert got[0][0] in ("🌭 Hotdog", "🤔 Not sure") and got[1][0] == "Not hotdog"
    page.get_by_text("Where it looked").nth(1).wait_for()
    assert page.locator('[data-testid="stException"]').count() == 0
    # Streamlit scrolls inside its own container, so the viewport is the picture: make it tall
    # enough for both results, and wait until the script run is over (no "Stop" button).
    page.set_viewport_size({"width": 1280, "height": 1500})
    settle(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "app.png")


def test_phone_sees_the_verdict_without_scrolling(
    tools: Any, server: Server, images: dict, tmp_path: Path
) -> None:
    """At 390x844 the verdict of an upload lies inside the first screen, and refused files
    (an SVG, a file over the limit) say why in words a person can see."""
    svg = tmp_path / "logo.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    big = tmp_path / "huge.jpg"
    big.write_bytes(b"\xff\xd8" + b"\0" * (26 * 2**20))
    with tools.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=WAIT_MS)
        try:
            page = browser.new_page(viewport=PHONE, is_mobile=True, has_touch=True)
            page.set_default_timeout(WAIT_MS)
            page.goto(server.url)
            page.get_by_text("or try an example").wait_for()
            # the uploader states the real limit
            assert page.get_by_text("25MB per file").first.is_visible()
            page.locator('input[type="file"]').first.set_input_files(images["hotdog.jpg"])
            heading = page.locator(".st-key-verdict-0 h3")
            heading.wait_for()
            settle(page)
            box = heading.bounding_box()
            assert box is not None
            assert box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"], box
            assert VERDICT_RE.match(heading.inner_text().strip())
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=ARTIFACTS / "phone.png")

            page.locator('input[type="file"]').first.set_input_files([svg, big])
            # refused in the browser (Streamlit's server.maxUploadSize), before it is sent
            for words in ("SVG is a drawing format", "File must be 25.0MB or smaller"):
                message = page.get_by_text(words)
                message.wait_for()
                assert message.is_visible()
            settle(page)
            # Streamlit scrolls inside its own container: bring the errors on screen to see them
            page.get_by_text("SVG is a drawing format").scroll_into_view_if_needed()
            page.screenshot(path=ARTIFACTS / "phone-errors.png")
        finally:
            browser.close()


def test_bad_file_in_the_browser(page: Any, server: Server, tmp_path: Path, images: dict) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo\n")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(truncated_jpeg())
    page.locator('input[type="file"]').first.set_input_files([bad, images["coffee.jpg"], cut])
    assert results(page, 1) == [server.expected(images["coffee.jpg"])]
    alerts = page.get_by_text(re.compile(r"not an image|truncated or corrupt"))
    alerts.nth(1).wait_for()
    assert alerts.count() == 2
    assert page.locator('[data-testid="stException"]').count() == 0


def test_eight_visitors_at_once(tools: Any, server: Server, images: dict) -> None:
    """Eight browser contexts upload eight different images at the same time; each page shows
    exactly one result, for its own file. The run fails only if no page gets its result for
    ``STALL_S`` seconds: on a busy machine eight verdicts take long, but keep coming."""
    async_api = optional_import("playwright.async_api")
    last_progress = [time.monotonic()]

    async def wait_for_result(page: Any) -> None:
        probabilities = page.get_by_text(P_RE)
        while await probabilities.count() == 0:
            if time.monotonic() - last_progress[0] > STALL_S:
                raise TimeoutError(f"no visitor got a verdict for {STALL_S} s")
            await asyncio.sleep(0.25)
        last_progress[0] = time.monotonic()

    async def visit(browser: Any, path: Path) -> tuple[list[str], list[tuple[str, int]]]:
        context = await browser.new_context(viewport={"width": 1100, "height": 900})
        try:
            page = await context.new_page()
            page.set_default_timeout(STALL_S * 1000)
            await page.goto(server.url)
            await page.get_by_text("or try an example").wait_for()
            await page.locator('input[type="file"]').first.set_input_files(path)
            await wait_for_result(page)
            # Let any late (wrong) second result arrive before counting.
            await page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached")
            await page.wait_for_load_state("networkidle")
            await asyncio.sleep(0.5)
            file_names = page.get_by_text(re.compile(r"\.(jpg|png)$"))
            names = [t.strip() for t in await file_names.all_inner_texts()]
            verdicts = page.locator("h3").filter(has_text=VERDICT_RE)
            texts = [t.strip() for t in await verdicts.all_inner_texts()]
            ps = [percent(t) for t in await page.get_by_text(P_RE).all_inner_texts()]
            return names, list(zip(texts, ps, strict=True))
        finally:
            await context.close()

    async def main() -> list[tuple[list[str], list[tuple[str, int]]]]:
        async with async_api.async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=WAIT_MS
            )
            try:
                return await asyncio.gather(*(visit(browser, p) for p in images.values()))
            finally:
                await browser.close()

    # A thread of its own, so no other event loop (such as the sync API's) is in the way.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        outcomes = pool.submit(asyncio.run, main()).result()

    assert len(outcomes) == 8
    for (name, path), (names, got) in zip(images.items(), outcomes, strict=True):
        assert got == [server.expected(path)], name
        assert name in names and not (set(names) & (set(images) - {name})), (name, names)
