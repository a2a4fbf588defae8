"""Write the app's example images into ``examples/images/``.

Four photographs come from scikit-image's bundled sample data (all public domain or CC0, see
``examples/images/README.md``), shrunk to 320 pixels on the shorter side. The hotdog is drawn
here with Pillow (bun, sausage, mustard zigzag), so no photograph with unclear rights is needed.

Run it with ``python examples/make_example_images.py``; the output is deterministic.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

OUT_DIR = Path(__file__).resolve().parent / "images"
SHORT_SIDE = 320
JPEG_QUALITY = 82

#: file name -> ``skimage.data`` function name (the photographs).
PHOTOS = {
    "coffee.jpg": "coffee",
    "cat.jpg": "chelsea",
    "astronaut.jpg": "astronaut",
    "rocket.jpg": "rocket",
}


def shrink(img: Image.Image, short_side: int = SHORT_SIDE) -> Image.Image:
    """Resize so the shorter side is ``short_side`` (never enlarges)."""
    scale = short_side / min(img.size)
    if scale >= 1:
        return img
    size = (round(img.width * scale), round(img.height * scale))
    return img.resize(size, Image.Resampling.LANCZOS)


def draw_hotdog(width: int = 400, height: int = 320, scale: int = 3) -> Image.Image:
    """A flat illustration of a hotdog on a checked tablecloth, ``(width, height)`` RGB.

    Drawn at ``scale`` times the size and shrunk, which antialiases the edges.
    """
    w, h = width * scale, height * scale
    img = Image.new("RGB", (w, h), (236, 226, 208))
    draw = ImageDraw.Draw(img)

    # Red and white gingham tablecloth.
    cell = 40 * scale
    for y in range(0, h, cell):
        for x in range(0, w, cell):
            if (x // cell + y // cell) % 2 == 0:
                draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(222, 96, 96))

    # A white plate with a soft shadow.
    cx, cy = w // 2, h // 2 + 14 * scale
    shadow = Image.new("L", (w, h), 0)
    ImageDraw.Draw(shadow).ellipse(
        [cx - 185 * scale, cy - 118 * scale, cx + 195 * scale, cy + 138 * scale], fill=110
    )
    shadow = shadow.filter(ImageFilter.GaussianBlur(12 * scale))
    img.paste((60, 40, 40), (0, 0), shadow)
    draw = ImageDraw.Draw(img)
    draw.ellipse(
        [cx - 190 * scale, cy - 125 * scale, cx + 190 * scale, cy + 125 * scale],
        fill=(250, 250, 247),
        outline=(214, 214, 208),
        width=3 * scale,
    )

    # The back of the bun, the sausage lying in it, then the front of the bun over both.
    bun, bun_dark, crust = (230, 172, 96), (180, 114, 52), (204, 138, 66)
    half = 150 * scale
    draw.rounded_rectangle(
        [cx - half, cy - 78 * scale, cx + half, cy + 10 * scale],
        radius=44 * scale,
        fill=crust,
        outline=bun_dark,
        width=4 * scale,
    )
    sausage, sausage_dark = (176, 62, 40), (128, 38, 24)
    s_half = 180 * scale
    draw.rounded_rectangle(
        [cx - s_half, cy - 50 * scale, cx + s_half, cy + 6 * scale],
        radius=28 * scale,
        fill=sausage_dark,
    )
    draw.rounded_rectangle(
        [cx - s_half + 4 * scale, cy - 52 * scale, cx + s_half - 4 * scale, cy - 4 * scale],
        radius=24 * scale,
        fill=sausage,
    )
    draw.line(
        [cx - s_half + 34 * scale, cy - 40 * scale, cx + s_half - 34 * scale, cy - 40 * scale],
        fill=(218, 116, 88),
        width=5 * scale,
    )
    draw.rounded_rectangle(
        [cx - half, cy - 16 * scale, cx + half, cy + 64 * scale],
        radius=40 * scale,
        fill=bun,
        outline=bun_dark,
        width=4 * scale,
    )

    # Mustard zigzag along the sausage.
    points = []
    for i in range(21):
        x = cx - 140 * scale + i * (280 * scale) / 20
        points.append((x, cy - 30 * scale + (11 * scale if i % 2 else -11 * scale)))
    draw.line(points, fill=(246, 200, 28), width=9 * scale, joint="curve")

    return img.resize((width, height), Image.Resampling.LANCZOS)


def photo(name: str) -> Image.Image:
    """One of scikit-image's sample photographs as an RGB PIL image."""
    import skimage.data

    return Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB")


def main() -> None:
    """Write every example image and print its size."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    images = {name: shrink(photo(func)) for name, func in PHOTOS.items()}
    images["hotdog.jpg"] = draw_hotdog()
    for name, img in images.items():
        path = OUT_DIR / name
        img.save(path, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
        kb = math.ceil(path.stat().st_size / 1024)
        print(f"{path.relative_to(OUT_DIR.parents[1])}  {img.width}x{img.height}  {kb} KB")


if __name__ == "__main__":
    main()
