"""A trained network plus its preprocessing: images in, "hotdog" / "not_hotdog" out.

A ``Classifier`` is read-only after construction: predicting and explaining build a fresh graph
per call and never write to the network (no gradients land on its parameters, BatchNorm stays in
eval mode), so one instance can serve many users and threads at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from micrograd import Tensor, no_grad
from micrograd import functional as F
from micrograd.nn import Module
from models.card import ModelCard
from models.preprocess import LUMA, ImageError, ImageSource, PreprocessConfig, decode, normalize

CLASS_NAMES = ("not_hotdog", "hotdog")
#: Input pixels per forward pass when scoring many images: a network's activations grow with
#: them, so 64 px images go 256 at a time and 224 px ones 20 at a time.
EVAL_PIXELS = 2**20
#: Grad-CAM value (hotdog-margin logits) shown as full heat: a region that clearly says hotdog.
GRADCAM_SCALE = 8.0
#: A verdict within this distance of the threshold is a guess, shown as "not sure".
NOT_SURE_MARGIN = 0.15
#: Photos smaller than this (shorter side, pixels) get a warning: too little to judge.
TINY_SIDE = 64
#: A model view whose pixels vary less than this (standard deviation, 0-255) is nearly blank.
UNIFORM_STD = 6.0
#: A model view whose channels differ by less than this on average (0-255) is black and white.
GRAY_CHROMA = 2.0


def forward_in_batches(
    model: Module,
    n: int,
    batch_size: int,
    inputs: Callable[[int, int], np.ndarray],
    dtype: Any = np.float32,
    done: Callable[[int], None] | None = None,
) -> np.ndarray:
    """``model`` on ``n`` rows without a graph, ``batch_size`` rows at a time: the one batched
    forward pass of scoring, evaluation and feature caching. ``inputs(start, stop)`` makes a
    chunk's ``float32`` input (called in order, so it may draw from a generator); the outputs
    are concatenated as ``dtype`` (``(0, 2)`` when ``n`` is 0); ``done(stop)`` after each."""
    out = []
    with no_grad():
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            out.append(model(Tensor(inputs(start, stop))).numpy().astype(dtype, copy=False))
            if done is not None:
                done(stop)
    return np.concatenate(out) if out else np.zeros((0, 2), dtype)


def eval_batch_size(size: int) -> int:
    """Images of ``size x size`` per scoring pass (``EVAL_PIXELS`` of input, 1 to 256)."""
    return max(1, min(256, EVAL_PIXELS // (size * size)))


@dataclass(frozen=True)
class Prediction:
    """One verdict. ``label`` is ``"hotdog"`` or ``"not_hotdog"``; ``p_hotdog`` in [0, 1];
    ``sure`` is False when ``p_hotdog`` lies within ``NOT_SURE_MARGIN`` of the threshold."""

    label: str
    p_hotdog: float
    sure: bool = True

    @property
    def is_hotdog(self) -> bool:
        return self.label == "hotdog"

    @property
    def confidence(self) -> float:
        """Probability of the predicted label."""
        return self.p_hotdog if self.is_hotdog else 1.0 - self.p_hotdog


@dataclass(frozen=True)
class Explanation:
    """Why the model said what it said about one image.

    image: ``(size, size, 3) uint8``, the image exactly as the model saw it (gray for a
        grayscale model).
    saliency: ``(size, size) float32`` in [0, 1]: where the evidence for the verdict is.
        ``method`` "smoothgrad": how much each pixel moves the hotdog score (mean absolute
        input gradient over a few noisy copies, lightly blurred, scaled to its own top).
        ``method`` "gradcam": Grad-CAM on the last feature maps, on a fixed scale: 1 means
        a region that alone would push the hotdog margin by ``GRADCAM_SCALE`` logits.
    prediction: the verdict for the image.
    """

    image: np.ndarray
    saliency: np.ndarray
    prediction: Prediction
    method: str = "smoothgrad"


@dataclass(frozen=True)
class Scored:
    """One run of photos through ``Classifier.score``.

    logits: ``float32 (n_read, 2)``, the network's logits (before the temperature) for the
        photos that decoded, in their order.
    errors: ``(position, message)`` for each photo that did not, position in the run.
    """

    logits: np.ndarray
    errors: tuple[tuple[int, str], ...] = ()


class Classifier:
    """``model``: logits ``(N, 2)`` from ``(N, C, size, size)``; ``preprocess``: how images are
    turned into that input; ``threshold``: ``p_hotdog`` at or above it means "hotdog";
    ``temperature``: the logits are divided by it before the softmax (fitted on held-out
    photos after training, so that "N% hotdog" is right about N% of the time; it never
    changes which side of 0.5 a photo falls on)."""

    def __init__(
        self,
        model: Module,
        preprocess: PreprocessConfig,
        name: str = "model",
        card: ModelCard | None = None,
        threshold: float = 0.5,
        temperature: float = 1.0,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), not {threshold}")
        if not 0.01 <= temperature <= 100.0:
            raise ValueError(f"temperature must be in [0.01, 100], not {temperature}")
        self.model = model.eval()
        self.preprocess = preprocess
        self.name = name
        self.card = card or ModelCard()
        self.threshold = threshold
        self.temperature = temperature

    # ------------------------------------------------------------------ arrays
    def p_hotdog_arrays(self, x: np.ndarray) -> np.ndarray:
        """``float32 (N, C, size, size)`` normalised input -> ``(N,)`` probability of hotdog."""
        with no_grad():
            return self.p_hotdog_logits(self.model(Tensor(x)))

    def p_hotdog_logits(self, logits: Tensor) -> np.ndarray:
        """The network's ``(N, 2)`` logits -> ``(N,)`` calibrated probability of hotdog
        (float64): ``softmax(logits / temperature)[:, 1]``."""
        with no_grad():
            p = F.softmax(logits.detach() / self.temperature, dim=1).numpy()[:, 1]
        return p.astype(np.float64)

    def uint8_batch(self, images: Sequence[ImageSource]) -> np.ndarray:
        """Decode and resize images -> ``uint8 (N, size, size, 3)`` (what the model sees)."""
        return np.stack([decode(im, self.preprocess.size) for im in images])

    def logits_uint8(self, batch: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """``uint8 (N, size, size, 3)`` -> the network's ``float32 (N, 2)`` logits (before the
        temperature), in chunks of ``batch_size`` images (default: ``eval_batch_size`` for
        this input size; memory, not results, depends on it)."""
        batch_size = batch_size or eval_batch_size(self.preprocess.size)
        return forward_in_batches(
            self.model, len(batch), batch_size, lambda a, b: normalize(batch[a:b], self.preprocess)
        )

    def score(self, sources: Sequence[ImageSource], batch_size: int | None = None) -> Scored:
        """Decode a run of photos and score those that decode, ``batch_size`` images per
        forward pass (see ``logits_uint8``): the unit of work of ``predict`` and ``evaluate``,
        in one process or on a cluster's workers. A result's last bits depend on which photos
        share its forward pass, so both paths cut a job into the same runs."""
        decoded, errors = [], []
        for i, source in enumerate(sources):
            try:
                decoded.append(decode(source, self.preprocess.size))
            except ImageError as exc:
                errors.append((i, str(exc)))
        if not decoded:
            return Scored(np.zeros((0, 2), np.float32), tuple(errors))
        return Scored(self.logits_uint8(np.stack(decoded), batch_size), tuple(errors))

    def p_hotdog_uint8(self, batch: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """``uint8 (N, size, size, 3)`` -> ``(N,)`` calibrated probability of hotdog."""
        return self.p_hotdog_logits(Tensor(self.logits_uint8(batch, batch_size)))

    def verdict(self, p_hotdog: float) -> Prediction:
        label = CLASS_NAMES[1] if p_hotdog >= self.threshold else CLASS_NAMES[0]
        sure = abs(p_hotdog - self.threshold) >= NOT_SURE_MARGIN
        return Prediction(label, float(p_hotdog), sure)

    # ------------------------------------------------------------------ images
    def predict(self, image: ImageSource) -> Prediction:
        """One image (path, bytes, file object or PIL image) -> ``Prediction``.

        Raises ``models.preprocess.ImageError`` if it is not a usable image.
        """
        return self.predict_many([image])[0]

    def predict_many(self, images: Sequence[ImageSource]) -> list[Prediction]:
        """Several images -> one ``Prediction`` each (all decoded first; any bad one raises)."""
        if not images:
            return []
        return [self.verdict(p) for p in self.p_hotdog_uint8(self.uint8_batch(images))]

    @property
    def explainer(self) -> str:
        """How ``explain`` explains: "gradcam" for networks with ``features`` and
        ``classify`` (the convolutional ones), else "smoothgrad"."""
        convolutional = hasattr(self.model, "features") and hasattr(self.model, "classify")
        return "gradcam" if convolutional else "smoothgrad"

    def explain(self, image: ImageSource, samples: int = 8, noise: float = 0.1) -> Explanation:
        """Where in one image the evidence for the verdict lies (see ``Explanation``).

        Convolutional networks (they have ``features`` and ``classify``) get Grad-CAM, one
        forward pass and a backward through the classifier only; others (the MLP) get
        SmoothGrad over ``samples`` noisy copies (noise std ``noise`` in normalised units).
        Computed on a graph of its own; the model's parameters are not touched.
        """
        rgb = self.uint8_batch([image])
        x = normalize(rgb, self.preprocess)
        if self.preprocess.grayscale:  # show what the model saw: its one luma channel
            rgb = np.repeat(np.rint(rgb @ LUMA).astype(np.uint8)[..., None], 3, axis=-1)
        if self.explainer == "gradcam":
            return self._gradcam(rgb, x)
        rng = np.random.default_rng(0)  # fixed: the same image always gets the same map
        noisy = x + rng.normal(0, noise, (samples, *x.shape[1:])).astype(np.float32)
        noisy[0] = x[0]
        inp = Tensor(noisy, requires_grad=True)
        logits = self.model(inp)
        (logits[:, 1] - logits[:, 0]).sum().backward(inputs=[inp])
        grad = np.abs(np.asarray(inp.grad)).mean(axis=0).max(axis=0)  # (size, size)
        # stride-2 convolutions leave a checkerboard in raw input gradients; a light blur shows
        # the regions that matter instead of single pixels
        grad = gaussian_blur(grad, sigma=self.preprocess.size / 64)
        top = float(np.percentile(grad, 99)) or 1.0
        saliency = np.clip(grad / top, 0.0, 1.0).astype(np.float32)
        p = float(self.p_hotdog_arrays(x)[0])
        return Explanation(image=rgb[0], saliency=saliency, prediction=self.verdict(p))

    def _gradcam(self, rgb: np.ndarray, x: np.ndarray) -> Explanation:
        """Grad-CAM (Selvaraju et al., 2017) on the last feature maps ``A (1, C, h, w)``:
        ``relu(sum_c alpha_c A_c)`` with ``alpha_c`` the mean gradient of the hotdog margin over
        ``A_c``. The classifier is a linear map of the pooled maps, so each cell's value is
        the margin the image would get if every cell looked like it: logits, a fixed scale."""
        with no_grad():
            maps = self.model.features(Tensor(x))
        leaf = Tensor(maps, requires_grad=True)
        logits = self.model.classify(leaf)
        (logits[:, 1] - logits[:, 0]).sum().backward(inputs=[leaf])
        h, w = maps.shape[2:]
        alpha = leaf.grad.mean(axis=(2, 3)) * (h * w)  # (1, C)
        cam = np.maximum(np.einsum("nc,nchw->hw", alpha, maps.numpy()), 0.0)
        size = self.preprocess.size
        big = Image.fromarray(cam.astype(np.float32)).resize((size, size), Image.BILINEAR)
        saliency = np.clip(np.asarray(big) / GRADCAM_SCALE, 0.0, 1.0).astype(np.float32)
        p = float(self.p_hotdog_logits(logits)[0])
        return Explanation(rgb[0], saliency, self.verdict(p), method="gradcam")

    def photo_warnings(self, image: Image.Image, explanation: Explanation) -> tuple[str, ...]:
        """What about the photo itself makes its verdict less trustworthy, in words a person
        can act on. ``image`` is ``load_image``'s result (its ``info["original_size"]`` is the
        photo's own size, before any reduced decode); ``explanation`` is ``explain``'s."""
        found = []
        width, height = image.info.get("original_size", image.size)
        if min(width, height) < TINY_SIDE:
            found.append(
                f"This photo is only {width}×{height} pixels: too small to judge reliably. "
                "A bigger photo gives a better answer."
            )
        seen = explanation.image.astype(np.int16)
        if float(np.std(seen)) < UNIFORM_STD:
            found.append("This photo is nearly blank: there is little in it to judge.")
        elif not self.preprocess.grayscale and float(np.abs(np.diff(seen, axis=-1)).mean()) < (
            GRAY_CHROMA
        ):
            found.append(
                "This photo is black and white. This model judges colour too (a hotdog's reds "
                "and browns), so it is less sure without it: a colour photo gives a better "
                "answer."
            )
        return tuple(found)

    def __repr__(self) -> str:
        return f"Classifier({self.name!r}, input={self.preprocess.size}px)"


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """``(H, W)`` -> ``(H, W)``: a separable Gaussian blur (edges reflected, kernel cut at
    3 sigma), so serving does not import scikit-image's half-second of filters for it."""
    r = max(1, round(3 * sigma))
    taps = np.exp(-(np.arange(-r, r + 1) ** 2) / (2 * sigma**2))
    taps /= taps.sum()
    h, w = image.shape
    padded = np.pad(image.astype(np.float64), r, mode="reflect")
    rows = sum(t * padded[:, i : i + w] for i, t in enumerate(taps))
    return sum(t * rows[i : i + h] for i, t in enumerate(taps))


def from_file(state: dict[str, np.ndarray], config: dict[str, Any], **kwargs: Any) -> Classifier:
    """Rebuild a ``Classifier`` from ``models.io.load_model_file``'s ``(state, config)``."""
    from models.architectures import build

    architecture = config["architecture"]
    if not isinstance(architecture, dict):
        raise TypeError(f"the architecture is a {type(architecture).__name__}, not an object")
    classes = architecture.get("num_classes", 2)
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        # class 1 is "hotdog"; an imported ImageNet network (1,000 classes) loads too
        raise ValueError(f"a classifier has at least 2 classes, not {classes!r}")
    model = build(architecture)
    model.load_state_dict(state)
    return Classifier(
        model,
        PreprocessConfig.from_dict(config["preprocess"]),
        threshold=float(config.get("threshold", 0.5)),
        temperature=float(config.get("temperature", 1.0)),
        **kwargs,
    )
