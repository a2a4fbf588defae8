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
VERDICT_RE = re.compile(r"^(🌭 Hotdog|🚫 Not hotdog|🤔 Not sure)$")
P_RE = re.compile(r"^Chance it is a hotdog: (\d+)%$")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
#: Streamlit's own bar across the top of the page: a heading under it is not seen.
HEADER_PX = 60
#: The smallest touch target, in CSS pixels (WCAG 2.5.5, Apple's and Google's guidelines).
TARGET_PX = 44

#: Every control on the page smaller than TARGET_PX either way, as [what, width, height].
#: Visually hidden inputs (a switch's checkbox: its label is the target), the skip link (it
#: appears on focus) and widget captions (not controls) are not targets.
SMALL_TARGETS_JS = """(min) => {
  const out = [];
  for (const el of document.querySelectorAll('button, [role=button], summary, a, label')) {
    if (el.dataset.testid === 'stSkipToContent' || el.dataset.testid === 'stWidgetLabel') continue;
    const r = el.getBoundingClientRect();
    if (!r.width || !r.height || getComputedStyle(el).visibility === 'hidden') continue;
    if (r.width < min || r.height < min)
      out.push([(el.innerText || el.getAttribute('aria-label') || el.tagName).slice(0, 40),
                Math.round(r.width), Math.round(r.height)]);
  }
  return out;
}"""

#: WCAG contrast ratio of each element matching a selector: its text colour against the
#: background it sits on (ancestors' colours blended over white), as [ratio, text].
CONTRAST_JS = """(selector) => {
  const parse = (c) => {
    const v = c.match(/[\\d.]+/g).map(Number);
    return v.length > 3 ? v : [...v, 1];
  };
  const lin = (x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; };
  const lum = (c) => 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2]);
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let out = [255, 255, 255];
    for (const c of layers.reverse()) out = out.map((v, i) => v * (1 - c[3]) + c[i] * c[3]);
    return out;
  };
  return [...document.querySelectorAll(selector)].map((el) => {
    const a = lum(parse(getComputedStyle(el).color)), b = lum(background(el));
    return [(Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05), el.innerText.slice(0, 30)];
  });
}"""


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
    """Wait for ``count`` result cards and read ``(verdict, percent)`` of each, in page order
    (the newest first)."""
    probabilities = page.get_by_text(P_RE)
    probabilities.nth(count - 1).wait_for()
    verdicts = page.locator(".verdict h3 .answer")
    texts = [t.strip() for t in verdicts.all_inner_texts()]
    ps = [percent(t) for t in probabilities.all_inner_texts()]
    assert len(texts) == len(ps) == count, (texts, ps)
    assert all(VERDICT_RE.match(t) for t in texts), texts
    return list(zip(texts, ps, strict=True))


def photo_names(page: Any) -> list[str]:
    """The photo each verdict names, in page order."""
    return [t.strip() for t in page.locator(".verdict h3 .photo").all_inner_texts()]


def settle(page: Any) -> None:
    """Wait until the script run is over (no "Running" widget) and the network is quiet."""
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached")
    page.wait_for_load_state("networkidle")


def newest_heading_on_screen(page: Any, viewport: dict[str, int], name: str) -> None:
    """The newest card's verdict heading names ``name`` and lies wholly on screen, below
    Streamlit's own top bar."""
    heading = page.locator(".st-key-verdict-0 .verdict h3")
    page.locator(".st-key-verdict-0 .verdict .photo").filter(has_text=name).wait_for()
    settle(page)
    page.wait_for_timeout(300)  # the scroll into view is instant; layout may settle after it
    box = heading.bounding_box()
    assert box is not None
    assert box["y"] >= HEADER_PX - 20 and box["y"] + box["height"] <= viewport["height"], box


def open_page(pw: Any, server: Server, viewport: dict[str, int]) -> Any:
    """A new browser at ``viewport`` (a touch phone at PHONE) on the app; ``(browser, page)``."""
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=WAIT_MS)
    phone = viewport == PHONE
    page = browser.new_page(viewport=viewport, is_mobile=phone, has_touch=phone)
    page.set_default_timeout(WAIT_MS)
    page.goto(server.url)
    page.get_by_text("or try an example").wait_for()
    return browser, page


def test_upload_two_photos_and_screenshot(page: Any, server: Server, images: dict) -> None:
    hotdog, cat = images["hotdog.jpg"], images["cat.jpg"]
    page.locator('input[type="file"]').first.set_input_files([hotdog, cat])
    got = results(page, 2)
    # photos chosen together keep their order
    assert got == [server.expected(hotdog), server.expected(cat)]
    assert photo_names(page) == ["hotdog.jpg", "cat.jpg"]
    if server.shipped:
        assert got[0][0] == "🌭 Hotdog" and got[1][0] == "🚫 Not hotdog"
    page.get_by_text("Why? See what the model looked at").nth(1).wait_for()
    assert page.locator('[data-testid="stException"]').count() == 0
    # on a wide screen the cards sit side by side
    first, second = (page.locator(f".st-key-verdict-{i}").bounding_box() for i in range(2))
    assert first and second and abs(first["y"] - second["y"]) < 2 and second["x"] > first["x"]
    settle(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "app.png")


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_a_new_verdict_is_on_screen(
    tools: Any, server: Server, images: dict, viewport: dict[str, int]
) -> None:
    """After three uploads and a fourth added with "+", and after scrolling to the examples
    and tapping one then another, the newest verdict is on screen without scrolling."""
    with tools.sync_playwright() as pw:
        browser, page = open_page(pw, server, viewport)
        try:
            files = page.locator('input[type="file"]').first
            files.set_input_files([images["cat.jpg"], images["coffee.jpg"], images["rocket.jpg"]])
            results(page, 3)
            files.set_input_files(images["astronaut.jpg"])  # the uploader's "+": one more
            newest_heading_on_screen(page, viewport, "astronaut.jpg")
            assert photo_names(page)[0] == "astronaut.jpg" and len(photo_names(page)) == 4
            tag = "phone" if viewport == PHONE else "desktop"
            page.screenshot(path=ARTIFACTS / f"{tag}-fourth.png")
            # scroll down to the last card, then up to the examples and tap two
            page.locator(".st-key-verdict-3").scroll_into_view_if_needed()
            page.locator(".st-key-example").get_by_text("Cat", exact=True).click()
            newest_heading_on_screen(page, viewport, "example: Cat")
            page.locator(".st-key-example").get_by_text("Hotdog (drawn)").click()
            newest_heading_on_screen(page, viewport, "example: Hotdog (drawn)")
            page.screenshot(path=ARTIFACTS / f"{tag}-example.png")
            # a single line sums them up
            summary = page.locator(".summary").inner_text()
            assert re.fullmatch(r"\d+ \w.*", summary) and "·" in summary, summary
        finally:
            browser.close()


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
        browser, page = open_page(pw, server, PHONE)
        try:
            # the uploader states the real limit; the title is one line
            page.get_by_text("25MB per file").first.wait_for(state="visible")
            title = page.locator("h1").bounding_box()
            assert title is not None and title["height"] < 60, title
            page.locator('input[type="file"]').first.set_input_files(images["hotdog.jpg"])
            newest_heading_on_screen(page, PHONE, "hotdog.jpg")
            verdict = page.locator(".st-key-verdict-0 .verdict h3 .answer").inner_text()
            assert VERDICT_RE.match(verdict.strip())
            # the whole card fits one screen: verdict, chance, photo and the "why" switch
            card = page.locator(".st-key-verdict-0").bounding_box()
            assert card is not None and card["height"] <= 560, card
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=ARTIFACTS / "phone.png")

            page.locator('input[type="file"]').first.set_input_files([svg, big])
            # refused in the browser (Streamlit's server.maxUploadSize), before it is sent
            for words in ("SVG is a drawing format", "File must be 25.0MB or smaller"):
                message = page.get_by_text(words)
                message.wait_for()
                assert message.is_visible()
            settle(page)
            page.get_by_text("SVG is a drawing format").scroll_into_view_if_needed()
            page.screenshot(path=ARTIFACTS / "phone-errors.png")
        finally:
            browser.close()


def test_phone_comparison_fits_and_targets_are_big(
    tools: Any, server: Server, images: dict
) -> None:
    """At 390 px the comparison sits in its photo's card with nothing wider than the card;
    every control is at least 44x44 px; verdicts, tabs and the "+" read at 4.5:1 or more; the
    neuron graph's text is at least 10 px tall."""
    with tools.sync_playwright() as pw:
        browser, page = open_page(pw, server, PHONE)
        try:
            page.locator('input[type="file"]').first.set_input_files(images["cat.jpg"])
            results(page, 1)
            page.get_by_text("Compare every model on these photos").click()
            compare = page.locator(".st-key-verdict-0 .compare")
            compare.wait_for()
            settle(page)
            card = page.locator(".st-key-verdict-0").bounding_box()
            assert card is not None and card["x"] + card["width"] <= PHONE["width"]
            for element in page.locator(".st-key-verdict-0 *").all():
                box = element.bounding_box()
                if box and box["width"]:
                    assert box["x"] >= card["x"] - 1, element.inner_text()[:40]
                    assert box["x"] + box["width"] <= card["x"] + card["width"] + 1, box
            assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
            compare.scroll_into_view_if_needed()
            page.screenshot(path=ARTIFACTS / "phone-compare.png")

            assert page.evaluate(SMALL_TARGETS_JS, TARGET_PX) == []

            checks = ".verdict h3, .st-key-view button[aria-checked=true], [aria-label='Add files']"
            ratios = page.evaluate(CONTRAST_JS, checks)
            assert len(ratios) >= 3 and all(ratio >= 4.5 for ratio, _ in ratios), ratios

            # the one-neuron graph is shrunk to the phone's width, its text still readable
            page.locator(".st-key-view").get_by_text("How it works").click()
            text = page.locator('[data-testid="stGraphVizChart"] text').filter(has_text="data")
            text.first.wait_for()
            heights = [box["height"] for t in text.all() if (box := t.bounding_box())]
            assert heights and min(heights) >= 10, heights
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
            names = [t.strip() for t in await page.locator(".verdict .photo").all_inner_texts()]
            verdicts = page.locator(".verdict h3 .answer")
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
