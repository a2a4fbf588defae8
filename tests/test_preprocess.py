"""models.preprocess: every Pillow mode, hostile files, and training/serving parity."""

from __future__ import annotations

import io
import json
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import models.preprocess as pre
from models.preprocess import (
    MAX_PIXELS,
    ImageError,
    PreprocessConfig,
    decode,
    image_to_uint8,
    load_image,
    normalize,
    preprocess,
    preprocess_batch,
    resize_and_crop,
)

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def png_of_size(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG of any size that stays tiny (a decompression bomb)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(1)
    idat = b"".join(comp.compress(row * 1000) for _ in range(height // 1000))
    idat += comp.compress(row * (height % 1000)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def center_pixel(img: Image.Image) -> tuple[int, ...]:
    return img.getpixel((img.width // 2, img.height // 2))


# --------------------------------------------------------------------------- colour modes


MODE_CASES = {
    # mode: (image, expected RGB of every pixel, tolerance)
    "RGB": (lambda: Image.new("RGB", (8, 6), (10, 20, 30)), (10, 20, 30), 0),
    "RGBA opaque": (lambda: Image.new("RGBA", (8, 6), (10, 20, 30, 255)), (10, 20, 30), 0),
    "RGBA transparent": (lambda: Image.new("RGBA", (8, 6), (10, 20, 30, 0)), WHITE, 0),
    "RGBA half": (lambda: Image.new("RGBA", (8, 6), (0, 0, 0, 128)), (127, 127, 127), 1),
    "RGBa": (lambda: Image.new("RGBA", (8, 6), (0, 0, 0, 128)).convert("RGBa"), (127,) * 3, 1),
    "LA": (lambda: Image.new("LA", (8, 6), (0, 0)), WHITE, 0),
    "La": (lambda: Image.new("LA", (8, 6), (0, 128)).convert("La"), (127,) * 3, 1),
    "PA": (lambda: Image.new("RGBA", (8, 6), (0, 0, 255, 0)).convert("PA"), WHITE, 0),
    "L": (lambda: Image.new("L", (8, 6), 77), (77, 77, 77), 0),
    "1": (lambda: Image.new("1", (8, 6), 1), WHITE, 0),
    "P": (lambda: Image.new("RGB", (8, 6), (255, 0, 0)).convert("P"), RED, 0),
    "CMYK": (lambda: Image.new("CMYK", (8, 6), (0, 255, 255, 0)), RED, 0),
    "YCbCr": (lambda: Image.new("RGB", (8, 6), (200, 100, 50)).convert("YCbCr"), (200, 100, 50), 2),
    "LAB": (lambda: Image.new("RGB", (8, 6), (200, 100, 50)).convert("LAB"), (200, 100, 50), 2),
    "HSV": (lambda: Image.new("RGB", (8, 6), (200, 100, 50)).convert("HSV"), (200, 100, 50), 2),
    "I;16": (lambda: Image.new("I;16", (8, 6), 32896), (128, 128, 128), 0),
    "I;16B": (lambda: Image.new("I;16B", (8, 6), 65535), WHITE, 0),
    "I 8-bit range": (lambda: Image.new("I", (8, 6), 200), (200, 200, 200), 0),
    "I 16-bit range": (lambda: Image.new("I", (8, 6), 65535), WHITE, 0),
    "F unit range": (lambda: Image.new("F", (8, 6), 0.5), (128, 128, 128), 0),
    "F 8-bit range": (lambda: Image.new("F", (8, 6), 100.0), (100, 100, 100), 0),
}


@pytest.mark.parametrize("case", sorted(MODE_CASES))
def test_every_mode_becomes_rgb(case: str) -> None:
    make, expected, tol = MODE_CASES[case]
    src = make()
    out = load_image(src)
    assert out.mode == "RGB" and out.size == src.size
    arr = np.asarray(out, dtype=int)
    assert np.abs(arr - np.array(expected)).max() <= tol, (case, arr[0, 0])


def test_p_with_transparency_composites_on_white() -> None:
    img = Image.new("P", (4, 2), 0)
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.putpixel((0, 0), 1)
    data = encode(img, "PNG", transparency=0)  # index 0 (red) is transparent
    out = load_image(data)
    assert out.getpixel((0, 0)) == GREEN
    assert out.getpixel((3, 1)) == WHITE


def test_rgb_with_transparent_colour_key() -> None:
    img = Image.new("RGB", (4, 2), RED)
    img.putpixel((0, 0), BLUE)
    out = load_image(encode(img, "PNG", transparency=RED))
    assert out.getpixel((0, 0)) == BLUE and out.getpixel((1, 1)) == WHITE


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("RGB", "PNG"),
        ("RGBA", "PNG"),
        ("LA", "PNG"),
        ("L", "PNG"),
        ("1", "PNG"),
        ("P", "GIF"),
        ("I;16", "PNG"),
        ("CMYK", "JPEG"),
        ("CMYK", "TIFF"),
        ("L", "JPEG"),
        ("I", "TIFF"),
        ("F", "TIFF"),
        ("RGB", "BMP"),
        ("RGBA", "WEBP"),
    ],
)
def test_encoded_files_of_every_mode(mode: str, fmt: str) -> None:
    base = Image.new("RGB", (20, 10), (200, 120, 40))
    img = Image.new(mode, base.size, 1000) if mode in ("I;16", "I", "F") else base.convert(mode)
    out = load_image(encode(img, fmt))
    assert out.mode == "RGB" and out.size == (20, 10)


# ------------------------------------------------------------------- orientation, frames


def test_exif_orientation_6_is_made_upright() -> None:
    # Stored landscape, top half red and bottom half blue. Orientation 6 means "rotate 90
    # degrees clockwise to display": upright it is portrait with red on the right.
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(RED, (0, 0, 40, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = load_image(encode(stored, "JPEG", exif=exif.tobytes(), quality=95))
    assert out.size == (20, 40)
    right, left = np.array(out.getpixel((15, 20))), np.array(out.getpixel((4, 20)))
    assert np.abs(right - RED).max() < 40 and np.abs(left - BLUE).max() < 40


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_gives_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in (RED, BLUE, GREEN)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], lossless=True)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    out = load_image(data)
    assert np.abs(np.array(center_pixel(out)) - RED).max() <= 2


# -------------------------------------------------------------------------- bad inputs


def test_empty_inputs(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    for source in (empty, str(empty), b"", io.BytesIO(b"")):
        with pytest.raises(ImageError, match=r"^empty file$"):
            load_image(source)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="not a file"):
        load_image(tmp_path)


def test_text_renamed_jpg(tmp_path: Path) -> None:
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is not a photo\n")
    with pytest.raises(ImageError, match=r"^not an image \(or an unsupported format\)$"):
        preprocess(fake)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image(fmt: str) -> None:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = encode(noise, fmt)
    with pytest.raises(ImageError, match=r"^truncated or corrupt image$"):
        load_image(data[: len(data) // 2])


def test_unsupported_source_type() -> None:
    with pytest.raises(ImageError, match="cannot read an image from a int"):
        load_image(42)  # type: ignore[arg-type]


def test_image_error_is_value_error_with_one_line_message(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        load_image(b"\x89PNG\r\n\x1a\n garbage")
    assert isinstance(info.value, ImageError)
    assert "\n" not in str(info.value) and str(info.value)


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bombs")
    out = {}
    # 900 MP is past Pillow's own hard limit; 100 MP is past ours but only a warning to Pillow.
    for name, (w, h) in {"huge": (30000, 30000), "large": (10000, 10000)}.items():
        out[name] = root / f"{name}.png"
        out[name].write_bytes(png_of_size(w, h))
    return out


@pytest.mark.parametrize("name", ["huge", "large"])
def test_decompression_bomb_refused_from_header(bombs: dict[str, Path], name: str) -> None:
    assert bombs[name].stat().st_size < 1_000_000
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning leaks out either
        with pytest.raises(ImageError, match=r"^image is too large \(.*megapixels\)$") as info:
            preprocess(bombs[name])
    assert time.perf_counter() - start < 0.5
    if name == "large":
        assert "10000x10000 pixels" in str(info.value)
    assert f"{MAX_PIXELS / 1e6:.1f}" in str(info.value)


def test_one_pixel_image() -> None:
    x = preprocess(Image.new("RGB", (1, 1), (255, 0, 0)))
    assert x.shape == (3, 64, 64) and x.dtype == np.float32
    assert np.ptp(x.reshape(3, -1), axis=1).max() == 0  # uniform


def test_thin_strip_image() -> None:
    assert preprocess(Image.new("L", (1000, 1))).shape == (3, 64, 64)


# ------------------------------------------------------------------------- big photos


@pytest.fixture(scope="module")
def photo_12mp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    y, x = np.mgrid[0:3000, 0:4000]
    rgb = np.stack([x * 255 // 4000, y * 255 // 3000, (x + y) * 255 // 7000], -1)
    path = tmp_path_factory.mktemp("photos") / "big.jpg"
    Image.fromarray(rgb.astype(np.uint8)).save(path, quality=90)
    return path


def test_big_jpeg_decoded_small_via_draft(photo_12mp: Path) -> None:
    small = load_image(photo_12mp, draft_size=64)
    assert small.size == (500, 375)  # 1/8 scale inside the JPEG decoder, both sides >= 64
    assert load_image(photo_12mp, draft_size=400).size == (1000, 750)
    assert load_image(photo_12mp).size == (4000, 3000)
    preprocess(photo_12mp)  # warm up
    start = time.perf_counter()
    x = preprocess(photo_12mp)
    assert time.perf_counter() - start < 0.25
    assert x.shape == (3, 64, 64)


# ------------------------------------------------------------------- geometry and parity


def test_resize_and_crop_keeps_the_centre() -> None:
    img = Image.new("RGB", (200, 100), RED)
    img.paste(GREEN, (50, 0, 150, 100))  # the central square is green
    out = resize_and_crop(img, 32)
    assert out.size == (32, 32)
    arr = np.asarray(out, dtype=int)
    assert np.abs(arr[:, 2:-2] - GREEN).max() <= 2
    tall = resize_and_crop(img.rotate(90, expand=True), 32)
    assert np.abs(np.asarray(tall, dtype=int)[2:-2] - GREEN).max() <= 2


def test_image_to_uint8_shape_and_dtype() -> None:
    arr = image_to_uint8(Image.new("RGBA", (30, 50), (1, 2, 3, 255)), 16)
    assert arr.shape == (16, 16, 3) and arr.dtype == np.uint8
    assert (arr == (1, 2, 3)).all()


def _sources(photo: Path) -> list:
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (90, 70, 4), dtype=np.uint8)
    return [
        photo,
        encode(Image.fromarray(noise, "RGBA"), "PNG"),
        Image.fromarray(noise[..., :3]),
        io.BytesIO(encode(Image.fromarray(noise[..., :3]), "JPEG")),
    ]


@pytest.mark.parametrize("grayscale", [False, True])
def test_preprocess_equals_cached_uint8_path_exactly(photo_12mp: Path, grayscale: bool) -> None:
    cfg = PreprocessConfig(size=48, grayscale=grayscale)
    for source in _sources(photo_12mp):
        served = preprocess(source, cfg)
        cached = image_to_uint8(load_image(source, draft_size=cfg.size), cfg.size)
        trained = normalize(cached[None], cfg)[0]
        assert served.dtype == np.float32 and served.shape == (cfg.channels, 48, 48)
        np.testing.assert_array_equal(served, trained)
    batch = preprocess_batch(_sources(photo_12mp), cfg)
    singles = np.stack([preprocess(s, cfg) for s in _sources(photo_12mp)])
    np.testing.assert_array_equal(batch, singles)


def test_preprocess_batch_empty() -> None:
    out = preprocess_batch([], PreprocessConfig(size=8, grayscale=True))
    assert out.shape == (0, 1, 8, 8) and out.dtype == np.float32


def test_normalize_values() -> None:
    cfg = PreprocessConfig(mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    batch = np.zeros((2, 3, 5, 3), np.uint8)
    batch[1] = 255
    x = normalize(batch, cfg)
    assert x.shape == (2, 3, 3, 5) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], [-2.0, -1.0, -0.5])
    np.testing.assert_allclose(x[1, :, 0, 0], [2.0, 1.0, 0.5])
    with pytest.raises(ValueError, match="uint8"):
        normalize(batch.astype(np.float32), cfg)


def test_decode_leaves_the_caller_image_untouched() -> None:
    img = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    x = decode(img, 16)
    assert x.shape == (16, 16, 3) and x.dtype == np.uint8
    assert img.mode == "RGBA" and img.size == (40, 30)


def test_source_kinds_agree(tmp_path: Path) -> None:
    img = Image.new("RGB", (33, 21), (9, 99, 199))
    path = tmp_path / "x.png"
    img.save(path)
    data = path.read_bytes()
    outs = [preprocess(s) for s in (path, str(path), data, bytearray(data), io.BytesIO(data), img)]
    for out in outs[1:]:
        np.testing.assert_array_equal(outs[0], out)


def test_config_round_trip() -> None:
    cfg = PreprocessConfig(size=32, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6), grayscale=True)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d == {"size": 32, "mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6], "grayscale": True}
    assert PreprocessConfig.from_dict(d) == cfg
    assert PreprocessConfig.from_dict({}) == PreprocessConfig()
    with pytest.raises(ValueError, match="unknown"):
        PreprocessConfig.from_dict({"size": 32, "interpolation": "nearest"})
    with pytest.raises(ValueError, match="std"):
        PreprocessConfig(std=(0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="size"):
        PreprocessConfig(size=0)


def test_out_of_range_values_are_stretched() -> None:
    ramp = np.linspace(-3.0, 5.0, 9, dtype=np.float32).reshape(1, 9)
    out = np.asarray(load_image(Image.fromarray(ramp, "F")))[0, :, 0]
    assert out[0] == 0 and out[-1] == 255 and (np.diff(out.astype(int)) > 0).all()


def test_oversized_file_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pre, "MAX_FILE_BYTES", 1000)
    data = encode(Image.new("RGB", (64, 64)), "BMP")  # ~12 KB
    path = tmp_path / "big.bmp"
    path.write_bytes(data)
    for source in (path, data, io.BytesIO(data)):
        with pytest.raises(ImageError, match=r"^file is too large \("):
            load_image(source)


def test_reads_are_bounded_for_anything_opened(tmp_path: Path) -> None:
    """A symlink to an endless device and a FIFO are refused before they are read or opened
    (reading /dev/zero would never end; opening a FIFO would wait for a writer forever)."""
    import os

    zero = tmp_path / "zero.jpg"
    zero.symlink_to("/dev/zero")
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(zero)
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(fifo)


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("std", [float("nan"), 1.0, 1.0]),
        ("std", [float("inf"), 1.0, 1.0]),
        ("std", [1e-60, 1.0, 1.0]),
        ("std", ["0.5", 1.0, 1.0]),
        ("mean", [float("nan"), 0.5, 0.5]),
        ("mean", [1e30, 0.5, 0.5]),
        ("mean", [True, 0.5, 0.5]),
        ("mean", "abc"),
    ],
)
def test_preprocessing_numbers_outside_what_pixels_allow_are_refused(field: str, values) -> None:
    """A weights file's statistics are checked at load: NaN, inf, strings or a std of 1e-60
    would otherwise turn every photo into NaN and every verdict into "not_hotdog nan"."""
    with pytest.raises(ValueError, match=field):
        PreprocessConfig.from_dict({field: values})


def test_classifier_refuses_a_threshold_or_temperature_it_cannot_use() -> None:
    from micrograd.nn import Linear
    from models.classifier import Classifier

    net, pre = Linear(3, 2), PreprocessConfig(size=1)
    for bad in (5.0, -1.0, float("nan"), 0.0):
        with pytest.raises(ValueError, match="threshold"):
            Classifier(net, pre, threshold=bad)
    for bad in (0.0, -2.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            Classifier(net, pre, temperature=bad)


def test_preprocess_size_is_bounded() -> None:
    with pytest.raises(ValueError, match="over the limit"):
        PreprocessConfig(size=2048)


def _big_png(mode: str) -> bytes:
    """A 1200x1000 gradient PNG in ``mode`` (palette with a transparent entry, 16-bit gray,
    RGBA), turned by EXIF orientation 6."""
    ramp = (np.add.outer(np.arange(1000), np.arange(1200)) // 9 % 256).astype(np.uint8)
    img = {
        "P": lambda: Image.fromarray(ramp).convert("P"),
        "I;16": lambda: Image.fromarray(ramp.astype(np.uint16) * 257),
        "RGBA": lambda: Image.fromarray(np.stack([ramp, ramp[::-1], ramp, ramp | 128], -1)),
    }[mode]()
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "PNG", exif=exif.tobytes(), **({"transparency": 0} if mode == "P" else {}))
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["P", "I;16", "RGBA"])
def test_a_big_image_is_averaged_down_before_any_conversion(mode: str) -> None:
    """Decoded for a 64 px model, a big PNG is reduced right after decoding: the same pixels
    as converting it at full size (within rounding), upright, its own size remembered."""
    data = _big_png(mode)
    small = load_image(data, draft_size=64)
    assert max(small.size) < 400 and small.info["original_size"] == (1000, 1200)
    full = load_image(data)
    assert full.size == (1000, 1200)
    ours = pre.image_to_uint8(small, 64).astype(int)
    theirs = pre.image_to_uint8(full, 64).astype(int)
    assert np.abs(ours - theirs).mean() < 2.0


@pytest.mark.slow
def test_a_small_file_that_decodes_huge_stays_under_a_gigabyte(tmp_path: Path) -> None:
    """A 9,400-pixel-square 16-bit gray PNG is a few hundred KB; decoding it for a model
    peaks well under 1 GB (it took 3.1 GB before it was reduced first)."""
    import subprocess
    import sys

    if not Path("/proc/self/status").exists():
        pytest.skip("no /proc/self/status to read a process's peak memory from")
    side = 9400
    row = b"\x00" + b"\x12\x34" * side  # filter byte, then 16-bit pixels
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0)
    path = tmp_path / "deep.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    assert path.stat().st_size < 2 * 2**20
    # VmHWM is this process's own peak; getrusage's would include the forking parent's
    script = (
        "from models.preprocess import decode; "
        f"a = decode({str(path)!r}, 224); assert a.shape == (224, 224, 3); "
        "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"
    )
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
        check=True,
    )
    peak_mb = int(run.stdout.split()[-1]) / 1024
    assert peak_mb < 1024, peak_mb
