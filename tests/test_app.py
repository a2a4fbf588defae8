"""app.py through Streamlit's AppTest: uploads, camera, examples, model switching, bad input.

Every test runs the real script. ``HOTDOG_MODELS_DIR`` points it at models with random weights
built here, so these tests never depend on the trained weights; ``TestShippedModels`` checks the
real verdicts when the default model's weights are present (and fails under
``REQUIRE_OPTIONAL_TOOLS=1`` when they are not). All inputs are generated on the fly.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import html
import io
import json
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

import models
from micrograd import Tensor, no_grad
from models.architectures import HOTDOG_CNN, build
from models.io import save_model
from models.preprocess import PreprocessConfig, preprocess
from tests.conftest import STRICT, optional_import

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
EXAMPLES = ROOT / "examples" / "images"
TIMEOUT = 120  # seconds per script run: generous for slow CI machines

MLP_ARCH = {"type": "mlp", "in_features": 32 * 32, "hidden": [16], "num_classes": 2}
VERDICTS = ("🌭 Hotdog", "🚫 Not hotdog", "🤔 Not sure")


# --------------------------------------------------------------------------- model fixtures


def write_random_model(
    directory: Path,
    name: str,
    architecture: dict,
    preprocess: PreprocessConfig,
    seed: int = 0,
    temperature: float | None = None,
) -> Path:
    """A model with random weights and a plausible card, saved as ``directory/name.npz``
    (with a calibration ``temperature`` in its config if given)."""
    net = build({**architecture, "seed": seed})
    card = {
        "name": name,
        "metrics": {
            "accuracy": 0.5,
            "balanced_accuracy": 0.5,
            "confusion": [[7, 3], [4, 6]],
            "roc_auc": 0.52,
        },
        "history": [
            {
                "epoch": e,
                "train_loss": 0.7 / e,
                "val_loss": 0.8 / e,
                "val_accuracy": 0.5 + e / 50,
                "val_balanced_accuracy": 0.5 + e / 60,
                "lr": 0.01,
            }
            for e in range(1, 4)
        ],
        "data": {
            split: {"n": n, "sources": {"photos": {"hotdog": n // 2, "not_hotdog": n - n // 2}}}
            for split, n in (("train", 20), ("val", 10))
        },
        "command": "python -m training train --out " + name,
        "architecture": architecture,
    }
    config = {
        "architecture": architecture,
        "preprocess": preprocess.to_dict(),
        "classes": ["not_hotdog", "hotdog"],
    }
    if temperature is not None:
        config["temperature"] = temperature
    return save_model(directory / f"{name}.npz", net.state_dict(), config, card)


@pytest.fixture(scope="session")
def random_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a random CNN (``hotdog_cnn``) and a random grayscale 32 px MLP."""
    directory = tmp_path_factory.mktemp("random_models")
    write_random_model(directory, "hotdog_cnn", HOTDOG_CNN, PreprocessConfig())
    write_random_model(directory, "hotdog_mlp", MLP_ARCH, PreprocessConfig(size=32, grayscale=True))
    return directory


@pytest.fixture
def app(random_models: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The app, run once, serving the random models."""
    monkeypatch.setenv("HOTDOG_MODELS_DIR", str(random_models))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    return at


# --------------------------------------------------------------------------- inputs


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth colourful RGB image (compresses like a photo, unlike pure noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [
        127
        + 120
        * np.sin(x / (width / rng.uniform(2, 6)) + rng.uniform(0, 6))
        * np.cos(y / (height / rng.uniform(2, 6)))
        for _ in range(3)
    ]
    return Image.fromarray(np.stack(channels, axis=-1).astype(np.uint8), "RGB")


def huge_png(width: int, height: int) -> bytes:
    """A valid black 1-bit PNG of any size that stays a few hundred KB (a decompression bomb)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    block = comp.compress(row * 1000)
    idat = block * (height // 1000) + comp.compress(row * (height % 1000)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def truncated_jpeg() -> bytes:
    data = encode(photo_like(300, 200), "JPEG", quality=90)
    return data[: len(data) // 2]


def rgba_with_transparency() -> bytes:
    img = photo_like(80, 60).convert("RGBA")
    alpha = np.zeros((60, 80), np.uint8)
    alpha[15:45, 20:60] = 255
    img.putalpha(Image.fromarray(alpha))
    return encode(img, "PNG")


def palette_with_transparency() -> bytes:
    img = photo_like(80, 60).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(img, "PNG", transparency=0)


def animated_gif() -> bytes:
    frames = [photo_like(64, 48, seed=s).convert("P") for s in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def sixteen_bit_png() -> bytes:
    ramp = np.linspace(0, 65535, 70 * 50).reshape(50, 70).astype(np.uint16)
    img = Image.fromarray(ramp)
    assert img.mode.startswith("I;16")
    return encode(img, "PNG")


def cmyk_jpeg() -> bytes:
    return encode(photo_like(90, 60).convert("CMYK"), "JPEG", quality=90)


def exif_rotated_pair() -> tuple[bytes, bytes, bytes]:
    """Three PNGs: a rotated photo tagged with EXIF orientation 6, the same photo upright,
    and the rotated pixels without the tag."""
    upright = photo_like(120, 80, seed=3)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # orientation 6 undoes this
    exif = Image.Exif()
    exif[0x0112] = 6
    return (
        encode(stored, "PNG", exif=exif.tobytes()),
        encode(upright, "PNG"),
        encode(stored, "PNG"),
    )


BAD_INPUTS: dict[str, tuple[str, Callable[[], bytes], str]] = {
    # id: (file name, bytes, words the error message must contain)
    "zero_bytes": ("empty.jpg", lambda: b"", "empty"),
    "truncated_jpeg": ("cut.jpg", truncated_jpeg, "truncated"),
    "text_as_jpg": ("notes.jpg", lambda: b"shopping list: buns, mustard\n" * 20, "not an image"),
    "decompression_bomb": ("bomb.png", lambda: huge_png(30000, 30000), "too large"),
    "over_photo_limit": ("big.jpg", lambda: b"\xff\xd8" + b"\0" * (26 * 2**20), "25 MB limit"),
    "svg_drawing": (
        "logo.svg",
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg"/>',
        "PNG or JPEG",
    ),
    "word_document": ("menu.docx", lambda: b"PK\x03\x04" + b"\0" * 100, "Upload a photo as"),
}

ODD_BUT_VALID: dict[str, tuple[str, Callable[[], bytes]]] = {
    "one_pixel": ("dot.png", lambda: encode(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG")),
    "sixteen_bit_png": ("deep.png", sixteen_bit_png),
    "cmyk_jpeg": ("print.jpg", cmyk_jpeg),
    "rgba_transparency": ("cutout.png", rgba_with_transparency),
    "palette_transparency": ("palette.png", palette_with_transparency),
    "animated_gif": ("anim.gif", animated_gif),
    "exif_rotated": ("phone.png", lambda: exif_rotated_pair()[0]),
    "grayscale": ("grey.png", lambda: encode(photo_like(60, 60).convert("L"), "PNG")),
}


@pytest.fixture(scope="session")
def twelve_mp_jpeg() -> bytes:
    return encode(photo_like(4000, 3000, seed=7), "JPEG", quality=90)


# --------------------------------------------------------------------------- reading the page


CARD_RE = re.compile(
    r'<h3><span class="answer">(?P<verdict>[^<]*)</span><span class="photo">(?P<name>[^<]*)'
    r"</span></h3>.*?Chance it is a hotdog: (?P<percent>\d+)%",
    re.S,
)


def html_bodies(node: Any) -> list[str]:
    """The HTML of every ``st.html`` element under ``node`` (the page, or a container)."""
    found = []

    def walk(n: Any) -> None:
        if getattr(n, "type", None) == "html":
            found.append(n.proto.body)
        for child in getattr(n, "children", {}).values():
            walk(child)

    walk(node)
    return found


def cards(at: AppTest) -> list[tuple[str, str, int]]:
    """``(verdict, photo name as shown, percent)`` of each result card, in page order."""
    return [
        (m["verdict"], html.unescape(m["name"]), int(m["percent"]))
        for body in html_bodies(at.main)
        for m in CARD_RE.finditer(body)
    ]


def verdicts(at: AppTest) -> list[str]:
    """Verdict headings, in page order."""
    return [verdict for verdict, _, _ in cards(at)]


def probabilities(at: AppTest, photos: list[bytes], model: str = "hotdog_cnn") -> list[float]:
    """The chance of hotdog of each photo under ``model``, in the order given: the cards show
    whole percents, so the exact values come from the session's results (keyed by model and
    content hash); the cards must agree with them."""
    results = at.session_state["results"]
    exact = []
    for data in photos:
        digest = hashlib.sha256(data).hexdigest()
        (result,) = [r for (m, h), r in results.items() if h == digest and f"/{model}.npz@" in m]
        exact.append(result.explanation.prediction.p_hotdog)
    shown = sorted(percent for _, _, percent in cards(at))
    assert shown == sorted(round(100 * p) for p in exact), (shown, exact)
    return exact


def keyed_verdicts(at: AppTest) -> list[tuple[str, str]]:
    """``(container key, verdict or "error")`` for each ``verdict-<i>`` container."""
    found: list[tuple[str, str]] = []

    def walk(node: Any, key: str | None) -> None:
        block_id = getattr(getattr(node, "proto", None), "id", "")
        if isinstance(block_id, str) and re.search(r"-verdict-\d+$", block_id):
            key = block_id.rsplit("-", 2)[-2] + "-" + block_id.rsplit("-", 1)[-1]
        if key and node.type == "html":
            found.extend((key, m["verdict"]) for m in CARD_RE.finditer(node.proto.body))
        if key and node.type in ("exception", "error"):
            found.append((key, "error"))
        for child in getattr(node, "children", {}).values():
            walk(child, key)

    walk(at.main, None)
    return found


def block(at: AppTest, key: str) -> Any:
    """The container keyed ``key`` (``st.container(key=...)``)."""

    def walk(node: Any) -> Any:
        block_id = getattr(getattr(node, "proto", None), "id", "")
        if isinstance(block_id, str) and block_id.endswith(f"-{key}"):
            return node
        for child in getattr(node, "children", {}).values():
            found = walk(child)
            if found is not None:
                return found
        return None

    found = walk(at.main)
    assert found is not None, key
    return found


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def upload(at: AppTest, files: list[tuple[str, bytes]]) -> AppTest:
    """Put ``files`` in the uploader and rerun."""
    mime = {"png": "image/png", "gif": "image/gif", "jpg": "image/jpeg"}
    staged = [(name, data, mime.get(name.rsplit(".", 1)[-1], "image/jpeg")) for name, data in files]
    (uploader,) = at.file_uploader
    return uploader.set_value(staged).run()


def expected_p(models_dir: Path, name: str, data: bytes) -> float:
    return models.load(models_dir / f"{name}.npz").predict(data).p_hotdog


# --------------------------------------------------------------------------- the page


class TestPage:
    def test_first_run_draws_everything_without_results(self, app: AppTest) -> None:
        views = app.button_group(key="view")
        assert views.options == ["Classify", "Model card", "How it works"]
        assert views.value == "Classify"
        assert app.get("graphviz_chart") == [] and app.metric == []  # only the view on screen
        assert app.radio(key="model").value == "hotdog_cnn"
        assert len(app.sidebar.children) == 0  # nothing hides in a sidebar
        assert any("25 MB" in c.value and "never stored" in c.value for c in app.caption)
        assert any("Upload a photo" in i.value for i in app.info)
        assert verdicts(app) == [] and errors(app) == []
        (uploader,) = app.file_uploader
        assert uploader.accept_multiple_files
        # every file reaches the app, so a refused one is explained in words, not a red "!"
        assert not uploader.allowed_type
        assert len(app.toggle) == 1  # the camera; the comparison appears with photos

    def test_model_picker_says_what_each_model_is(self, app: AppTest) -> None:
        picker = app.radio(key="model")
        assert picker.options == ["CNN trained from scratch", "baseline: MLP on gray pixels"]
        cnn, mlp = picker.proto.captions
        assert cnn.startswith("hotdog_cnn") and mlp.startswith("hotdog_mlp")
        assert all("right on 50% of held-out photos" in label for label in (cnn, mlp))
        # the picker's button names the model in use, in full
        (button,) = app.get("popover")
        assert button.proto.popover.label == "Model: CNN trained from scratch"

    def test_the_picker_reads_cards_and_loads_only_the_model_in_use(
        self, random_models: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        loaded: list[str] = []
        real_load = models.load
        monkeypatch.setattr(
            models, "load", lambda path: loaded.append(str(path)) or real_load(path)
        )
        monkeypatch.setenv("HOTDOG_MODELS_DIR", str(random_models))
        st.cache_resource.clear()  # models other tests loaded in this process
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.run()
        assert not at.exception
        assert [Path(p).stem for p in loaded] == ["hotdog_cnn"]

    def test_camera_is_off_until_switched_on(self, app: AppTest) -> None:
        assert len(app.camera_input) == 0
        app.toggle(key="camera_on").set_value(True).run()
        assert len(app.camera_input) == 1
        shot = encode(photo_like(64, 48), "JPEG")
        app.camera_input(key="camera").set_value(("shot.jpg", shot, "image/jpeg")).run()
        assert not app.exception
        assert len(verdicts(app)) == 1 and verdicts(app)[0] in VERDICTS

    def test_model_card_tab(self, app: AppTest) -> None:
        app.button_group(key="view").set_value("Model card").run()
        assert [m.label for m in app.metric] == ["Accuracy", "Balanced accuracy", "ROC AUC"]
        assert app.metric[0].value == "50.0%"
        captions = " ".join(c.value for c in app.caption)
        assert "mean of its accuracy on hotdogs" in captions
        assert "The training run took" not in captions or "min" in captions
        assert len(app.table) == 2  # what it called each photo, photos per source
        (confusion, data) = app.table
        assert list(confusion.value.index) == ["really not a hotdog", "really a hotdog"]
        assert "right on held out (balanced)" in data.value.columns
        assert len(app.get("vega_lite_chart")) == 2  # right answers; losses (one tap away)
        assert any("python -m training train" in c.value for c in app.code)

    def test_how_it_works_draws_a_neuron_and_the_stages(self, app: AppTest) -> None:
        app.button_group(key="view").set_value("How it works").run()
        (chart,) = app.get("graphviz_chart")
        dot = chart.proto.spec
        assert dot.startswith("digraph") and "tanh" in dot
        assert "grad 1.0000" in dot  # the output's own gradient after backward()
        (stages,) = app.table
        assert list(stages.value.index) == ["look", "stage 1", "stage 2", "stage 3", "decide"]
        assert stages.value.loc["decide", "output"] == "2 scores (not hotdog, hotdog)"
        assert any("ResNet(" in c.value for c in app.code)
        words = " ".join(m.value for m in app.markdown)
        assert "micrograd/reference.py" in words  # where a student reads what a conv is
        for term in ("softmax", "Grad-CAM", "gradient", "backward()", "tanh"):
            assert f"**{term}**" in words, term  # every technical word is explained where used


class TestClassify:
    def test_upload_many(self, app: AppTest, random_models: Path) -> None:
        files = [(f"photo{i}.jpg", encode(photo_like(200, 150, seed=i), "JPEG")) for i in range(3)]
        upload(app, files)
        assert not app.exception and errors(app) == []
        # photos that arrive together keep their order
        assert [name for _, name, _ in cards(app)] == [name for name, _ in files]
        assert [k for k, _ in keyed_verdicts(app)] == ["verdict-0", "verdict-1", "verdict-2"]
        want = [expected_p(random_models, "hotdog_cnn", data) for _, data in files]
        assert probabilities(app, [d for _, d in files]) == pytest.approx(want, abs=0.006)
        for verdict, p in zip(verdicts(app), want, strict=True):
            expected = VERDICTS[0] if p >= 0.5 else VERDICTS[1]
            assert verdict == (expected if abs(p - 0.5) >= 0.15 else VERDICTS[2])
        captions = [cap for im in app.get("image") for cap in im.captions]
        assert captions.count("Your photo: the model judges the outlined square") == 3
        assert any("what the model sees (64×64 colour)" in c for c in captions)
        assert any("where it looked (Grad-CAM)" in c for c in captions)

    def test_summary_counts_every_answer(self, app: AppTest) -> None:
        files = [(f"photo{i}.jpg", encode(photo_like(200, 150, seed=i), "JPEG")) for i in range(3)]
        upload(app, [*files, ("notes.jpg", b"not a photo")])
        counts = {v: verdicts(app).count(v) for v in VERDICTS}
        (summary,) = [b for b in html_bodies(app.main) if 'class="summary"' in b]
        words = {VERDICTS[0]: ("hotdog", "hotdogs"), VERDICTS[1]: ("not hotdog", "not hotdogs"),
                 VERDICTS[2]: ("not sure", "not sure")}  # fmt: skip
        expected = [f"{n} {words[v][n != 1]}" for v, n in counts.items() if n]
        assert (
            summary
            == '<p class="summary">' + " · ".join([*expected, "1 could not be read"]) + "</p>"
        )

    def test_newest_photo_comes_first(self, app: AppTest) -> None:
        app.pills(key="example").set_value("cat.jpg").run()
        upload(app, [("mine.png", encode(photo_like(120, 90), "PNG"))])
        assert [name for _, name, _ in cards(app)] == ["mine.png", "example: Cat"]
        app.pills(key="example").set_value("rocket.jpg").run()
        assert [name for _, name, _ in cards(app)] == ["example: Rocket", "mine.png"]
        upload(app, [("mine.png", encode(photo_like(120, 90), "PNG")),
                     ("more.png", encode(photo_like(120, 90, seed=4), "PNG"))])  # fmt: skip
        assert [name for _, name, _ in cards(app)] == ["more.png", "example: Rocket", "mine.png"]

    def test_click_example_and_dismiss_it(self, app: AppTest, random_models: Path) -> None:
        app.pills(key="example").set_value("cat.jpg").run()
        assert not app.exception
        assert [name for _, name, _ in cards(app)] == ["example: Cat"]
        cat = (EXAMPLES / "cat.jpg").read_bytes()
        want = expected_p(random_models, "hotdog_cnn", cat)
        assert probabilities(app, [cat]) == pytest.approx([want], abs=0.006)
        # The choice sticks across reruns and switches to another example on click.
        app.run()
        assert len(verdicts(app)) == 1
        app.pills(key="example").set_value("rocket.jpg").run()
        assert [name for _, name, _ in cards(app)] == ["example: Rocket"]
        # tapping it again puts it away: nothing is left on the page
        app.pills(key="example").set_value(None).run()
        assert verdicts(app) == [] and any("Upload a photo" in i.value for i in app.info)

    def test_clear_all_puts_every_photo_away(self, app: AppTest) -> None:
        app.pills(key="example").set_value("cat.jpg").run()
        upload(app, [("mine.png", encode(photo_like(120, 90), "PNG"))])
        app.toggle(key="camera_on").set_value(True).run()
        assert len(verdicts(app)) == 2
        app.button(key="clear").click().run()
        assert not app.exception
        assert verdicts(app) == [] and any("Upload a photo" in i.value for i in app.info)
        assert app.pills(key="example").value is None
        assert app.toggle(key="camera_on").value is False
        (uploader,) = app.file_uploader
        assert not uploader.value  # a fresh, empty uploader
        upload(app, [("again.png", encode(photo_like(120, 90), "PNG"))])
        assert [name for _, name, _ in cards(app)] == ["again.png"]

    def test_compare_shows_every_other_model_next_to_its_photo(self, app: AppTest) -> None:
        upload(app, [("a.png", encode(photo_like(120, 90), "PNG")),
                     ("b.png", encode(photo_like(120, 90, seed=2), "PNG"))])  # fmt: skip
        assert not [b for b in html_bodies(app.main) if "Other models say" in b]
        app.toggle(key="compare").set_value(True).run()
        assert not app.exception
        for i in range(2):
            (compare,) = [b for b in html_bodies(block(app, f"verdict-{i}")) if "Other" in b]
            assert "baseline: MLP on gray pixels" in compare and "hotdog_mlp" in compare
            assert "CNN trained from scratch" not in compare  # the model in use is the card
            assert "right on 50% held out" in compare

    def test_unsure_tiny_and_blank_photos_say_so(self, app: AppTest) -> None:
        blank = encode(Image.new("RGB", (40, 30), (120, 120, 120)), "PNG")
        upload(app, [("blank.png", blank)])
        warnings = [w.value for w in app.warning]
        assert any("only 40×30 pixels" in w for w in warnings)
        assert any("nearly blank" in w for w in warnings)

    def test_size_warning_reads_the_photo_not_the_reduced_decode(self, app: AppTest) -> None:
        """A 256x192 JPEG decoded at reduced size for the 32 px MLP is not "too small"."""
        app.radio(key="model").set_value("hotdog_mlp").run()
        upload(app, [("fine.jpg", encode(photo_like(256, 192), "JPEG")),
                     ("small.jpg", encode(photo_like(60, 45), "JPEG"))])  # fmt: skip
        warnings = [w.value for w in app.warning]
        assert not any("256×192" in w or "64×48" in w for w in warnings), warnings
        assert any("only 60×45 pixels" in w for w in warnings)

    def test_a_black_and_white_photo_is_told_why(self, app: AppTest) -> None:
        gray = encode(photo_like(200, 150).convert("L"), "JPEG")
        colour = encode(photo_like(200, 150), "JPEG")
        upload(app, [("gray.jpg", gray), ("colour.jpg", colour)])
        warnings = [w.value for w in app.warning]
        assert len(warnings) == 1 and "black and white" in warnings[0]
        assert not any("closer photo" in c.value for c in app.caption if "gray" in c.value)

    def test_switch_model(self, app: AppTest, random_models: Path) -> None:
        data = encode(photo_like(200, 150), "JPEG")
        upload(app, [("a.jpg", data)])
        cnn_p = probabilities(app, [data])
        app.radio(key="model").set_value("hotdog_mlp").run()
        assert not app.exception
        captions = [cap for im in app.get("image") for cap in im.captions]
        assert any("what the model sees (32×32 gray)" in c for c in captions)
        assert any("where it looked (saliency)" in c for c in captions)
        (button,) = app.get("popover")
        assert button.proto.popover.label == "Model: baseline: MLP on gray pixels"
        mlp_p = probabilities(app, [data], "hotdog_mlp")
        assert mlp_p == pytest.approx([expected_p(random_models, "hotdog_mlp", data)], abs=0.006)
        assert mlp_p != cnn_p
        app.button_group(key="view").set_value("Model card").run()
        assert app.subheader[0].value == "Model card: hotdog_mlp"
        app.button_group(key="view").set_value("How it works").run()
        assert any("Flatten" in c.value for c in app.code)

    def test_file_names_are_not_markup(self, app: AppTest) -> None:
        upload(app, [("[click](http://example.com) *x*.png", b""),
                     ("<b>bold</b>.png", encode(photo_like(120, 90), "PNG"))])  # fmt: skip
        (message,) = errors(app)
        assert "\\[click\\]\\(http://example\\.com\\) \\*x\\*\\.png" in message
        assert [name for _, name, _ in cards(app)] == ["<b>bold</b>.png"]
        assert not any("<b>bold" in b for b in html_bodies(app.main))  # escaped in the HTML

    def test_the_probability_shown_is_calibrated(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The page shows softmax(logits / T) with the temperature the weights file holds,
        worked out here from the network's own logits."""
        path = write_random_model(tmp_path, "hotdog_cnn", HOTDOG_CNN, PreprocessConfig(),
                                  seed=5, temperature=0.25)  # fmt: skip
        monkeypatch.setenv("HOTDOG_MODELS_DIR", str(tmp_path))
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.run()
        data = encode(photo_like(200, 150, seed=2), "JPEG")
        upload(at, [("photo.jpg", data)])
        assert not at.exception and errors(at) == []
        net = models.load(path).model
        x = preprocess(data, PreprocessConfig())[None]
        with no_grad():
            z = net(Tensor(x)).numpy()[0].astype(np.float64)
        raw = 1 / (1 + np.exp(z[0] - z[1]))
        calibrated = 1 / (1 + np.exp((z[0] - z[1]) / 0.25))
        assert abs(calibrated - raw) > 0.01  # the test can tell the two apart
        assert probabilities(at, [data]) == pytest.approx([calibrated], abs=1e-6)

    def test_card_text_is_shown_as_plain_text(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Text from a card (a source name, its date) never becomes an image the visitor's
        browser fetches, or a link."""
        path = write_random_model(tmp_path, "hotdog_cnn", HOTDOG_CNN, PreprocessConfig())
        card = json.loads(path.with_suffix(".json").read_text())
        card["created"] = "[click](http://example.invalid/)"
        card["data"]["train"]["sources"]["![x](http://example.invalid/x.png)"] = 5
        path.with_suffix(".json").write_text(json.dumps(card))
        monkeypatch.setenv("HOTDOG_MODELS_DIR", str(tmp_path))
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.run()
        at.button_group(key="view").set_value("Model card").run()
        assert not at.exception
        captions = " ".join(c.value for c in at.caption)
        assert "\\!\\[x\\]\\(http" in captions and "\\[click\\]" in captions
        assert "![x](" not in captions and "[click]" not in captions.replace("\\[click\\]", "")

    def test_not_sure_band(self, app: AppTest) -> None:
        import app as app_module

        unsure = models.Prediction("hotdog", 0.58, sure=False)
        assert app_module.verdict_text(unsure) == "🤔 Not sure"
        assert app_module.verdict_text(models.Prediction("hotdog", 0.9)) == "🌭 Hotdog"

    def test_twelve_megapixel_jpeg(self, app: AppTest, twelve_mp_jpeg: bytes) -> None:
        upload(app, [("camera.jpg", twelve_mp_jpeg)])
        assert not app.exception and errors(app) == []
        assert len(verdicts(app)) == 1

    def test_exif_orientation_is_applied(self, app: AppTest, random_models: Path) -> None:
        rotated, upright, raw = exif_rotated_pair()
        upload(app, [("rotated.png", rotated), ("upright.png", upright), ("raw.png", raw)])
        p_rotated, p_upright, p_raw = probabilities(app, [rotated, upright, raw])
        assert p_rotated == p_upright
        assert p_raw != p_upright  # so the check above could fail
        assert p_raw == pytest.approx(expected_p(random_models, "hotdog_cnn", raw), abs=0.006)


class TestInputs:
    @pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
    def test_bad_file_gets_its_own_error(self, app: AppTest, case: str) -> None:
        name, make, words = BAD_INPUTS[case]
        good = encode(photo_like(120, 90), "PNG")
        upload(app, [("before.png", good), (name, make()), ("after.png", good)])
        assert not app.exception
        (message,) = errors(app)
        assert words in message
        assert name.replace(".", "\\.") in message
        assert "Traceback" not in message and "\n" not in message
        assert len(verdicts(app)) == 2  # the good files around it are still classified
        # ...and the error sits in the place of its file, between the two
        assert [v for _, v in keyed_verdicts(app)][1] == "error"

    @pytest.mark.parametrize("case", ODD_BUT_VALID, ids=list(ODD_BUT_VALID))
    def test_odd_but_valid_file_is_classified(self, app: AppTest, case: str) -> None:
        name, make = ODD_BUT_VALID[case]
        upload(app, [(name, make())])
        assert not app.exception
        assert errors(app) == []
        assert len(verdicts(app)) == 1 and verdicts(app)[0] in VERDICTS

    def test_iphone_heic_photo_is_classified(self, app: AppTest) -> None:
        pillow_heif = optional_import("pillow_heif")
        pillow_heif.register_heif_opener()
        upload(app, [("IMG_0001.HEIC", encode(photo_like(120, 90), "HEIF"))])
        assert not app.exception and errors(app) == []
        assert len(verdicts(app)) == 1

    def test_all_bad_inputs_at_once(self, app: AppTest) -> None:
        files = [(name, make()) for name, make, _ in BAD_INPUTS.values()]
        files += [(name, make()) for name, make in ODD_BUT_VALID.values()]
        upload(app, files)
        assert not app.exception
        assert len(errors(app)) == len(BAD_INPUTS)
        assert len(verdicts(app)) == len(ODD_BUT_VALID)


class TestModelProblems:
    def run_with(self, directory: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
        monkeypatch.setenv("HOTDOG_MODELS_DIR", str(directory))
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.run()
        assert not at.exception
        return at

    def test_corrupt_weights(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp_path / "hotdog_cnn.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
        (tmp_path / "hotdog_cnn.json").write_text("{}")
        at = self.run_with(tmp_path, monkeypatch)
        (message,) = errors(at)
        assert "Could not load the model" in message and "hotdog\\_cnn" in message
        assert verdicts(at) == [] and "not a .npz" in message

    @pytest.mark.parametrize(
        "card",
        [[1, 2, 3], {"history": [{"loss": 1}]}, {"metrics": {"confusion": [[1]]}}, "text"],
    )
    def test_oddly_shaped_cards_never_break_the_page(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, random_models: Path, card: object
    ) -> None:
        import json

        (tmp_path / "hotdog_cnn.npz").write_bytes((random_models / "hotdog_cnn.npz").read_bytes())
        (tmp_path / "hotdog_cnn.json").write_text(json.dumps(card))
        at = self.run_with(tmp_path, monkeypatch)
        at.button_group(key="view").set_value("Model card").run()
        assert errors(at) == [] and not at.exception
        assert any("could not be read" in c.value for c in at.caption)

    def test_weights_of_another_architecture(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, random_models: Path
    ) -> None:
        state, _ = models.io.load_model_file(random_models / "hotdog_mlp.npz")
        config = {"architecture": HOTDOG_CNN, "preprocess": PreprocessConfig().to_dict()}
        save_model(tmp_path / "hotdog_cnn.npz", state, config, {})
        at = self.run_with(tmp_path, monkeypatch)
        (message,) = errors(at)
        assert "does not match its architecture" in message

    def test_no_models(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        at = self.run_with(tmp_path, monkeypatch)
        (message,) = errors(at)
        assert "No model found" in message


class TestHelpers:
    def test_overlay_and_colormap(self) -> None:
        import app as app_module

        image = np.full((8, 8, 3), 200, np.uint8)
        saliency = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
        out = app_module.overlay(image, saliency)
        assert out.shape == (8, 8, 3) and out.dtype == np.uint8
        assert (app_module.colormap(np.array([0.0, 1.0])) == app_module.INFERNO[[0, 255]]).all()
        # hot pixels take the colour map's bright end, cold ones stay close to the photo
        assert out[-1, -1].sum() > out[0, 0].sum()
        assert app_module.enlarge(np.zeros((4, 2, 3), np.uint8), 64).size == (64, 128)

    def test_concurrent_sessions_get_their_own_answers(self, random_models: Path) -> None:
        """Streamlit runs each session in a thread: classify() from many threads at once must
        give exactly what it gives one call at a time."""
        import app as app_module

        classifier = models.load(random_models / "hotdog_cnn.npz")
        photos = [encode(photo_like(100, 80, seed=s), "PNG") for s in range(6)]
        photos = [app_module.Photo(f"{i}.png", data) for i, data in enumerate(photos)]
        alone = [app_module.classify(classifier, photo) for photo in photos]
        with concurrent.futures.ThreadPoolExecutor(len(photos)) as pool:
            together = list(pool.map(lambda photo: app_module.classify(classifier, photo), photos))
        for one, other in zip(alone, together, strict=True):
            assert isinstance(other, app_module.Result), other
            assert isinstance(one, app_module.Result)
            assert other.explanation.prediction == one.explanation.prediction
            np.testing.assert_array_equal(other.explanation.saliency, one.explanation.saliency)


# --------------------------------------------------------------------------- shipped models

SHIPPED = ROOT / "models" / f"{models.DEFAULT_MODEL}.npz"


@pytest.fixture
def shipped_app(monkeypatch: pytest.MonkeyPatch) -> AppTest:
    if not SHIPPED.exists():
        if STRICT:
            pytest.fail(f"{SHIPPED} is required in CI but is missing")
        pytest.skip(f"{SHIPPED.name} has not been trained yet")
    monkeypatch.delenv("HOTDOG_MODELS_DIR", raising=False)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    return at


@pytest.mark.slow  # loads and runs the shipped models
class TestShippedModels:
    """The real weights in ``models/`` give the right verdicts on the example images."""

    @pytest.mark.parametrize(
        ("example", "verdicts_allowed"),
        [
            ("coffee.jpg", {"🚫 Not hotdog"}),
            ("cat.jpg", {"🚫 Not hotdog"}),
            ("rocket.jpg", {"🚫 Not hotdog"}),
            ("astronaut.jpg", {"🚫 Not hotdog"}),
            ("hotdog.jpg", {"🌭 Hotdog"}),
        ],
    )
    def test_example_verdicts(
        self, shipped_app: AppTest, example: str, verdicts_allowed: set[str]
    ) -> None:
        shipped_app.pills(key="example").set_value(example).run()
        assert not shipped_app.exception
        (verdict,) = verdicts(shipped_app)
        assert verdict in verdicts_allowed

    def test_every_shipped_model_loads_and_answers(self, shipped_app: AppTest) -> None:
        names = models.available()
        assert names[0] == models.DEFAULT_MODEL
        upload(shipped_app, [("rocket.jpg", (EXAMPLES / "rocket.jpg").read_bytes())])
        for name in names:
            shipped_app.radio(key="model").set_value(name).run()
            assert not shipped_app.exception and errors(shipped_app) == []
            assert verdicts(shipped_app) == ["🚫 Not hotdog"], name


def test_a_page_shows_the_newest_photos_and_says_how_many_are_hidden(app: AppTest) -> None:
    import app as app_module

    n = app_module.PHOTOS_PER_PAGE + 3
    files = [(f"p{i}.png", encode(photo_like(40, 30, seed=i), "PNG")) for i in range(n)]
    upload(app, files)
    assert not app.exception
    assert len(verdicts(app)) == app_module.PHOTOS_PER_PAGE
    assert any("3 older ones are not shown" in i.value for i in app.info)
    # a rerun computes nothing again: every shown result is remembered
    remembered = dict(app.session_state["results"])
    app.run()
    assert all(r is remembered[k] for k, r in app.session_state["results"].items())
