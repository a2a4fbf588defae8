"""Synthetic cartoon drawings of hotdogs and of other things, as a training source.

Photos teach a network what a hotdog looks like in the world; they teach it nothing about
flat illustrations (a clip-art hotdog reads to ImageNet features as "web site" or "envelope").
``python -m training draw --dest data/drawings`` writes a small folder of drawings in the
usual layout, ``hot_dog/`` and ``not_hot_dog/``, to train on beside the photos.

Every drawing is a random scene: a background (flat, gradient, tablecloth check, stripes or
dots), sometimes a plate, and one to three objects drawn with random colours, sizes, outlines,
positions and turns. What makes a hotdog is a sausage lying in a split bun; the negatives
include its look-alikes, so the network can't learn "a drawing of food means hotdog": an empty
bun, a bare sausage, a sub sandwich, a burger, pizza, a doughnut, a banana, fried eggs, an ice
cream, a cupcake and plain shapes. Deterministic for a seed.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from models.io import atomic_write

Rng = np.random.Generator
Box = tuple[float, float, float, float]
#: Drawn at this many times the output size, then shrunk: antialiased edges.
SUPERSAMPLE = 2


def _colour(rng: Rng, hue: float, spread: float = 0.03, sat=(0.5, 0.9), val=(0.6, 0.95)):
    """An RGB tuple near ``hue`` (0..1) with random saturation and value."""
    h = (hue + rng.uniform(-spread, spread)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, rng.uniform(*sat), rng.uniform(*val))
    return (round(r * 255), round(g * 255), round(b * 255))


def _darker(c: tuple[int, int, int], f: float = 0.65) -> tuple[int, int, int]:
    return (round(c[0] * f), round(c[1] * f), round(c[2] * f))


def _outline(rng: Rng, fill: tuple[int, int, int]) -> tuple[tuple[int, int, int] | None, int]:
    """Cartoon style: a black or darker outline, or none."""
    style = rng.integers(3)
    colour = None if style == 0 else (30, 25, 25) if style == 1 else _darker(fill)
    return colour, int(rng.integers(2, 6))


def _rounded(d: ImageDraw.ImageDraw, rng: Rng, box: Box, radius: float, fill) -> None:
    outline, width = _outline(rng, fill)
    d.rounded_rectangle(box, radius=max(1, radius), fill=fill, outline=outline, width=width)


def _squiggle(d: ImageDraw.ImageDraw, rng: Rng, x0: float, x1: float, y: float, amp: float):
    """A condiment line along ``x0..x1`` at height ``y``: zigzag, wave or straight."""
    colour = [(240, 196, 30), (200, 30, 30), (70, 150, 40)][rng.integers(3)]
    n, shape = int(rng.integers(6, 18)), rng.integers(3)
    pts = []
    for i in range(n + 1):
        x = x0 + (x1 - x0) * i / n
        off = (amp if i % 2 else -amp) if shape == 0 else amp * math.sin(i * 1.3) * (shape == 1)
        pts.append((x, y + off))
    d.line(pts, fill=colour, width=max(2, int(amp * rng.uniform(0.5, 0.9))), joint="curve")


# ------------------------------------------------------------------------------ objects
# Each draws into a box (x0, y0, x1, y1) of a wide object lying horizontally.


def _bun_back(d, rng, box: Box, bun) -> None:
    x0, y0, x1, y1 = box
    _rounded(d, rng, (x0, y0, x1, y0 + (y1 - y0) * 0.6), (y1 - y0) * 0.3, _darker(bun, 0.85))


def _bun_front(d, rng, box: Box, bun) -> None:
    x0, y0, x1, y1 = box
    _rounded(d, rng, (x0, y0 + (y1 - y0) * 0.45, x1, y1), (y1 - y0) * 0.3, bun)


def _sausage(d, rng, box: Box, over: float) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    colour = _colour(rng, 0.03, 0.03, (0.55, 0.85), (0.45, 0.8))
    _rounded(d, rng, (x0 - w * over, y0 + h * 0.22, x1 + w * over, y0 + h * 0.58), h * 0.18, colour)


def hotdog(d, rng, box: Box) -> None:
    bun = _colour(rng, 0.09, 0.02, (0.4, 0.7), (0.75, 0.95))
    _bun_back(d, rng, box, bun)
    _sausage(d, rng, box, rng.uniform(-0.05, 0.12))
    _bun_front(d, rng, box, bun)
    if rng.uniform() < 0.85:
        x0, y0, x1, y1 = box
        _squiggle(d, rng, x0 + (x1 - x0) * 0.1, x1 - (x1 - x0) * 0.1, y0 + (y1 - y0) * 0.38,
                  (y1 - y0) * 0.07)  # fmt: skip


def empty_bun(d, rng, box: Box) -> None:
    bun = _colour(rng, 0.09, 0.02, (0.4, 0.7), (0.75, 0.95))
    _bun_back(d, rng, box, bun)
    _bun_front(d, rng, box, bun)


def bare_sausage(d, rng, box: Box) -> None:
    x0, y0, x1, y1 = box
    _sausage(d, rng, (x0, y0 + (y1 - y0) * 0.2, x1, y1), -0.05)


def sub_sandwich(d, rng, box: Box) -> None:
    x0, y0, x1, y1 = box
    h = y1 - y0
    bread = _colour(rng, 0.1, 0.02, (0.35, 0.6), (0.8, 0.95))
    _rounded(d, rng, (x0, y0 + h * 0.55, x1, y1), h * 0.2, bread)
    for i, hue in enumerate(rng.permutation([0.3, 0.0, 0.14, 0.95])[: rng.integers(2, 5)]):
        top = y0 + h * (0.48 - 0.08 * i)
        _rounded(d, rng, (x0 + 4, top, x1 - 4, top + h * 0.12), h * 0.05, _colour(rng, hue))
    _rounded(d, rng, (x0, y0, x1, y0 + h * (0.5 - 0.08 * 3)), h * 0.2, bread)


def burger(d, rng, box: Box) -> None:
    x0, y0, x1, y1 = box
    cx, w = (x0 + x1) / 2, (x1 - x0) * 0.35
    y0 = y1 - 2.2 * w  # a burger is about as tall as it is wide
    bun = _colour(rng, 0.08, 0.02)
    d.pieslice((cx - w, y0, cx + w, y0 + 1.2 * w), 180, 360, fill=bun, outline=_darker(bun))
    layers = [(0.3, 0.12), (0.13, 0.1), (0.05, 0.18), (0.0, 0.08)]
    top = y0 + 0.6 * w
    for hue, frac in layers[: rng.integers(2, 5)]:
        _rounded(d, rng, (cx - w * 1.05, top, cx + w * 1.05, top + w * frac * 2), w * 0.08,
                 _colour(rng, hue))  # fmt: skip
        top += w * frac * 2
    _rounded(d, rng, (cx - w, top, cx + w, top + w * 0.45), w * 0.2, bun)


def pizza(d, rng, box: Box) -> None:
    x0, y0, x1, _ = box
    cx, r = (x0 + x1) / 2, (x1 - x0) * 0.4
    tri = [(cx - r, y0), (cx + r, y0), (cx, y0 + 1.6 * r)]
    d.polygon(tri, fill=_colour(rng, 0.13, 0.02, (0.6, 0.9)), outline=(30, 25, 25))
    _rounded(d, rng, (cx - r * 1.05, y0 - r * 0.15, cx + r * 1.05, y0 + r * 0.12), r * 0.1,
             _colour(rng, 0.08))  # fmt: skip
    for _ in range(rng.integers(2, 6)):
        px, py = cx + rng.uniform(-0.4, 0.4) * r, y0 + rng.uniform(0.25, 0.9) * r
        d.ellipse((px - r * 0.12, py - r * 0.12, px + r * 0.12, py + r * 0.12),
                  fill=_colour(rng, 0.99))  # fmt: skip


def doughnut(d, rng, box: Box) -> None:
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * 0.3
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_colour(rng, 0.08), outline=(30, 25, 25))
    d.ellipse((cx - r * 0.85, cy - r * 0.85, cx + r * 0.85, cy + r * 0.85),
              fill=_colour(rng, rng.uniform(), 0.5))  # fmt: skip
    d.ellipse((cx - r * 0.35, cy - r * 0.35, cx + r * 0.35, cy + r * 0.35), fill=(0, 0, 0, 0))


def banana(d, rng, box: Box) -> None:
    x0, y0, x1, y1 = box
    yellow = _colour(rng, 0.14, 0.02, (0.7, 0.95), (0.85, 1.0))
    width = int((y1 - y0) * rng.uniform(0.25, 0.4))
    d.arc((x0, y0 - (y1 - y0), x1, y1), 20, 160, fill=yellow, width=max(2, width))


def fried_eggs(d, rng, box: Box) -> None:
    x0, y0, x1, y1 = box
    for _ in range(rng.integers(1, 3)):
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        r = (x1 - x0) * rng.uniform(0.15, 0.25)
        d.ellipse((cx - r, cy - r * 0.8, cx + r, cy + r * 0.8), fill=(250, 250, 245),
                  outline=(200, 200, 200))  # fmt: skip
        d.ellipse((cx - r * 0.35, cy - r * 0.35, cx + r * 0.35, cy + r * 0.35),
                  fill=_colour(rng, 0.11, 0.02, (0.8, 1.0), (0.9, 1.0)))  # fmt: skip


def ice_cream(d, rng, box: Box) -> None:
    x0, y0, x1, _ = box
    cx, r = (x0 + x1) / 2, (x1 - x0) * 0.16
    d.polygon([(cx - r, y0 + r), (cx + r, y0 + r), (cx, y0 + 4 * r)], fill=_colour(rng, 0.09))
    for i in range(rng.integers(1, 3)):
        cy = y0 + r - i * 1.3 * r
        d.ellipse((cx - r * 1.1, cy - r, cx + r * 1.1, cy + r), fill=_colour(rng, rng.uniform()))


def cupcake(d, rng, box: Box) -> None:
    x0, y0, x1, _ = box
    cx, r = (x0 + x1) / 2, (x1 - x0) * 0.2
    d.polygon([(cx - r, y0 + r), (cx + r, y0 + r), (cx + r * 0.7, y0 + 2.5 * r),
               (cx - r * 0.7, y0 + 2.5 * r)], fill=_colour(rng, rng.uniform()))  # fmt: skip
    d.ellipse((cx - r * 1.2, y0 - r * 0.3, cx + r * 1.2, y0 + r * 1.4),
              fill=_colour(rng, rng.uniform(), 0.5, (0.2, 0.6), (0.9, 1.0)))  # fmt: skip


def shapes(d, rng, box: Box) -> None:
    x0, y0, x1, y1 = box
    for _ in range(rng.integers(1, 4)):
        a, b = sorted(rng.uniform(x0, x1, 2)), sorted(rng.uniform(y0, y1, 2))
        fill = _colour(rng, rng.uniform(), 0.5)
        if rng.uniform() < 0.5:
            d.ellipse((a[0], b[0], a[1] + 4, b[1] + 4), fill=fill, outline=_outline(rng, fill)[0])
        else:
            _rounded(d, rng, (a[0], b[0], a[1] + 4, b[1] + 4), rng.uniform(0, 20), fill)


HOTDOGS: list[Callable] = [hotdog]
OTHERS: list[Callable] = [empty_bun, bare_sausage, sub_sandwich, burger, pizza, doughnut,
                          banana, fried_eggs, ice_cream, cupcake, shapes]  # fmt: skip


# ------------------------------------------------------------------------------ scenes


def _background(rng: Rng, w: int, h: int) -> Image.Image:
    base = _colour(rng, rng.uniform(), 0.5, (0.0, 0.6), (0.7, 1.0))
    img = Image.new("RGB", (w, h), base)
    d = ImageDraw.Draw(img)
    kind, cell = rng.integers(5), int(rng.uniform(0.06, 0.2) * w)
    other = _colour(rng, rng.uniform(), 0.5, (0.3, 0.8), (0.6, 0.95))
    if kind == 1:  # tablecloth check
        for y in range(0, h, cell):
            for x in range(0, w, cell):
                if (x // cell + y // cell) % 2 == 0:
                    d.rectangle((x, y, x + cell - 1, y + cell - 1), fill=other)
    elif kind == 2:  # stripes
        for x in range(0, w + h, 2 * cell):
            d.polygon([(x, 0), (x + cell, 0), (x + cell - h, h), (x - h, h)], fill=other)
    elif kind == 3:  # dots
        for y in range(cell // 2, h, cell):
            for x in range(cell // 2, w, cell):
                d.ellipse((x - cell / 5, y - cell / 5, x + cell / 5, y + cell / 5), fill=other)
    elif kind == 4:  # vertical gradient
        top, bottom = np.array(base, float), np.array(other, float)
        t = np.linspace(0, 1, h)[:, None, None]
        img = Image.fromarray(((1 - t) * top + t * bottom).repeat(w, 1).astype(np.uint8))
    return img


def draw_scene(rng: Rng, hotdog_scene: bool, width: int = 320, height: int = 256) -> Image.Image:
    """One drawing, ``(width, height)`` RGB: a hotdog scene (one to three hotdogs, sometimes
    beside something else) or a scene of other things only."""
    w, h = width * SUPERSAMPLE, height * SUPERSAMPLE
    img = _background(rng, w, h)
    if rng.uniform() < 0.6:  # a plate
        plate = _colour(rng, rng.uniform(), 0.5, (0.0, 0.15), (0.9, 1.0))
        mx, my = rng.uniform(0.02, 0.12) * w, rng.uniform(0.05, 0.2) * h
        ImageDraw.Draw(img).ellipse((mx, my, w - mx, h - my), fill=plate, outline=_darker(plate))
    n = int(rng.integers(1, 4)) if rng.uniform() < 0.3 else 1
    drawers = [HOTDOGS[0]] if hotdog_scene else []
    while len(drawers) < n:
        drawers.append(HOTDOGS[0] if hotdog_scene and rng.uniform() < 0.5 else
                       OTHERS[rng.integers(len(OTHERS))])  # fmt: skip
    for i, draw_object in enumerate(drawers):
        layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        ow = w * rng.uniform(0.45, 0.85) / math.sqrt(n)
        oh = ow * rng.uniform(0.3, 0.5)
        cx = w * ((i + 0.5) / n + rng.uniform(-0.08, 0.08))
        cy = h * rng.uniform(0.35, 0.65)
        box = (cx - ow / 2, cy - oh / 2, cx + ow / 2, cy + oh / 2)
        draw_object(ImageDraw.Draw(layer), rng, box)
        layer = layer.rotate(rng.uniform(-35, 35), Image.Resampling.BICUBIC, center=(cx, cy))
        img.paste(layer, (0, 0), layer)
    if rng.uniform() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return img.resize((width, height), Image.Resampling.LANCZOS)


def write_drawings(dest: str | Path, n_per_class: int = 150, seed: int = 0) -> Path:
    """Write ``n_per_class`` drawings into ``dest/hot_dog`` and ``dest/not_hot_dog`` (PNG,
    each written atomically; the same files for the same seed). Returns ``dest``."""
    dest = Path(dest)
    for label, is_hotdog in (("hot_dog", True), ("not_hot_dog", False)):
        (dest / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            rng = np.random.default_rng([seed, int(is_hotdog), i])
            w, h = int(rng.integers(240, 400)), int(rng.integers(200, 320))
            img = draw_scene(rng, is_hotdog, w, h)
            with atomic_write(dest / label / f"drawing_{i:04d}.png") as f:
                img.save(f, "PNG", optimize=False)
    return dest
