"""training.augment: shapes, reproducibility, and what each transform does to pixels."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image

from training.augment import (
    AugmentConfig,
    Augmenter,
    color_jitter,
    hflip,
    random_resized_crop,
    small_rotation,
)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture
def batch() -> np.ndarray:
    return rng(123).integers(0, 256, (16, 40, 40, 3), dtype=np.uint8)


def x_ramp(n: int, side: int) -> np.ndarray:
    """Images whose red channel is the column index: shows where pixels came from."""
    ramp = np.zeros((n, side, side, 3), np.uint8)
    ramp[..., 0] = np.arange(side, dtype=np.uint8)[None, None, :]
    return ramp


TRANSFORMS = {
    "crop": lambda b, g: random_resized_crop(b, 24, rng=g),
    "flip": lambda b, g: hflip(b, rng=g),
    "rotation": lambda b, g: small_rotation(b, rng=g),
    "jitter": lambda b, g: color_jitter(b, rng=g),
    "augmenter": lambda b, g: Augmenter({"out_size": 24})(b, g),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_shape_dtype_and_reproducibility(name: str, batch: np.ndarray) -> None:
    f = TRANSFORMS[name]
    before = batch.copy()
    out = f(batch, rng(7))
    side = 24 if name in ("crop", "augmenter") else 40
    assert out.shape == (16, side, side, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(batch, before)  # input untouched
    np.testing.assert_array_equal(out, f(batch, rng(7)))
    assert not np.array_equal(out, f(batch, rng(8)))


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_rejects_non_uint8_batches(name: str, batch: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8"):
        TRANSFORMS[name](batch.astype(np.float32), rng())
    with pytest.raises(ValueError, match="uint8"):
        TRANSFORMS[name](batch[0], rng())


def test_hflip_mirrors_exactly(batch: np.ndarray) -> None:
    np.testing.assert_array_equal(hflip(batch, rng=rng(), p=1.0), batch[:, :, ::-1])
    np.testing.assert_array_equal(hflip(batch, rng=rng(), p=0.0), batch)
    out = hflip(batch, rng=rng(3), p=0.5)
    flipped = [np.array_equal(o, b[:, ::-1]) for o, b in zip(out, batch, strict=True)]
    kept = [np.array_equal(o, b) for o, b in zip(out, batch, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))
    assert 0 < sum(flipped) < len(batch)


def test_crop_of_the_whole_image_is_a_resize(batch: np.ndarray) -> None:
    whole = random_resized_crop(batch, 40, rng=rng(), scale=(1, 1), ratio=(1, 1))
    np.testing.assert_array_equal(whole, batch)
    small = random_resized_crop(batch, 20, rng=rng(), scale=(1, 1), ratio=(1, 1))
    expected = [
        np.asarray(Image.fromarray(b).resize((20, 20), Image.Resampling.BILINEAR)) for b in batch
    ]
    np.testing.assert_array_equal(small, np.stack(expected))


def test_crop_takes_regions_of_the_requested_size() -> None:
    ramp = x_ramp(64, 80)
    out = random_resized_crop(ramp, 32, rng=rng(), scale=(0.25, 0.25), ratio=(1, 1))
    span = out[..., 0].max(axis=(1, 2)).astype(int) - out[..., 0].min(axis=(1, 2))
    assert (np.abs(span - 39) <= 2).all()  # a 40-pixel-wide window of the 80-pixel ramp
    starts = out[:, 0, 0, 0]
    assert starts.min() < 10 and starts.max() > 30  # windows land all over the image


def test_crop_falls_back_to_whole_image_when_nothing_fits() -> None:
    wide = rng().integers(0, 256, (3, 10, 40, 3), dtype=np.uint8)
    out = random_resized_crop(wide, 8, rng=rng(), scale=(1, 1), ratio=(1, 1))
    expected = [
        np.asarray(Image.fromarray(b).resize((8, 8), Image.Resampling.BILINEAR)) for b in wide
    ]
    np.testing.assert_array_equal(out, np.stack(expected))


def test_rotation_properties(batch: np.ndarray) -> None:
    np.testing.assert_array_equal(small_rotation(batch, rng=rng(), max_deg=0.0), batch)
    np.testing.assert_array_equal(small_rotation(batch, rng=rng(), p=0.0), batch)
    flat = np.full((4, 32, 32, 3), 77, np.uint8)
    # Reflect padding: no black corners, a flat image stays flat.
    np.testing.assert_array_equal(small_rotation(flat, rng=rng(), max_deg=30.0), flat)
    turned = small_rotation(batch, rng=rng(), max_deg=15.0)
    assert all(not np.array_equal(t, b) for t, b in zip(turned, batch, strict=True))
    centre = (slice(18, 22), slice(18, 22))
    smooth = np.repeat(np.repeat(batch[:, ::8, ::8], 8, axis=1), 8, axis=2)
    rotated = small_rotation(smooth, rng=rng(1), max_deg=5.0)
    diff = np.abs(rotated[:, centre[0], centre[1]].astype(int) - smooth[:, centre[0], centre[1]])
    assert diff.mean() < 40  # the centre barely moves for small angles


def test_color_jitter_properties(batch: np.ndarray) -> None:
    off = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0}
    np.testing.assert_array_equal(color_jitter(batch, rng=rng(), **off), batch)
    gray = np.repeat(batch[..., :1], 3, axis=-1)
    hue_only = color_jitter(gray, rng=rng(), **{**off, "hue": 0.5})
    assert np.abs(hue_only.astype(int) - gray).max() <= 1  # hue turns keep gray gray
    darker = color_jitter(batch, rng=rng(), **{**off, "brightness": 0.5})
    ratio = darker.reshape(16, -1).mean(1) / batch.reshape(16, -1).mean(1)
    assert ratio.min() < 0.95 or ratio.max() > 1.05
    sat_only = color_jitter(batch, rng=rng(), **{**off, "saturation": 1.0})
    luma = np.array([0.299, 0.587, 0.114])
    # Saturation keeps each pixel's brightness (up to clipping and rounding).
    assert np.median(np.abs(sat_only @ luma - batch @ luma)) < 1.0


def test_config_round_trip_and_validation() -> None:
    cfg = AugmentConfig(out_size=32, scale=(0.5, 1.0), hue=0.0)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert AugmentConfig.from_dict(d) == cfg
    assert Augmenter(d).config == cfg and Augmenter(cfg).to_dict() == cfg.to_dict()
    assert Augmenter().config == AugmentConfig()
    for bad in ({"scale": (0.0, 1.0)}, {"ratio": (2.0, 1.0)}, {"hflip": 1.5}, {"hue": 0.7}):
        with pytest.raises(ValueError):
            AugmentConfig.from_dict(bad)
    with pytest.raises(ValueError, match="unknown"):
        Augmenter({"mixup": 0.2})


def test_augmenter_speed() -> None:
    cached = rng().integers(0, 256, (64, 80, 80, 3), dtype=np.uint8)
    augment = Augmenter()
    augment(cached, rng())
    start = time.perf_counter()
    out = augment(cached, rng(1))
    assert out.shape == (64, 64, 64, 3)
    assert time.perf_counter() - start < 0.2  # ~10 ms on a laptop core; slack for busy CI
