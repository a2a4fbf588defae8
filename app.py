"""Hotdog or not: a Streamlit shell over ``models`` (``streamlit run app.py``).

Everything that thinks lives in ``models``; this file only draws. Each photo is classified by
``Classifier.explain``, which returns the verdict, the image exactly as the network saw it and
a map of where the evidence was, from a single decode of the upload.

Serving is stateless: a model loads once per process (``st.cache_resource``) and is read-only
afterwards; each visitor's results live in their own ``st.session_state``; nothing is written to
disk. Models are read from ``models/``, or from the folder named by the ``HOTDOG_MODELS_DIR``
environment variable.
"""

from __future__ import annotations

import os

# The network's matrix products are small (64x64 images, batches of 8): a second BLAS thread
# gains about 20% on an idle machine, but on a busy or shared CPU the threads' spin-waiting
# made a verdict erratic and up to 10x slower. One thread per process unless the environment
# says otherwise; this must run before numpy is first imported (``streamlit run`` has not
# imported it yet when it starts this script).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import hashlib
import importlib.util
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

import models
from micrograd.engine import Value
from micrograd.viz import draw_dot
from models.preprocess import load_image

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

HEIF_SUPPORTED = importlib.util.find_spec("pillow_heif") is not None
IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"] + (
    ["heic", "heif"] if HEIF_SUPPORTED else []
)
#: Largest photo classified, in MB: Streamlit's own limit (``server.maxUploadSize`` in
#: .streamlit/config.toml) is the same, so the browser refuses a bigger file before sending it;
#: the app checks again for files that reach it another way (the camera, a test harness).
PHOTO_LIMIT_MB = 25

#: Noisy copies averaged for each SmoothGrad map (the MLP): 8 keeps a 12 MP photo well under
#: a second. Convolutional networks explain with Grad-CAM, which needs no copies.
SALIENCY_SAMPLES = 8
#: Side of the enlarged model view and heat map, in pixels.
DISPLAY_SIZE = 256
#: Results remembered per visitor (keyed by model and image content), so reruns are instant.
RESULTS_PER_SESSION = 64
#: Photos smaller than this (shorter side, pixels) get a warning: too little to judge.
TINY_SIDE = 64
#: A model view whose pixels vary less than this (standard deviation, 0-255) is nearly blank.
UNIFORM_STD = 6.0

HOTDOG_TEXT = "🌭 Hotdog"
NOT_HOTDOG_TEXT = "Not hotdog"
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

#: What a model is, by the architecture its card records, for the picker and the compare view.
KINDS = {
    "efficientnet_lite": "ImageNet network, fine-tuned",
    "resnet": "CNN trained from scratch",
    "mlp": "baseline: MLP on gray pixels",
}


#: The how-it-works paragraph on each explanation method.
EXPLAINERS = {
    "gradcam": (
        "The heat map is Grad-CAM: the network's last grid of features (7×7 cells for the "
        "pretrained network), each cell weighted by how much it raises the hotdog score. It "
        "uses one fixed scale for every photo, so a dark map means no part of the photo looked "
        "like a hotdog."
    ),
    "smoothgrad": (
        "The saliency map is the gradient of the hotdog score with respect to every input "
        f"pixel, averaged over {SALIENCY_SAMPLES} slightly noisy copies of the image "
        "(SmoothGrad) and lightly blurred: bright regions are the ones that move the verdict "
        "most."
    ),
}


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
    """The verdict as shown: ``"🌭 Hotdog"``, ``"Not hotdog"`` or ``"🤔 Not sure"``."""
    if not prediction.sure:
        return NOT_SURE_TEXT
    return HOTDOG_TEXT if prediction.is_hotdog else NOT_HOTDOG_TEXT


def legend(width: int = DISPLAY_SIZE, height: int = 14) -> np.ndarray:
    """The heat map's colour scale, none to strong, as a ``uint8 (height, width, 3)`` strip."""
    return np.repeat(colormap(np.linspace(0.0, 1.0, width))[None], height, axis=0)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$])")


def escape_markdown(text: str) -> str:
    """Backslash-escape Markdown so a file name is shown as typed, never as a link or markup."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text.replace("\n", " "))


# ------------------------------------------------------------------------------ models


def models_dir() -> Path:
    """Where the weights live: ``$HOTDOG_MODELS_DIR`` if set, else the repository's ``models/``."""
    return Path(os.environ.get("HOTDOG_MODELS_DIR") or models.MODELS_DIR)


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def load_classifier(path: str, version: int) -> models.Classifier:
    """Load a model once per process (``version``, the file's mtime, reloads replaced weights).

    The classifier is read-only, so every session can share it. A throwaway prediction warms
    it up: the first pass through a network pays one-off allocation costs that should not land
    on the first visitor's first photo.
    """
    classifier = models.load(path)
    size = classifier.preprocess.size
    classifier.explain(Image.new("RGB", (size, size), (128, 128, 128)), samples=2)
    return classifier


def try_classifier(directory: Path, name: str) -> tuple[models.Classifier, str] | str:
    """The classifier ``name`` from ``directory`` and a key naming this version of it, or a
    one-line reason why it cannot be used."""
    path = directory / f"{name}.npz"
    try:
        version = path.stat().st_mtime_ns
        return load_classifier(str(path), version), f"{path}@{version}"
    except (models.ModelFileError, OSError) as exc:
        return str(exc)
    except Exception:
        log.exception("loading %s failed", path)
        return "unexpected error while loading it"


def get_classifier(directory: Path, name: str) -> tuple[models.Classifier, str]:
    """``try_classifier``, or an ``st.error`` and a clean stop."""
    found = try_classifier(directory, name)
    if isinstance(found, tuple):
        return found
    st.error(f"Could not load the model **{escape_markdown(name)}**: {found}")
    st.stop()
    raise AssertionError("unreachable: st.stop() ends the script run")


# ------------------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class Photo:
    """One image to classify: a display name and the encoded bytes."""

    name: str
    data: bytes


@dataclass(frozen=True)
class Result:
    """A classified photo: the explanation, and warnings about the photo itself."""

    explanation: models.Explanation
    warnings: tuple[str, ...] = ()


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


def photo_warnings(image: Image.Image, explanation: models.Explanation) -> tuple[str, ...]:
    """Warnings about a photo that make its verdict less trustworthy."""
    found = []
    if min(image.size) < TINY_SIDE:
        found.append(
            f"This photo is only {image.width}×{image.height} pixels: too small to judge "
            "reliably. A bigger photo gives a better answer."
        )
    if float(np.std(explanation.image)) < UNIFORM_STD:
        found.append("This photo is nearly blank: there is little in it to judge.")
    return tuple(found)


def classify(classifier: models.Classifier, photo: Photo) -> Result | str:
    """Verdict and explanation for one photo, or a message in words saying why not."""
    refused = rejection(photo)
    if refused:
        return refused
    try:
        image = load_image(photo.data, draft_size=classifier.preprocess.size)
        explanation = classifier.explain(image, samples=SALIENCY_SAMPLES)
        return Result(explanation, photo_warnings(image, explanation))
    except models.ImageError as exc:
        formats = ", ".join(t.upper() for t in IMAGE_TYPES if t not in ("jpeg", "tif", "heif"))
        return f"{exc}. Upload a photo as {formats}."
    except Exception:
        log.exception("classifying an upload failed")
        return "this file could not be classified (unexpected error). Try another photo."


def remembered_result(classifier: models.Classifier, model_key: str, photo: Photo) -> Result | str:
    """``classify`` with a small per-session memory, so a rerun doesn't recompute old photos."""
    results: dict[tuple[str, str], Result | str] = st.session_state.setdefault("results", {})
    key = (model_key, hashlib.sha256(photo.data).hexdigest())
    if key not in results:
        results[key] = classify(classifier, photo)
        while len(results) > RESULTS_PER_SESSION:
            del results[next(iter(results))]
    return results[key]


def example_paths() -> dict[str, Path]:
    """Example files that exist, by name, in display order."""
    return {name: EXAMPLES_DIR / name for name in EXAMPLES if (EXAMPLES_DIR / name).is_file()}


def upload_widget() -> list[Photo]:
    """The uploader; every file reaches the app, so each rejection gets a message in words."""
    formats = ", ".join(t.upper() for t in IMAGE_TYPES if t not in ("jpeg", "tif", "heif"))
    uploads = st.file_uploader(
        "Upload photos",
        accept_multiple_files=True,
        key="uploads",
        help=f"Photos up to {PHOTO_LIMIT_MB} MB each: {formats}."
        + (" iPhone HEIC photos work too." if HEIF_SUPPORTED else ""),
    )
    return [Photo(f.name, f.getvalue()) for f in uploads or []]


def other_inputs() -> list[Photo]:
    """The camera switch and the examples (tap an example again to put it away)."""
    photos = []
    # The camera widget only exists while the switch is on, so the browser asks for camera
    # access only when the visitor wants it.
    if st.toggle("📷 Take a photo with the camera", key="camera_on"):
        shot = st.camera_input("Take a photo", key="camera")
        if shot is not None:
            photos.append(Photo("camera photo", shot.getvalue()))
    examples = example_paths()
    chosen = st.pills(
        "…or try an example (tap again to remove it)",
        list(examples),
        format_func=lambda name: EXAMPLES[name],
        key="example",
    )
    if chosen in examples:
        photos.append(Photo(f"example: {EXAMPLES[chosen]}", examples[chosen].read_bytes()))
    return photos


# ----------------------------------------------------------------------------- results


def show_result(i: int, photo: Photo, result: Result | str, classifier: models.Classifier) -> None:
    """Photo ``i``: the verdict heading first, then its chance, warnings and pictures, in a
    container keyed ``verdict-<i>``."""
    name = escape_markdown(photo.name)
    with st.container(border=True, key=f"verdict-{i}"):
        if isinstance(result, str):
            st.error(f"**{name}** could not be classified: {result}", icon="⚠️")
            return
        explanation = result.explanation
        prediction = explanation.prediction
        p = prediction.p_hotdog
        st.markdown(f"### {verdict_text(prediction)}")
        st.caption(name)
        st.progress(p, text=f"Chance it is a hotdog: {p:.0%}")
        if not prediction.sure:
            st.caption(
                f"A {p:.0%} chance is too close to even to call: the model is guessing. "
                "A closer, better-lit photo usually settles it."
            )
        for warning in result.warnings:
            st.warning(warning, icon="🔎")
        seen_col, heat_col = st.columns(2)
        size = explanation.image.shape[0]
        kind = "gray" if classifier.preprocess.grayscale else "colour"
        with seen_col:
            st.image(
                enlarge(explanation.image),
                caption=f"What the model sees ({size}×{size} {kind})",
                alt=f"The photo as the model sees it: {size} by {size} {kind} pixels",
                output_format="PNG",
                width="stretch",
            )
        with heat_col:
            gradcam = explanation.method == "gradcam"
            st.image(
                enlarge(overlay(explanation.image, explanation.saliency)),
                caption="Where it looked (Grad-CAM)" if gradcam else "Where it looked (saliency)",
                alt="Heat map over the photo: brighter where the model found hotdog evidence",
                output_format="PNG",
                width="stretch",
            )
            st.image(legend(), width="stretch", alt="Colour scale from no evidence to strong")
            st.caption(
                "dark: no hotdog evidence · bright: strong (one scale for every photo)"
                if gradcam
                else "bright: the pixels that move the score most (scaled per photo)"
            )


def show_comparison(directory: Path, photos: list[Photo]) -> None:
    """Every model's verdict on every photo, side by side, with its held-out accuracy."""
    import pandas as pd

    loaded = [(name, *get_classifier(directory, name)) for name in models.available(directory)]
    for photo in photos:
        rows = []
        for name, classifier, key in loaded:
            result = remembered_result(classifier, key, photo)
            if isinstance(result, str):
                continue
            prediction = result.explanation.prediction
            accuracy = classifier.card.balanced_accuracy
            rows.append(
                {
                    "model": name,
                    "what it is": model_kind(classifier.card),
                    "verdict": verdict_text(prediction),
                    "chance of hotdog": f"{prediction.p_hotdog:.0%}",
                    "held-out balanced accuracy": "" if accuracy is None else f"{accuracy:.0%}",
                }
            )
        if rows:
            st.markdown(f"**{escape_markdown(photo.name)}**")
            st.dataframe(pd.DataFrame(rows).set_index("model"), width="stretch")


def model_kind(card: models.ModelCard) -> str:
    """What a model is, in a few words, by the architecture its card records."""
    architecture = card.architecture or {}
    return KINDS.get(str(architecture.get("type")), "a trained classifier")


def model_label(directory: Path, name: str) -> str:
    """The picker's line for a model: name, what it is and its held-out balanced accuracy,
    or why it is unavailable. Loads the model once per process (it is cached)."""
    found = try_classifier(directory, name)
    if isinstance(found, str):
        return f"{name}: unavailable ({found})"
    card = found[0].card
    accuracy = card.balanced_accuracy
    score = "" if accuracy is None else f", {accuracy:.0%} balanced accuracy held out"
    default = " (default)" if name == models.DEFAULT_MODEL else ""
    return f"{name}{default}: {model_kind(card)}{score}"


# -------------------------------------------------------------------------- other tabs


def show_model_card(classifier: models.Classifier) -> None:
    """Metrics, confusion matrix, training curves, data and the command that made the model."""
    import pandas as pd

    card = classifier.card
    st.subheader(f"Model card: {classifier.name}")
    if card.empty:
        st.info("This model has no model card.")
        return
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
            shown_value = f"{value:.1%}" if label != "ROC AUC" else f"{value:.3f}"
            col.metric(label, shown_value, help=METRIC_HELP[label])
        st.caption(
            " ".join(
                f"**{label}**: {METRIC_HELP[label]}" for label, _ in shown if label != "Accuracy"
            )
        )
    if card.calibration_error is not None:
        before = card.calibration_error_before
        st.caption(
            "**Calibration**: of the held-out photos shown a chance of N%, the share that "
            "really were hotdogs was off from N by "
            f"{100 * card.calibration_error:.1f} percentage points on average"
            + ("" if before is None else f" ({100 * before:.1f} before calibration)")
            + ", so the chance means what it says."
        )
    if card.training_summary():
        st.caption(escape_markdown(card.training_summary()))
    if card.notes:
        st.caption(escape_markdown(card.notes))
    if card.pretrained:
        source = card.pretrained
        st.caption(
            f"Pretrained weights: {escape_markdown(str(source.get('name', '')))}, from "
            f"{escape_markdown(str(source.get('package', '')))}, licence "
            f"{escape_markdown(str(source.get('licence', '')))}."
        )
    if card.confusion:
        n = f", n = {card.n})" if card.n else ")"
        st.markdown("**Confusion matrix** (held-out photos" + n)
        st.table(
            pd.DataFrame(
                card.confusion,
                index=["actual: not hotdog", "actual: hotdog"],
                columns=["predicted: not hotdog", "predicted: hotdog"],
            )
        )
    if card.history:
        frame = pd.DataFrame(card.history).set_index("epoch")
        losses = [c for c in ("train_loss", "val_loss") if frame[c].notna().any()]
        scores = [c for c in ("val_accuracy", "val_balanced_accuracy") if frame[c].notna().any()]
        if losses:
            st.markdown("**Loss per epoch** (lower is better)")
            st.line_chart(frame[losses], x_label="epoch", y_label="cross-entropy loss", height=240)
        if scores:
            st.markdown("**Held-out accuracy per epoch**")
            st.line_chart(frame[scores], x_label="epoch", y_label="accuracy", height=240)
    if card.sources:
        st.markdown("**Data**: images per source, for training and held out")
        st.table(data_table(card))
    if card.command:
        st.markdown("**Reproduce it**")
        st.code(card.command, language="bash", wrap_lines=True)
    if card.problems:
        problems = "; ".join(escape_markdown(problem) for problem in card.problems)
        st.caption(f"Parts of this card could not be read: {problems}.")
    with st.expander("The whole model card (JSON)"):
        st.json(card.raw)


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def data_table(card: models.ModelCard) -> Any:
    """A pandas table of images per source and class, for training and held out, with the
    held-out accuracy per source."""
    import pandas as pd

    rows = {
        row.source: {
            "train: hotdog": row.train_hotdog,
            "train: not": row.train_not_hotdog,
            "held out: hotdog": row.val_hotdog,
            "held out: not": row.val_not_hotdog,
            "held-out accuracy": _percent(row.val_accuracy),
            "held-out balanced accuracy": _percent(row.val_balanced_accuracy),
        }
        for row in card.sources
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def neuron_graph() -> str:
    """DOT source of one neuron, ``tanh(x1*w1 + x2*w2 + b)``, after ``backward()``."""
    x1, x2 = Value(2.0, label="x1"), Value(0.0, label="x2")
    w1, w2 = Value(-3.0, label="w1"), Value(1.0, label="w2")
    b = Value(6.8813735870195432, label="b")
    x1w1, x2w2 = x1 * w1, x2 * w2
    x1w1.label, x2w2.label = "x1·w1", "x2·w2"
    s = x1w1 + x2w2
    s.label = "x1·w1 + x2·w2"
    n = s + b
    n.label = "n"
    out = n.tanh()
    out.label = "out = tanh(n)"
    out.backward()
    return draw_dot(out, rankdir="TB")


def show_how_it_works(classifier: models.Classifier) -> None:
    """A few sentences, one neuron's computation graph, and the network's architecture."""
    cfg = classifier.preprocess
    colour = "grayscale" if cfg.grayscale else "colour"
    explainer = classifier.explainer
    st.markdown(
        f"""
Each photo is decoded, turned upright, cropped to its central square and shrunk to
**{cfg.size}×{cfg.size} {colour} pixels**: the first picture in each result is exactly what the
network sees. The network (`{classifier.name}`, below) turns those pixels into two scores, and a
softmax turns the scores into **p(hotdog)**; {classifier.threshold:g} or more means hotdog. Before
the softmax the scores are divided by {classifier.temperature:.2f}, a number fitted on photos the
network never trained on so that "N% hotdog" comes true about N% of the time.

{EXPLAINERS[explainer]}

No deep-learning framework is involved. Every number flows through the autograd engine in
`micrograd/`: each operation records its inputs and how to pass a gradient back to them, and
`backward()` walks that graph in reverse. Here is the same machinery on a single neuron,
`tanh(x1·w1 + x2·w2 + b)` with x1 = 2, x2 = 0, w1 = −3, w2 = 1, b = 6.88, after `backward()`:
each box shows a value and the gradient of the output with respect to it.
"""
    )
    st.graphviz_chart(neuron_graph())
    st.markdown(f"**Architecture**: {classifier.model.num_parameters():,} parameters")
    if classifier.card.architecture:
        st.json(classifier.card.architecture)
    with st.expander("Layer by layer"):
        st.code(repr(classifier.model), language="text")


# -------------------------------------------------------------------------------- page


def classify_tab(directory: Path, name: str) -> None:
    """Uploader, then the verdicts (so the newest answer is on screen without scrolling),
    then the comparison switch, the camera and the examples."""
    uploads = upload_widget()
    results = st.container()
    compare = st.toggle("Compare every model on these photos", key="compare")
    photos = uploads + other_inputs()
    # Loaded after the inputs are drawn, so the page paints before the model is ready.
    classifier, model_key = get_classifier(directory, name)
    with results:
        if not photos:
            st.info("Upload a photo, take one with the camera, or pick an example below.")
        for i, photo in enumerate(photos):
            show_result(i, photo, remembered_result(classifier, model_key, photo), classifier)
        if compare and photos:
            show_comparison(directory, photos)


def main() -> None:
    """Draw the page: sidebar, then one of the Classify / Model card / How it works views."""
    st.set_page_config(page_title="Hotdog or not", page_icon="🌭", layout="centered")
    st.title("🌭 Hotdog or not?")
    st.caption(
        "Neural networks on their own autograd engine: an ImageNet network fine-tuned on "
        "hotdogs (the default), and networks trained from scratch to compare."
    )

    directory = models_dir()
    names = models.available(directory)
    with st.sidebar:
        st.header("Settings")
        name = st.selectbox(
            "Model", names, key="model", format_func=lambda n: model_label(directory, n)
        )
        st.caption(
            f"Photos up to {PHOTO_LIMIT_MB} MB each. They are classified in memory and never "
            "stored."
        )
    if name is None:
        st.error(f"No model found in {directory}: expected NAME.npz with its NAME.json card.")
        st.stop()

    # One view at a time, and only that one is computed: tabs would redraw all three on every
    # upload, for a person who sees one.
    view = st.segmented_control(
        "View", VIEWS, default=VIEWS[0], key="view", label_visibility="collapsed"
    )
    if view == "Model card":
        show_model_card(get_classifier(directory, name)[0])
    elif view == "How it works":
        show_how_it_works(get_classifier(directory, name)[0])
    else:
        classify_tab(directory, name)


if __name__ == "__main__":
    main()
