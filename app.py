"""Hotdog or not: a Streamlit shell over ``models`` (``streamlit run app.py``).

Everything that thinks lives in ``models``; this file only draws. Each photo is classified by
``Classifier.explain``, which returns the verdict, the image exactly as the network saw it and
a map of where the evidence was, from a single decode of the upload.

The page is built for a phone first: one line of title, the inputs, then one compact card per
photo, newest first, so a new answer lands where the visitor is looking. Each card is a big
coloured verdict that names its photo, the chance as a bar of the same colour, the visitor's
own photo with the square the model judged outlined, and the explanation one tap away. On a
desktop the cards sit three to a row.

Serving is stateless: a model loads once per process (``st.cache_resource``) and is read-only
afterwards; each visitor's results live in their own ``st.session_state``; nothing is written to
disk. Models are read from ``models/``, or from the folder named by the ``HOTDOG_MODELS_DIR``
environment variable.
"""

from __future__ import annotations

import os

# A verdict is a few dozen small matrix products (batches of one photo): a second BLAS thread
# gains little on an idle machine, but on a busy or shared CPU the threads' spin-waiting
# made a verdict erratic and up to 10x slower. One thread per process unless the environment
# says otherwise; this must run before numpy is first imported (``streamlit run`` has not
# imported it yet when it starts this script).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import hashlib
import html
import io
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image, ImageDraw

import models
from models.preprocess import HEIF_SUPPORTED, PHOTO_FORMATS, load_image
from models.teaching import architecture_rows, neuron_graph

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent
EXAMPLES_DIR = ROOT / "examples" / "images"
#: Example files offered under the uploader, with their button labels, in display order.
EXAMPLES = {
    "hotdog.jpg": "Hotdog (drawn)",
    "coffee.jpg": "Coffee",
    "cat.jpg": "Cat",
    "astronaut.jpg": "Astronaut",
    "rocket.jpg": "Rocket",
}

#: Largest photo classified, in MB: Streamlit's own limit (``server.maxUploadSize`` in
#: .streamlit/config.toml) is the same, so the browser refuses a bigger file before sending it;
#: the app checks again for files that reach it another way (the camera, a test harness).
PHOTO_LIMIT_MB = 25

#: Noisy copies averaged for each SmoothGrad map (the MLP): 8 keeps a 12 MP photo well under
#: a second. Convolutional networks explain with Grad-CAM, which needs no copies.
SALIENCY_SAMPLES = 8
#: Side of each half of the "why" picture (the model's view and the heat map), in pixels.
DISPLAY_SIZE = 224
#: The visitor's photo is shown inside this box (width, height), uncropped.
THUMBNAIL_BOX = (320, 240)
#: Photos one page shows (the newest): with every model compared, their results still fit the
#: per-visitor memory below, so a rerun recomputes nothing.
PHOTOS_PER_PAGE = 20
#: Results remembered per visitor (keyed by model and image content), least recently shown
#: dropped first, so reruns are instant.
RESULTS_PER_SESSION = 64
#: Result cards per row on a wide screen (a phone stacks them in one column).
CARDS_PER_ROW = 3

HOTDOG_TEXT = "🌭 Hotdog"
NOT_HOTDOG_TEXT = "🚫 Not hotdog"
NOT_SURE_TEXT = "🤔 Not sure"

#: The page's views, the first one shown first.
VIEWS = ["Classify", "Model card", "How it works"]

#: One plain line on each figure of the model card.
METRIC_HELP = {
    "Accuracy": "the share of held-out photos it got right.",
    "Balanced accuracy": "the mean of its accuracy on hotdogs and on everything else, so "
    "being right on the many non-hotdogs can't hide missed hotdogs.",
    "ROC AUC": "the chance that a random hotdog photo scores higher than a random other photo "
    "(1 is perfect, 0.5 is a coin toss).",
}

#: The how-it-works paragraph on each explanation method.
EXPLAINERS = {
    "gradcam": (
        "The heat map is **Grad-CAM**: the network's last grid of features (a few dozen cells, "
        "each seeing one patch of the photo), each cell weighted by how much it raises the "
        "hotdog score. It "
        "uses one fixed scale for every photo, so a dark map means no part of the photo looked "
        "like a hotdog."
    ),
    "smoothgrad": (
        "The heat map is a **saliency map**: how much each pixel moves the hotdog score (its "
        f"gradient), averaged over {SALIENCY_SAMPLES} slightly noisy copies of the image "
        "(SmoothGrad) and lightly blurred: bright regions are the ones that move the verdict "
        "most."
    ),
}

#: Verdict colours: (name, background, text). White on green and on red, near-black on amber:
#: every pair is above 4.5:1 contrast, and the words and icon say it without the colour.
VERDICT_STYLES = {
    HOTDOG_TEXT: ("hotdog", "#1b5e20", "#ffffff"),
    NOT_HOTDOG_TEXT: ("not", "#b71c1c", "#ffffff"),
    NOT_SURE_TEXT: ("unsure", "#ffc107", "#1a1a1a"),
}

#: The page's own styles: a one-line title on a phone, the verdict cards, and every control at
#: least 44x44 px (the size a thumb can hit).
CSS = """
<style>
[data-testid="stMainBlockContainer"] { padding-top: 3.75rem; }
h1 { font-size: clamp(1.5rem, 7.5vw, 2.5rem) !important; white-space: nowrap;
     padding: 0.25rem 0 0 !important; }
.st-key-verdict-0 { scroll-margin-top: 4.5rem; }
.verdict { border-radius: 0.75rem; padding: 0.55rem 0.9rem 0.65rem; }
.verdict h3 { margin: 0; padding: 0; color: inherit; font-size: 2rem; line-height: 1.2; }
.verdict .photo { display: block; font-size: 0.95rem; font-weight: 400;
                  overflow-wrap: anywhere; }
.chance { margin: 0.45rem 0 0.2rem; }
.bar { height: 0.75rem; border-radius: 0.375rem; background: #e0e0e0; overflow: hidden; }
.bar > span { display: block; height: 100%; }
.summary { font-size: 1.15rem; font-weight: 600; margin: 0; }
.compare { margin: 0.3rem 0 0; padding-left: 1.1rem; }
.compare li { margin: 0.15rem 0; }
button, summary, [data-testid="stMainMenuButton"] {
    min-height: 44px !important; min-width: 44px !important; }
[data-testid="stCheckbox"] label { min-height: 44px; align-items: center; }
[data-testid="stElementToolbar"] { display: none; }
button[aria-label="Add files"] { color: #31333f !important; }
/* the theme sets one small size for all chart text: keep the neuron graph's own sizes, so its
   text stays readable when the drawing is shrunk to a phone's width */
[data-testid="stGraphVizChart"] text[font-size="20.00"] { font-size: 20px !important; }
</style>
"""


# ----------------------------------------------------------------------------- pure helpers


def _inferno_lut() -> np.ndarray:
    """A 256-entry ``uint8 (256, 3)`` colour map close to matplotlib's "inferno"."""
    stops = np.array(
        [
            [0, 0, 4],
            [40, 11, 84],
            [101, 21, 110],
            [159, 42, 99],
            [212, 72, 66],
            [245, 125, 21],
            [250, 193, 39],
            [252, 255, 164],
        ],
        dtype=np.float64,
    )
    x = np.linspace(0.0, 1.0, 256)
    at = np.linspace(0.0, 1.0, len(stops))
    lut = np.stack([np.interp(x, at, stops[:, c]) for c in range(3)], axis=1)
    lut = np.rint(lut).astype(np.uint8)
    lut.flags.writeable = False
    return lut


INFERNO = _inferno_lut()


def colormap(values: np.ndarray) -> np.ndarray:
    """``float (H, W)`` in [0, 1] -> ``uint8 (H, W, 3)`` inferno colours (values are clipped)."""
    index = np.rint(np.clip(np.nan_to_num(values), 0.0, 1.0) * 255).astype(np.intp)
    return INFERNO[index]


def overlay(image: np.ndarray, saliency: np.ndarray) -> np.ndarray:
    """Blend a saliency map over the image: ``uint8 (H, W, 3)`` and ``float (H, W)`` in [0, 1]
    -> ``uint8 (H, W, 3)``.

    The photo is dimmed to grey so the colours read clearly; the heat colour is laid on with an
    opacity that grows with saliency, so the parts the model ignored still show the photo.
    """
    img = np.asarray(image, dtype=np.float32)
    s = np.clip(np.nan_to_num(np.asarray(saliency, dtype=np.float32)), 0.0, 1.0)[..., None]
    grey = img.mean(axis=-1, keepdims=True) * 0.7
    alpha = 0.2 + 0.75 * s
    out = grey * (1.0 - alpha) + colormap(s[..., 0]).astype(np.float32) * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def enlarge(image: np.ndarray, size: int = DISPLAY_SIZE) -> Image.Image:
    """``uint8 (h, w, 3)`` -> PIL image ``size`` wide, nearest-neighbour (pixels stay crisp)."""
    pil = Image.fromarray(np.asarray(image, dtype=np.uint8))
    height = max(1, round(size * pil.height / pil.width))
    return pil.resize((size, height), Image.Resampling.NEAREST)


def verdict_text(prediction: models.Prediction) -> str:
    """The verdict as shown: ``"🌭 Hotdog"``, ``"🚫 Not hotdog"`` or ``"🤔 Not sure"``."""
    if not prediction.sure:
        return NOT_SURE_TEXT
    return HOTDOG_TEXT if prediction.is_hotdog else NOT_HOTDOG_TEXT


def legend(width: int = DISPLAY_SIZE, height: int = 14) -> np.ndarray:
    """The heat map's colour scale, none to strong, as a ``uint8 (height, width, 3)`` strip."""
    return np.repeat(colormap(np.linspace(0.0, 1.0, width))[None], height, axis=0)


def outlined_thumbnail(image: Image.Image, box: tuple[int, int] = THUMBNAIL_BOX) -> bytes:
    """The visitor's photo, uncropped and shrunk to fit ``box``, with the centred square the
    model judged outlined in yellow on black (visible on any photo): JPEG bytes."""
    thumb = image.copy()
    thumb.thumbnail(box, Image.Resampling.LANCZOS)
    w, h = thumb.size
    side = min(w, h)
    if side >= 8:
        x0, y0 = (w - side) // 2, (h - side) // 2
        draw = ImageDraw.Draw(thumb)
        draw.rectangle((x0, y0, x0 + side - 1, y0 + side - 1), outline=(0, 0, 0), width=4)
        draw.rectangle(
            (x0 + 1, y0 + 1, x0 + side - 2, y0 + side - 2), outline=(255, 214, 0), width=2
        )
    buf = io.BytesIO()
    thumb.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def why_picture(explanation: models.Explanation) -> Image.Image:
    """The model's view and its heat map side by side, ``DISPLAY_SIZE`` each, 8 px apart."""
    seen = enlarge(explanation.image)
    heat = enlarge(overlay(explanation.image, explanation.saliency))
    out = Image.new("RGB", (2 * DISPLAY_SIZE + 8, seen.height), (255, 255, 255))
    out.paste(seen, (0, 0))
    out.paste(heat, (DISPLAY_SIZE + 8, 0))
    return out


def verdict_html(name: str, prediction: models.Prediction) -> str:
    """The verdict as HTML: a big coloured heading that names its photo (so a screen reader
    hears "Hotdog, cat.jpg"), then the chance in words and as a bar of the same colour."""
    text = verdict_text(prediction)
    kind, background, colour = VERDICT_STYLES[text]
    percent = round(100 * prediction.p_hotdog)
    bar = "#8a5a00" if kind == "unsure" else background  # amber text colour reads on gray
    return (
        f'<div class="verdict verdict-{kind}" style="background:{background};color:{colour}">'
        f'<h3><span class="answer">{text}</span>'
        f'<span class="photo">{html.escape(name)}</span></h3></div>'
        f'<p class="chance">Chance it is a hotdog: {percent}%</p>'
        f'<div class="bar" role="progressbar" aria-label="Chance it is a hotdog" '
        f'aria-valuemin="0" aria-valuemax="100" aria-valuenow="{percent}">'
        f'<span style="width:{percent}%;background:{bar}"></span></div>'
    )


def summary_line(verdicts: list[str | None]) -> str:
    """``"3 hotdogs · 1 not hotdog · 1 not sure"`` for a list of verdict texts (None: a file
    that could not be read)."""
    counts = Counter(verdicts)
    parts = [
        (counts[HOTDOG_TEXT], "hotdog", "hotdogs"),
        (counts[NOT_HOTDOG_TEXT], "not hotdog", "not hotdogs"),
        (counts[NOT_SURE_TEXT], "not sure", "not sure"),
        (counts[None], "could not be read", "could not be read"),
    ]
    return " · ".join(f"{n} {one if n == 1 else many}" for n, one, many in parts if n)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$])")


def escape_markdown(text: str) -> str:
    """Backslash-escape Markdown so a file name is shown as typed, never as a link or markup."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text.replace("\n", " "))


# ------------------------------------------------------------------------------ models


def models_dir() -> Path:
    """Where the weights live: ``$HOTDOG_MODELS_DIR`` if set, else the repository's ``models/``."""
    return Path(os.environ.get("HOTDOG_MODELS_DIR") or models.MODELS_DIR)


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def load_classifier(path: str, version: int) -> models.Classifier | str:
    """Load a model once per process (``version``, the file's mtime, reloads replaced weights),
    or the one-line reason it cannot be used: a failure is remembered too, so a bad file costs
    one read per version, not one per rerun of every visitor.

    The classifier is read-only, so every session can share it. A throwaway prediction warms
    it up: the first pass through a network pays one-off allocation costs that should not land
    on the first visitor's first photo.
    """
    try:
        classifier = models.load(path)
    except models.ModelFileError as exc:
        return str(exc)
    size = classifier.preprocess.size
    classifier.explain(Image.new("RGB", (size, size), (128, 128, 128)), samples=2)
    return classifier


def try_classifier(directory: Path, name: str) -> tuple[models.Classifier, str] | str:
    """The classifier ``name`` from ``directory`` and a key naming this version of it, or a
    one-line reason why it cannot be used."""
    path = directory / f"{name}.npz"
    try:
        version = path.stat().st_mtime_ns
        loaded = load_classifier(str(path), version)
    except OSError as exc:
        return str(exc)
    except Exception:
        log.exception("loading %s failed", path)
        return "unexpected error while loading it"
    return loaded if isinstance(loaded, str) else (loaded, f"{path}@{version}")


def get_classifier(directory: Path, name: str) -> tuple[models.Classifier, str]:
    """``try_classifier``, or an ``st.error`` and a clean stop."""
    found = try_classifier(directory, name)
    if isinstance(found, tuple):
        return found
    st.error(f"Could not load the model **{escape_markdown(name)}**: {found}")
    st.stop()
    raise AssertionError("unreachable: st.stop() ends the script run")


def model_title(name: str, card: models.ModelCard) -> str:
    """A model in a few plain words: what it is, and whether it is the default."""
    return card.kind + (" (default)" if name == models.DEFAULT_MODEL else "")


def model_caption(name: str, card: models.ModelCard) -> str:
    """The picker's second line for a model: its file name and held-out balanced accuracy."""
    accuracy = card.balanced_accuracy
    score = "" if accuracy is None else f": right on {accuracy:.0%} of held-out photos (balanced)"
    return f"{name}{score}"


def pick_model(directory: Path, names: list[str]) -> str:
    """The model picker: a button naming the model in use, which opens the choices in full
    (radio buttons, so a phone shows no keyboard). Labels come from the cards alone: no model
    is loaded to draw the picker."""
    cards = {name: models.read_card(directory / f"{name}.npz") for name in names}
    current = st.session_state.get("model")
    current = current if current in cards else names[0]
    with st.popover(f"Model: {model_title(current, cards[current])}", icon="⚙️"):
        chosen = st.radio(
            "Which network answers",
            names,
            key="model",
            format_func=lambda n: model_title(n, cards[n]),
            captions=[model_caption(n, cards[n]) for n in names],
        )
    return chosen if chosen in cards else names[0]


# ------------------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class Photo:
    """One image to classify: a display name and the encoded bytes."""

    name: str
    data: bytes

    @property
    def key(self) -> tuple[str, str]:
        """Name and content hash: the same file uploaded again is the same photo."""
        return self.name, hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Result:
    """A classified photo: the explanation, warnings about the photo itself, and the photo
    shrunk for display with the model's square outlined (JPEG)."""

    explanation: models.Explanation
    warnings: tuple[str, ...] = ()
    thumbnail: bytes = b""


def rejection(photo: Photo) -> str | None:
    """Why a file cannot be classified before decoding it (what, why, what to do), or None."""
    size_mb = len(photo.data) / 2**20
    if size_mb > PHOTO_LIMIT_MB:
        return (
            f"this file is {size_mb:.0f} MB, over the {PHOTO_LIMIT_MB} MB limit. Resize or "
            "compress the photo (a phone's 'medium' size is plenty) and upload it again."
        )
    extension = Path(photo.name).suffix.lower().lstrip(".")
    if extension == "svg" or photo.data.lstrip()[:5] in (b"<svg ", b"<?xml"):
        return (
            "SVG is a drawing format, not a photo, so it can't be classified. Export it as "
            "PNG or JPEG and upload that."
        )
    if extension in ("heic", "heif") and not HEIF_SUPPORTED:
        return (
            "HEIC photos can't be read on this server. Export the photo as JPEG (on an iPhone: "
            "Settings > Camera > Formats > Most Compatible) and upload that."
        )
    return None


def classify(classifier: models.Classifier, photo: Photo) -> Result | str:
    """Verdict and explanation for one photo, or a message in words saying why not."""
    refused = rejection(photo)
    if refused:
        return refused
    try:
        image = load_image(photo.data, draft_size=classifier.preprocess.size)
        explanation = classifier.explain(image, samples=SALIENCY_SAMPLES)
        warnings = classifier.photo_warnings(image, explanation)
        return Result(explanation, warnings, outlined_thumbnail(image))
    except models.ImageError as exc:
        return f"{exc}. Upload a photo as {', '.join(PHOTO_FORMATS)}."
    except Exception:
        log.exception("classifying an upload failed")
        return "this file could not be classified (unexpected error). Try another photo."


def remembered_result(classifier: models.Classifier, model_key: str, photo: Photo) -> Result | str:
    """``classify`` with a small per-session memory, so a rerun doesn't recompute old photos."""
    results: dict[tuple[str, str], Result | str] = st.session_state.setdefault("results", {})
    key = (model_key, photo.key[1])
    result = results.pop(key) if key in results else classify(classifier, photo)
    results[key] = result  # now the most recently shown
    while len(results) > RESULTS_PER_SESSION:
        del results[next(iter(results))]
    return result


def example_paths() -> dict[str, Path]:
    """Example files that exist, by name, in display order."""
    return {name: EXAMPLES_DIR / name for name in EXAMPLES if (EXAMPLES_DIR / name).is_file()}


def uploader_key() -> str:
    """The uploader's widget key: "Clear all" starts a new one, the only way to empty it."""
    return f"uploads-{st.session_state.get('upload_round', 0)}"


def clear_all() -> None:
    """Put every photo away: the uploads, the example and the camera."""
    st.session_state["upload_round"] = st.session_state.get("upload_round", 0) + 1
    st.session_state["example"] = None
    st.session_state["camera_on"] = False
    st.session_state.pop("arrival", None)


def upload_widget() -> list[Photo]:
    """The uploader. It states Streamlit's real size limit itself; every file type reaches
    the app, so each refusal gets a message in words."""
    uploads = st.file_uploader("Upload photos", accept_multiple_files=True, key=uploader_key())
    return [Photo(f.name, f.getvalue()) for f in uploads or []]


def other_inputs() -> list[Photo]:
    """The examples (tap again to put one away) and the camera switch."""
    photos = []
    examples = example_paths()
    chosen = st.pills(
        "Or try an example (tap again to remove it)",
        list(examples),
        format_func=lambda name: EXAMPLES[name],
        key="example",
        wrap=True,
    )
    if chosen in examples:
        photos.append(Photo(f"example: {EXAMPLES[chosen]}", examples[chosen].read_bytes()))
    # The camera widget only exists while the switch is on, so the browser asks for camera
    # access only when the visitor wants it.
    if st.toggle("📷 Take a photo with the camera", key="camera_on"):
        shot = st.camera_input("Take a photo", key="camera")
        if shot is not None:
            photos.append(Photo("camera photo", shot.getvalue()))
    return photos


def newest_first(photos: list[Photo]) -> list[Photo]:
    """``photos`` with the most recently added first: each photo keeps the turn it arrived in
    (remembered per visitor), so a new upload, example or camera shot goes on top; photos
    that arrived together keep their own order."""
    arrival: dict[tuple[str, str], int] = st.session_state.setdefault("arrival", {})
    live = {photo.key for photo in photos}
    for key in [k for k in arrival if k not in live]:  # removed photos are forgotten
        del arrival[key]
    turn = max(arrival.values(), default=-1) + 1
    for photo in photos:
        arrival.setdefault(photo.key, turn)
    return sorted(photos, key=lambda photo: -arrival[photo.key])  # stable within a turn


# ----------------------------------------------------------------------------- results


def show_result(
    i: int,
    photo: Photo,
    result: Result | str,
    classifier: models.Classifier,
    others: list[tuple[str, models.ModelCard, Result | str]],
) -> None:
    """Photo ``i`` (0 is the newest) as a card keyed ``verdict-<i>``: the verdict naming the
    photo, the chance, warnings, the photo itself, the other models' verdicts when compared,
    and the explanation behind a tap."""
    with st.container(border=True, key=f"verdict-{i}"):
        if isinstance(result, str):
            st.error(
                f"**{escape_markdown(photo.name)}** could not be classified: {result}", icon="⚠️"
            )
            return
        explanation = result.explanation
        prediction = explanation.prediction
        st.html(verdict_html(photo.name, prediction))
        if not prediction.sure and not result.warnings:
            st.caption(
                f"{prediction.p_hotdog:.0%} is too close to even to call: the model is "
                "guessing. A closer photo of the food usually settles it."
            )
        for warning in result.warnings:
            st.warning(warning, icon="🔎")
        if result.thumbnail:
            st.image(
                result.thumbnail,
                caption="Your photo: the model judges the outlined square",
                alt=f"{photo.name}, with the square the model judged outlined",
            )
        if others:
            st.html(comparison_html(others))
        with st.expander("Why? See what the model looked at"):
            size = explanation.image.shape[0]
            kind = "gray" if classifier.preprocess.grayscale else "colour"
            gradcam = explanation.method == "gradcam"
            method = "Grad-CAM" if gradcam else "saliency"
            st.image(
                why_picture(explanation),
                caption=f"Left: what the model sees ({size}×{size} {kind}). "
                f"Right: where it looked ({method}).",
                alt=f"The photo as the model sees it, {size} by {size} {kind} pixels, and a "
                "heat map over it, brighter where the model found hotdog evidence",
                output_format="PNG",
                width="stretch",
            )
            st.image(legend(), width="stretch", alt="Colour scale from no evidence to strong")
            st.caption(
                "dark: no hotdog evidence · bright: strong (one scale for every photo)"
                if gradcam
                else "bright: the pixels that move the score most (scaled per photo)"
            )


def comparison_html(others: list[tuple[str, models.ModelCard, Result | str]]) -> str:
    """The other models' verdicts on one photo, a line each (wraps on any screen)."""
    lines = []
    for name, card, result in others:
        what = html.escape(card.kind)
        if isinstance(result, str):
            lines.append(f"<li><b>{what}</b>: could not classify it</li>")
            continue
        prediction = result.explanation.prediction
        accuracy = card.balanced_accuracy
        score = "" if accuracy is None else f" · right on {accuracy:.0%} held out"
        lines.append(
            f"<li><b>{what}</b>: {verdict_text(prediction)}, {prediction.p_hotdog:.0%} hotdog"
            f'<span class="model-name"> ({html.escape(name)}{score})</span></li>'
        )
    return '<p class="chance">Other models say:</p><ul class="compare">' + "".join(lines) + "</ul>"


def other_verdicts(
    directory: Path, name: str, photo: Photo
) -> list[tuple[str, models.ModelCard, Result | str]]:
    """Every other model's card and result on ``photo``, in the picker's order."""
    found: list[tuple[str, models.ModelCard, Result | str]] = []
    for other in models.available(directory):
        if other == name:
            continue
        loaded = try_classifier(directory, other)
        if isinstance(loaded, str):
            found.append((other, models.read_card(directory / f"{other}.npz"), loaded))
            continue
        classifier, key = loaded
        found.append((other, classifier.card, remembered_result(classifier, key, photo)))
    return found


def scroll_to_newest(newest: tuple[str, str] | None) -> None:
    """When a photo was added, bring its card on screen if it is not (a visitor may have
    scrolled down to the older ones); nothing happens on other reruns."""
    if newest is None or st.session_state.get("scrolled_to") == newest:
        return
    st.session_state["scrolled_to"] = newest
    st.html(
        "<script>(() => { const card = document.querySelector('.st-key-verdict-0');"
        " if (!card) return; const top = card.getBoundingClientRect().top;"
        " if (top < 0 || top > window.innerHeight - 160)"
        " card.scrollIntoView({block: 'start'}); })();"
        f"/* {html.escape(newest[1][:12])} */</script>",
        unsafe_allow_javascript=True,
    )


def show_results(
    directory: Path,
    name: str,
    photos: list[Photo],
    compare: bool,
    loaded: tuple[models.Classifier, str],
) -> None:
    """The summary line and "Clear all", then a card per photo, newest first."""
    classifier, model_key = loaded
    results = [(photo, remembered_result(classifier, model_key, photo)) for photo in photos]
    with st.container(horizontal=True, vertical_alignment="center", key="summary"):
        verdicts = [
            None if isinstance(r, str) else verdict_text(r.explanation.prediction)
            for _, r in results
        ]
        st.html(f'<p class="summary">{summary_line(verdicts)}</p>', width="content")
        st.button("Clear all", key="clear", icon="🗑️", on_click=clear_all)
    for start in range(0, len(results), CARDS_PER_ROW):
        columns = st.columns(CARDS_PER_ROW)
        for column, i in zip(
            columns, range(start, min(start + CARDS_PER_ROW, len(results))), strict=False
        ):
            photo, result = results[i]
            others = other_verdicts(directory, name, photo) if compare else []
            with column:
                show_result(i, photo, result, classifier, others)
    scroll_to_newest(photos[0].key if photos else None)


# -------------------------------------------------------------------------- other views


def show_model_card(classifier: models.Classifier) -> None:
    """What the model is and how well it does, in plain words; the technical record (losses,
    the exact command, the raw card) one tap away."""
    import pandas as pd

    card = classifier.card
    st.subheader(f"Model card: {classifier.name}")
    if card.empty:
        st.info("This model has no model card.")
        return
    st.markdown(
        f"**{escape_markdown(card.kind)}.** Its figures are measured on **held-out photos**: "
        "photos set aside before training, which the model never learned from."
    )
    shown = [
        (label, value)
        for label, value in (
            ("Accuracy", card.accuracy),
            ("Balanced accuracy", card.balanced_accuracy),
            ("ROC AUC", card.roc_auc),
        )
        if value is not None
    ]
    if shown:
        for col, (label, value) in zip(st.columns(len(shown)), shown, strict=True):
            col.metric(label, f"{value:.1%}" if label != "ROC AUC" else f"{value:.3f}")
        st.caption(" ".join(f"**{label}**: {METRIC_HELP[label]}" for label, _ in shown))
    if card.calibration_error is not None:
        before = card.calibration_error_before
        st.caption(
            "**Calibration**: of the held-out photos shown a chance of N%, the share that "
            "really were hotdogs was off from N by "
            f"{100 * card.calibration_error:.1f} percentage points on average"
            + ("" if before is None else f" ({100 * before:.1f} before calibration)")
            + ", so the chance means what it says."
        )
    if card.confusion:
        n = f" (held-out photos, n = {card.n})" if card.n else " (held-out photos)"
        st.markdown(f"**What it called each photo**{n}")
        st.table(
            pd.DataFrame(
                card.confusion,
                index=["really not a hotdog", "really a hotdog"],
                columns=["called not hotdog", "called hotdog"],
            )
        )
    scores = history_frame(
        card,
        {
            "val_balanced_accuracy": "held-out photos (balanced)",
            "train_accuracy": "training photos",
        },
    )
    if scores is not None:
        st.markdown("**How it learned**: right answers after each pass over the training photos")
        st.vega_lite_chart(scores, line_spec(percent=True), width="stretch", height=360)
    if card.sources:
        st.markdown(
            "**The photos**: how many of each kind it trained on, and how it did on those held out"
        )
        st.table(data_table(card))
    if card.training_summary():
        st.caption(escape_markdown(card.training_summary()))
    if card.pretrained:
        source = card.pretrained
        st.caption(
            "It started from a network already trained on ImageNet (1.3 million photos of "
            f"1,000 kinds of things): {escape_markdown(str(source.get('name', '')))}, from "
            f"{escape_markdown(str(source.get('package', '')))}, licence "
            f"{escape_markdown(str(source.get('licence', '')))}."
        )
    if card.problems:
        problems = "; ".join(escape_markdown(problem) for problem in card.problems)
        st.caption(f"Parts of this card could not be read: {problems}.")
    with st.expander("Technical details: losses, the exact command, the whole card"):
        losses = history_frame(card, {"train_loss": "training loss", "val_loss": "held-out loss"})
        if losses is not None:
            st.markdown(
                "**Loss per pass** (cross-entropy: how far its chances were from the "
                "truth; lower is better)"
            )
            st.vega_lite_chart(losses, line_spec(percent=False), width="stretch", height=360)
        if card.notes:
            st.caption(escape_markdown(card.notes))
        if card.command:
            st.markdown("**Reproduce it**")
            st.code(card.command, language="bash", wrap_lines=True)
        st.json(card.raw, expanded=False)


def history_frame(card: models.ModelCard, series: dict[str, str]) -> Any:
    """The card's per-epoch ``series`` (history field -> plain name) as a long pandas table
    ``pass, series, value``, or None when the card has none of them."""
    import pandas as pd

    rows = [
        {"pass": row["epoch"], "series": plain, "value": row[field]}
        for row in card.history
        for field, plain in series.items()
        if row.get(field) is not None
    ]
    return pd.DataFrame(rows) if rows else None


def line_spec(percent: bool) -> dict[str, Any]:
    """A Vega-Lite line chart of ``history_frame``: points on every pass, and a y axis that
    spans the values rather than 0 to 1, so the change is visible."""
    axis: dict[str, Any] = {"format": ".1%", "tickCount": 5} if percent else {}
    return {
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": {
                "field": "pass",
                "type": "quantitative",
                "title": "pass over the training photos",
                "axis": {"tickMinStep": 1},
            },
            "y": {
                "field": "value",
                "type": "quantitative",
                "title": None,
                "scale": {"zero": False},
                "axis": axis,
            },
            "color": {
                "field": "series",
                "type": "nominal",
                "title": None,
                "legend": {"orient": "bottom", "direction": "vertical"},
            },
        },
    }


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def data_table(card: models.ModelCard) -> Any:
    """A pandas table of photos per source in plain words: trained on and held out, per
    class, with the held-out balanced accuracy."""
    import pandas as pd

    rows = {
        row.plain_name: {
            "trained on: hotdogs": row.train_hotdog,
            "trained on: others": row.train_not_hotdog,
            "held out": row.val_hotdog + row.val_not_hotdog,
            "right on held out (balanced)": _percent(row.val_balanced_accuracy),
        }
        for row in card.sources
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def show_how_it_works(classifier: models.Classifier) -> None:
    """The path from pixels to an answer in plain words, one neuron's computation graph, and
    the network as a table of stages."""
    import pandas as pd

    cfg = classifier.preprocess
    colour = "gray" if cfg.grayscale else "colour"
    st.markdown(
        f"""
**From photo to answer.** Your photo is turned upright, cut to its central square (the square
outlined on your photo) and shrunk to **{cfg.size}×{cfg.size} {colour} pixels**. The network
(`{classifier.name}`, below) turns those pixels into two scores, one for "not hotdog" and one
for "hotdog". A **softmax** turns the two scores into chances that add up to 100%; at
{classifier.threshold:.0%} or more it says hotdog, and within 15 points of that it says "not
sure". Before that the scores are divided by {classifier.temperature:.2f}, a number fitted on
photos the network never trained on, so that "N% hotdog" comes true about N% of the time.

**Why.** {EXPLAINERS[classifier.explainer]}

**How it learned.** No deep-learning framework is involved: every number flows through the
small engine in `micrograd/`. Each operation remembers its inputs and how a change in its
output depends on them (its **gradient**); **backward()** walks back through that record to
find how each weight should move to make the answer less wrong, and training nudges every
weight that way, photo after photo. To see what a convolution or a batch norm really computes,
read `micrograd/reference.py` first: each is a few lines there. Here is the same machinery on a
single neuron, `tanh(x1·w1 + x2·w2 + b)`
(**tanh** squashes any number into −1…1), with x1 = 2, x2 = 0, w1 = −3, w2 = 1, b = 6.88: each
box shows a value (data) and its gradient (grad).
"""
    )
    graph, _ = st.columns(2)  # half the page on a wide screen; a phone stacks it full width
    with graph:
        st.graphviz_chart(neuron_graph(), width="stretch")
    st.markdown(
        f"**The network**: {classifier.model.num_parameters():,} weights, in stages; each "
        "stage looks at the output of the one before, from edges and colours up to whole "
        "objects."
    )
    rows = architecture_rows(classifier.card.architecture or {}, cfg.size)
    if rows:
        st.table(pd.DataFrame(rows).set_index("step"))
    with st.expander("Layer by layer (the network as code sees it)"):
        if classifier.card.architecture:
            st.json(classifier.card.architecture)
        st.code(repr(classifier.model), language="text")


# -------------------------------------------------------------------------------- page


def classify_view(directory: Path, name: str) -> None:
    """The inputs (uploader; examples and camera beside it on a wide screen), then the
    results, newest first, then the comparison switch."""
    upload_col, other_col = st.columns([3, 2])
    with upload_col:
        uploads = upload_widget()
    with other_col:
        extra = other_inputs()
    photos = newest_first(uploads + extra)
    hidden = len(photos) - PHOTOS_PER_PAGE
    photos = photos[:PHOTOS_PER_PAGE]
    results = st.container()
    compare = bool(photos) and st.toggle("Compare every model on these photos", key="compare")
    with results:
        # loaded after the inputs are drawn, so the page paints before the model is ready; a
        # model that cannot be used says so at once, before anyone uploads a photo
        loaded = get_classifier(directory, name)
        if not photos:
            st.info("Upload a photo, take one with the camera, or pick an example.")
        else:
            if hidden > 0:
                st.info(
                    f"Showing the newest {PHOTOS_PER_PAGE} photos; {hidden} older ones are "
                    'not shown. Remove some, or tap "Clear all", to see more.'
                )
            show_results(directory, name, photos, compare, loaded)
    st.caption(
        f"Photos up to {PHOTO_LIMIT_MB} MB each, in {', '.join(PHOTO_FORMATS)}. They are "
        "classified in memory and never stored."
    )


def main() -> None:
    """Draw the page: the title, the view switch and the model picker, then one view."""
    st.set_page_config(
        page_title="Hotdog or not", page_icon="🌭", layout="wide", initial_sidebar_state="collapsed"
    )
    st.html(CSS)
    st.title("🌭 Hotdog or not?", anchor=False)
    directory = models_dir()
    names = models.available(directory)
    if not names:
        st.error(f"No model found in {directory}: expected NAME.npz with its NAME.json card.")
        st.stop()
    with st.container(horizontal=True, vertical_alignment="center", key="controls"):
        # One view at a time, and only that one is computed: tabs would redraw all three on
        # every upload, for a person who sees one.
        view = st.segmented_control(
            "View", VIEWS, default=VIEWS[0], key="view", label_visibility="collapsed"
        )
        name = pick_model(directory, names)
    if view == "Model card":
        show_model_card(get_classifier(directory, name)[0])
    elif view == "How it works":
        show_how_it_works(get_classifier(directory, name)[0])
    else:
        classify_view(directory, name)


if __name__ == "__main__":
    main()
