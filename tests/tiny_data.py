"""Tiny two-class image sets for training tests: reddish "hotdogs", bluish "others"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from training.data import Dataset

HOTDOG_RGB = (200, 80, 50)
OTHER_RGB = (50, 90, 200)


def colour_images(labels: np.ndarray, side: int, seed: int) -> np.ndarray:
    """``uint8 (N, side, side, 3)``: each image its class colour plus strong pixel noise."""
    rng = np.random.default_rng(seed)
    base = np.where(np.asarray(labels)[:, None, None, None] == 1, HOTDOG_RGB, OTHER_RGB)
    noise = rng.normal(0, 45, (len(labels), side, side, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def make_dataset(n: int, size: int = 16, cache_size: int = 20, seed: int = 0) -> Dataset:
    """An in-memory ``Dataset`` of ``n`` images, alternating labels 1, 0, 1, ..."""
    labels = (np.arange(n) % 2 == 0).astype(np.int64)
    images = colour_images(labels, cache_size, seed)
    offset = (cache_size - size) // 2
    eval_images = images[:, offset : offset + size, offset : offset + size].copy()
    return Dataset(
        images=images,
        eval_images=eval_images,
        labels=labels,
        sources=np.array(["tiny"] * n),
        paths=np.array([f"tiny/{seed}/{i}.png" for i in range(n)]),
    )


def write_image_folder(
    root: Path, n_per_class: int = 20, side: int = 24, seed: int = 0, fmt: str = "PNG"
) -> Path:
    """``root/hot_dog/*.png`` and ``root/nothotdog/*.png`` (JPEG with ``fmt="JPEG"``)."""
    for label, folder in ((1, "hot_dog"), (0, "nothotdog")):
        images = colour_images(np.full(n_per_class, label), side, seed + label)
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i, arr in enumerate(images):
            Image.fromarray(arr).save(root / folder / f"{folder}_{i:03d}.{fmt.lower()}", fmt)
    return root
