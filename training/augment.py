"""Data augmentation on uint8 NHWC batches (numpy + Pillow), reproducible from a seed.

Every random function takes an ``np.random.Generator`` and draws all its numbers from it, in
a fixed order, so the same generator state gives the same batch. Geometry (crop, rotation)
uses Pillow's C resampling image by image (about 30 microseconds for a 64x64 image); colour
jitter is one per-image 3x3 matrix applied to the whole batch at once.

``Augmenter(config)(batch, rng)`` composes them; its config is a plain dict saved in the model
card.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from PIL import Image

from models.preprocess import LUMA

# Bilinear is enough here: a crop is at most a few times larger than the output, and Pillow's
# resize filter widens its support when shrinking, so there is no aliasing.
_GEOMETRY_RESAMPLE = Image.Resampling.BILINEAR


def _check_batch(batch: np.ndarray) -> np.ndarray:
    batch = np.asarray(batch)
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected a uint8 (N, H, W, 3) batch, got {batch.dtype} {batch.shape}")
    return batch


def random_resized_crop(
    batch: np.ndarray,
    out_size: int,
    *,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.35, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """Crop a random region of each image and resize it to ``out_size x out_size``.

    As torchvision's ``RandomResizedCrop``: the region covers a fraction of the image area
    drawn uniformly from ``scale``, with an aspect ratio (w / h) drawn log-uniformly from
    ``ratio``; up to ten draws are tried per image, then the whole image is used.

    batch: ``uint8 (N, H, W, 3)``. Returns ``uint8 (N, out_size, out_size, 3)``.
    """
    batch = _check_batch(batch)
    n, height, width, _ = batch.shape
    attempts = 10
    area = height * width * rng.uniform(scale[0], scale[1], (n, attempts))
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), (n, attempts)))
    w = np.rint(np.sqrt(area * aspect)).astype(np.int64)
    h = np.rint(np.sqrt(area / aspect)).astype(np.int64)
    fits = (w >= 1) & (h >= 1) & (w <= width) & (h <= height)
    first = np.argmax(fits, axis=1)
    rows = np.arange(n)
    w, h = w[rows, first], h[rows, first]
    none_fit = ~fits.any(axis=1)
    w[none_fit], h[none_fit] = width, height
    top = (rng.random(n) * (height - h + 1)).astype(np.int64)
    left = (rng.random(n) * (width - w + 1)).astype(np.int64)

    out = np.empty((n, out_size, out_size, 3), np.uint8)
    for i in range(n):
        box = (int(left[i]), int(top[i]), int(left[i] + w[i]), int(top[i] + h[i]))
        img = Image.fromarray(batch[i])
        out[i] = np.asarray(img.resize((out_size, out_size), _GEOMETRY_RESAMPLE, box=box))
    return out


def hflip(batch: np.ndarray, *, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """Mirror each image left-right with probability ``p``. ``uint8 (N, H, W, 3)`` in and out."""
    batch = _check_batch(batch)
    flip = rng.random(len(batch)) < p
    out = batch.copy()
    out[flip] = batch[flip, :, ::-1]
    return out


def small_rotation(
    batch: np.ndarray,
    *,
    rng: np.random.Generator,
    max_deg: float = 15.0,
    p: float = 1.0,
) -> np.ndarray:
    """Rotate each image, with probability ``p``, by an angle uniform in ``[-max_deg, max_deg]``.

    The image is reflect-padded first, so the corners show mirrored content instead of black
    wedges (a model must not learn "black corners" as a feature). ``uint8 (N, H, W, 3)`` in
    and out.
    """
    batch = _check_batch(batch)
    n, height, width, _ = batch.shape
    angles = np.radians(rng.uniform(-max_deg, max_deg, n))
    rotate = rng.random(n) < p
    # Padding that keeps every output pixel inside the padded image at the largest angle.
    theta = math.radians(min(abs(max_deg), 45.0))
    reach = (math.cos(theta) + math.sin(theta) - 1) / 2
    pad = min(math.ceil(max(height, width) * reach) + 2, min(height, width) - 1)
    out = batch.copy()
    for i in np.flatnonzero(rotate):
        padded = Image.fromarray(np.pad(batch[i], ((pad, pad), (pad, pad), (0, 0)), "reflect"))
        # One affine resample straight into the output frame (cheaper than rotate + crop):
        # output point q maps to input R (q - centre) + centre + pad.
        cos, sin = math.cos(angles[i]), math.sin(angles[i])
        cx, cy = width / 2, height / 2
        coeffs = (
            cos,
            sin,
            cx + pad - cos * cx - sin * cy,
            -sin,
            cos,
            cy + pad + sin * cx - cos * cy,
        )
        turned = padded.transform(
            (width, height), Image.Transform.AFFINE, coeffs, _GEOMETRY_RESAMPLE
        )
        out[i] = np.asarray(turned)
    return out


def color_jitter(
    batch: np.ndarray,
    *,
    rng: np.random.Generator,
    brightness: float = 0.3,
    contrast: float = 0.3,
    saturation: float = 0.3,
    hue: float = 0.05,
) -> np.ndarray:
    """Random brightness, contrast, saturation and hue shift per image.

    Factors are drawn uniformly from ``[1 - x, 1 + x]`` (hue: a turn of ``[-hue, hue]`` of the
    colour wheel, as a rotation of RGB space about the gray axis, which keeps gray gray).
    All four are linear maps, so they are folded into one 3x3 matrix plus offset per image
    and applied in a single pass; values are clipped to 0..255 once, at the end.

    ``uint8 (N, H, W, 3)`` in and out.
    """
    batch = _check_batch(batch)
    n = len(batch)
    b = rng.uniform(1 - brightness, 1 + brightness, n)
    c = rng.uniform(1 - contrast, 1 + contrast, n)
    s = rng.uniform(1 - saturation, 1 + saturation, n)
    turn = rng.uniform(-hue, hue, n) * 2 * math.pi

    # Saturation: s * x + (1 - s) * luma(x), per pixel.
    luma = LUMA.astype(np.float64)
    sat = s[:, None, None] * np.eye(3) + (1 - s)[:, None, None] * luma[None, None, :]
    # Hue: Rodrigues rotation about k = (1, 1, 1) / sqrt(3).
    k = np.full(3, 1 / math.sqrt(3))
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    cos, sin = np.cos(turn)[:, None, None], np.sin(turn)[:, None, None]
    rot = cos * np.eye(3) + sin * cross + (1 - cos) * np.outer(k, k)
    # Contrast blends towards the image's mean luma after brightness; rot and sat both fix
    # the gray axis, so the whole map is x -> c*b*(rot @ sat) x + (1 - c) * b * mean_luma.
    matrix = (c * b)[:, None, None] * (rot @ sat)
    mean_luma = (batch.reshape(n, -1, 3) @ luma).mean(axis=1)
    offset = (1 - c) * b * mean_luma

    x = batch.reshape(n, -1, 3).astype(np.float32)
    y = x @ matrix.transpose(0, 2, 1).astype(np.float32) + offset[:, None, None].astype(np.float32)
    np.clip(y, 0, 255, out=y)
    return np.rint(y, out=y).astype(np.uint8).reshape(batch.shape)


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (all JSON-able); the defaults suit 64x64 food photos.

    out_size: side of the augmented images. scale, ratio: ``random_resized_crop``.
    hflip: flip probability. rotation: max degrees; rotation_p: probability of rotating.
    brightness, contrast, saturation, hue: ``color_jitter`` strengths (0 disables).
    """

    out_size: int = 64
    scale: tuple[float, float] = (0.35, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    rotation: float = 15.0
    rotation_p: float = 0.5
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.05

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))
        object.__setattr__(self, "ratio", tuple(float(v) for v in self.ratio))
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, not {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < low <= high, not {self.ratio}")
        for name in ("hflip", "rotation_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} is a probability, not {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], not {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], not {self.hue}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every setting."""
        d = asdict(self)
        d["scale"], d["ratio"] = list(self.scale), list(self.ratio)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AugmentConfig:
        """Inverse of ``to_dict``; missing keys take the defaults, unknown keys are an error."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown augmentation settings: {sorted(unknown)}")
        return cls(**dict(d))


class Augmenter:
    """Random resized crop -> small rotation -> horizontal flip -> colour jitter.

    ``Augmenter(config)(batch, rng)``: ``uint8 (N, S, S, 3)`` -> ``uint8 (N, out, out, 3)``.
    ``config`` is an ``AugmentConfig``, a dict of its fields, or None for the defaults.
    """

    def __init__(self, config: AugmentConfig | Mapping[str, Any] | None = None) -> None:
        if config is None:
            config = AugmentConfig()
        elif not isinstance(config, AugmentConfig):
            config = AugmentConfig.from_dict(config)
        self.config = config

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (for the model card)."""
        return self.config.to_dict()

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.config
        x = random_resized_crop(batch, c.out_size, rng=rng, scale=c.scale, ratio=c.ratio)
        if c.rotation > 0 and c.rotation_p > 0:
            x = small_rotation(x, rng=rng, max_deg=c.rotation, p=c.rotation_p)
        if c.hflip > 0:
            x = hflip(x, rng=rng, p=c.hflip)
        if c.brightness or c.contrast or c.saturation or c.hue:
            x = color_jitter(
                x,
                rng=rng,
                brightness=c.brightness,
                contrast=c.contrast,
                saturation=c.saturation,
                hue=c.hue,
            )
        return x

    def __repr__(self) -> str:
        return f"Augmenter({self.config!r})"
