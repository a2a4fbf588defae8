"""The one image -> array function, shared by training, evaluation and the app.

Serving path, step by step (``preprocess`` runs all of it):

1. ``load_image``: any path, bytes, file object or PIL image -> upright RGB ``PIL.Image``
   (EXIF orientation applied, transparency composited on white, every Pillow mode handled,
   big JPEGs shrunk while decoding, hostile files refused with one ``ImageError``).
2. ``image_to_uint8``: shorter side resized to ``size`` and centre-cropped, in one resampling
   step -> ``(size, size, 3) uint8``. The training cache stores exactly this kind of array.
3. ``normalize``: ``uint8 (N, H, W, 3)`` -> ``float32 (N, C, H, W)`` with the config's
   mean / std (and optional grayscale).

``decode(source, size)`` is steps 1 and 2, the one decode that the app, ``predict``, the
training cache and ``evaluate`` all call; ``preprocess`` is ``normalize(decode(...)[None])[0]``,
so training batches built from the uint8 cache and images scored by the app go through the
same arithmetic.
The ``PreprocessConfig`` is stored with the weights, so a model is always fed the way it was
trained.
"""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps

try:  # HEIC/HEIF (iPhone photos) when the optional plugin is installed
    import pillow_heif  # type: ignore[import-not-found]

    pillow_heif.register_heif_opener()
    HEIF_SUPPORTED = True
except ImportError:  # pragma: no cover - depends on the environment
    HEIF_SUPPORTED = False

#: The photo formats a person may hand in, by file extension, as shown to them.
PHOTO_FORMATS = ("JPG", "PNG", "WEBP", "GIF", "BMP", "TIFF") + (("HEIC",) if HEIF_SUPPORTED else ())

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes] | Image.Image

# Pillow's own warning threshold (~89.5 megapixels, a 9459x9459 image). Anything larger is
# refused from its header, before a single pixel is decoded: such a file costs hundreds of MB
# to decode and no photo needs it to be classified at 64x64.
MAX_PIXELS = 89_478_485
# Encoded size limit, checked before reading: a photo is a few MB, and a multi-GB file renamed
# to .jpg must not be read into memory just to be refused.
MAX_FILE_BYTES = 256 * 1024 * 1024

# Resampling for the one resize in the pipeline. LANCZOS antialiases when shrinking;
# reducing_gap lets Pillow first shrink by an integer factor with a box filter (fast, exact
# averaging) when the image is much larger than the target.
RESAMPLE = Image.Resampling.LANCZOS
REDUCING_GAP = 3.0

# ITU-R 601-2 luma, the weights Pillow's own "L" conversion uses.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

_WHITE = (255, 255, 255)
#: The largest model input side: activations grow with its square, and no hotdog needs more.
MAX_INPUT_SIZE = 512


class ImageError(ValueError):
    """An input that cannot be turned into an image; ``str(err)`` is a one-line message."""


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters of the image -> array function, saved with the weights as JSON.

    size: the model input is ``size x size``.
    mean, std: per-channel RGB statistics on the 0..1 scale (ImageNet's by default);
        the array fed to the model is ``(pixel / 255 - mean) / std``.
    grayscale: feed one luma channel instead of three; it is normalised with the luma-weighted
        mean and std (``0.299 R + 0.587 G + 0.114 B`` of ``mean`` and of ``std``).
    """

    size: int = 64
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    grayscale: bool = False

    def __post_init__(self) -> None:
        # JSON gives lists; normalise to tuples so configs compare and hash by value. Real
        # numbers only (float() would take "nan", complex() parts would not compare).
        for name in ("mean", "std"):
            values = getattr(self, name)
            if isinstance(values, str | bytes) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values
            ):
                raise ValueError(f"{name} must be three numbers, not {values!r}")
            object.__setattr__(self, name, tuple(float(v) for v in values))
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 1:
            raise ValueError(f"size must be a positive integer, not {self.size!r}")
        if self.size > MAX_INPUT_SIZE:
            raise ValueError(f"size {self.size} is over the limit of {MAX_INPUT_SIZE} pixels")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std must each hold three values (R, G, B)")
        # a pixel is on the 0..1 scale: statistics far outside it are a broken file, and a
        # tiny std turns every photo into inf
        if not all(-1.0 <= m <= 2.0 for m in self.mean):
            raise ValueError(f"mean must lie in [-1, 2] (pixels are 0..1), not {self.mean}")
        if not all(1e-3 <= s <= 10.0 for s in self.std):
            raise ValueError(f"std must lie in [0.001, 10], not {self.std}")

    @property
    def channels(self) -> int:
        """Number of channels of the model input: 1 for grayscale, else 3."""
        return 1 if self.grayscale else 3

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``{"size", "mean", "std", "grayscale"}``."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreprocessConfig:
        """Inverse of ``to_dict``. Unknown keys are an error: a model card written by a newer
        preprocessing must not be silently served with an older one."""
        unknown = set(d) - {"size", "mean", "std", "grayscale"}
        if unknown:
            raise ValueError(f"unknown preprocessing settings: {sorted(unknown)}")
        return cls(**dict(d))


# ----------------------------------------------------------------------------- decoding


def load_image(source: ImageSource, *, draft_size: int | None = None) -> Image.Image:
    """Decode ``source`` into an upright RGB ``PIL.Image`` (mode ``"RGB"``, uint8).

    source: a path (str or ``os.PathLike``), the encoded bytes, a binary file object (such as
        Streamlit's ``UploadedFile``), or a ``PIL.Image.Image`` (its current frame is used).
    draft_size: if given, a JPEG is scaled down by 1/2, 1/4 or 1/8 inside the decoder while
        keeping both sides >= ``draft_size`` (much faster for big photos; the final resize
        then does the rest). Other formats are decoded at full size.

    The returned image's ``info["original_size"]`` is the photo's own ``(width, height)``,
    upright, whatever the draft decode shrank it to.

    Raises ``ImageError`` (a ``ValueError``) with a one-line message for a missing or empty
    file, data that is not an image, an image over ``MAX_PIXELS``, or a truncated / corrupt one.
    """
    if isinstance(source, Image.Image):
        _check_size(source.size)
        try:
            # No draft here: draft() would mutate the caller's image.
            return _finish(source, source.size)
        except ImageError:
            raise
        except Exception as exc:
            raise _decode_error(exc) from None

    fp = _open_source(source)
    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_PIXELS; _check_size refuses those with a clearer message.
            # Only Image.open (header parsing) runs under this filter, so the window in which
            # another thread could see it is short and harmless.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise ImageError(_too_large_message(exc)) from None
    except Image.UnidentifiedImageError:
        raise ImageError("not an image (or an unsupported format)") from None
    except Exception as exc:
        raise _decode_error(exc) from None
    try:
        with img:
            _check_size(img.size)
            stored_size = img.size
            if draft_size is not None and img.format in ("JPEG", "MPO"):
                img.draft("RGB", (draft_size, draft_size))
            elif draft_size is not None:
                img = _shrink(img, draft_size)
            return _finish(img, stored_size)
    except ImageError:
        raise
    except Exception as exc:
        raise _decode_error(exc) from None


def _open_source(source: ImageSource) -> IO[bytes]:
    """Return a seekable binary stream for ``source`` (``ImageError`` if missing or empty)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        data = read_file(Path(source))
    elif hasattr(source, "read"):
        try:
            if hasattr(source, "seek"):
                source.seek(0)
            data = source.read(MAX_FILE_BYTES + 1)
        except Exception as exc:
            raise ImageError(f"cannot read the upload: {exc}") from None
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError("the file object must be opened in binary mode")
        if len(data) > MAX_FILE_BYTES:
            raise ImageError(_file_too_large_message(len(data)))
    else:
        raise ImageError(f"cannot read an image from a {type(source).__name__}")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(_file_too_large_message(len(data)))
    if not data:
        raise ImageError("empty file")
    # Reading everything up front (photos are a few MB) means no file handle outlives this
    # call, and a file object can be read again later.
    return io.BytesIO(data)


def read_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a regular file (symlinks followed), at most ``MAX_FILE_BYTES`` + 1 of them;
    ``ImageError`` with the message ``decode`` gives when the file cannot be read.

    Anything else is refused before it is opened: opening a FIFO blocks until someone writes
    to it, and a device such as ``/dev/zero`` never ends.
    """
    path = Path(path)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ImageError(f"not a file: {path}")
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(f"not a regular file (a pipe, socket or device): {path}")
        if info.st_size > MAX_FILE_BYTES:
            raise ImageError(_file_too_large_message(info.st_size))
        with open(path, "rb") as f:
            return f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ImageError(f"file not found: {path}") from None
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror or exc}") from None


def _shrink(img: Image.Image, draft_size: int) -> Image.Image:
    """A big image of any other format, averaged down by an integer factor right after
    decoding (its shorter side kept >= ``2 * draft_size``), before any conversion: converting
    a 9,400-pixel-square 16-bit or palette PNG to RGB at full size costs gigabytes, the
    reduced one megabytes. ``img`` itself when it is small enough already."""
    factor = min(img.size) // (2 * draft_size)
    if factor < 2:
        return img
    img.load()
    if img.mode.startswith("I;16"):  # reduce() takes no 16-bit images: average in numpy
        a = np.asarray(img)
        h, w = a.shape[0] // factor * factor, a.shape[1] // factor * factor
        blocks = a[:h, :w].reshape(h // factor, factor, w // factor, factor)
        small = Image.fromarray(np.rint(blocks.mean(axis=(1, 3))).astype(np.uint16))
    else:
        wide = {"P": "RGBA", "1": "L"}.get(img.mode)
        if wide is None and "transparency" in img.info:
            wide = "RGBA" if img.mode in ("RGB", "P") else "LA"
        small = (img.convert(wide) if wide else img).reduce(factor)
    small.info.update({k: v for k, v in img.info.items() if k != "transparency"})
    return small


#: EXIF orientations that turn the stored image by 90 degrees (width and height swap).
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


def _finish(img: Image.Image, stored_size: tuple[int, int]) -> Image.Image:
    """Apply EXIF orientation and convert to RGB, as a new image (``img`` is left untouched);
    ``info["original_size"]`` is ``stored_size`` (the size before any draft decode), upright."""
    img.load()
    try:
        upright = ImageOps.exif_transpose(img)  # always a new image
        turned = img.getexif().get(0x0112) in _QUARTER_TURNS
    except Exception:
        # A malformed EXIF block should not make a viewable photo unusable: show it as stored.
        upright, turned = img.copy(), False
    rgb = to_rgb(upright)  # a new image: ``upright`` is one
    rgb.info["original_size"] = stored_size[::-1] if turned else stored_size
    return rgb


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert an image of any Pillow mode to ``"RGB"`` (returns ``img`` itself if already RGB).

    Transparent pixels are composited on white (a PNG cut-out of a hotdog should look like a
    hotdog on a plate, not on black). 16- and 32-bit integer and float images are scaled to
    0..255 from their value range (see ``_high_depth_to_l``).
    """
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode in ("RGBa", "La"):
        # Premultiplied alpha: over white, out = premultiplied + (255 - alpha).
        arr = np.asarray(img, dtype=np.uint16)
        out = np.minimum(arr[..., :-1] + (255 - arr[..., -1:]), 255).astype(np.uint8)
        return Image.fromarray(np.repeat(out, 3, axis=-1) if mode == "La" else out, "RGB")
    if mode.startswith("I") or mode.startswith("F"):
        return _high_depth_to_l(img).convert("RGB")
    if mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError):
        raise ImageError(f"unsupported colour mode {mode}") from None


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """Map a 16-bit (``I;16*``), 32-bit integer (``I``) or float (``F``) image to 8-bit ``L``.

    Scaling follows what the values most likely mean, so a dark photo stays dark:
    ``I;16*`` is full-range 16-bit (divide by 257); ``I`` holding 0..255 is 8-bit data,
    0..65535 is 16-bit data; ``F`` holding 0..1 is a unit-range image, 0..255 is 8-bit data.
    Anything else (negative values, out-of-range floats) is min-max stretched.
    """
    a = np.asarray(img, dtype=np.float64)
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if img.mode.startswith("I;16"):
        scaled = a / 257.0
    elif img.mode.startswith("I") and lo >= 0 and hi <= 255:
        scaled = a
    elif img.mode.startswith("I") and lo >= 0 and hi <= 65535:
        scaled = a / 257.0
    elif img.mode.startswith("F") and lo >= 0 and hi <= 1:
        scaled = a * 255.0
    elif img.mode.startswith("F") and lo >= 0 and hi <= 255:
        scaled = a
    elif hi > lo:
        scaled = (a - lo) * (255.0 / (hi - lo))
    else:
        scaled = np.zeros_like(a)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def _check_size(size: tuple[int, int]) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise ImageError(f"image has no pixels ({w}x{h})")
    if w * h > MAX_PIXELS:
        raise ImageError(
            f"image is too large ({w}x{h} pixels; the limit is {MAX_PIXELS / 1e6:.1f} megapixels)"
        )


def _file_too_large_message(n_bytes: int) -> str:
    mb = 1024 * 1024
    return f"file is too large ({n_bytes / mb:.0f} MB; the limit is {MAX_FILE_BYTES // mb} MB)"


def _too_large_message(exc: Exception) -> str:
    # Pillow refuses > 2 * its limit inside Image.open, before we see the size: take the
    # pixel count from its message.
    m = re.search(r"\((\d+) pixels\)", str(exc))
    what = f"{int(m.group(1)) / 1e6:.1f} megapixels" if m else "too many pixels"
    return f"image is too large ({what}; the limit is {MAX_PIXELS / 1e6:.1f} megapixels)"


def _decode_error(exc: Exception) -> ImageError:
    if isinstance(exc, MemoryError):
        return ImageError("image is too large to decode in the available memory")
    return ImageError("truncated or corrupt image")


# --------------------------------------------------------------------- geometry and arrays


def resize_and_crop(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` and centre-crop to ``size x size``.

    Done as one resampling of the central square (Pillow's ``resize(box=...)``), so no pixels
    outside the crop are resampled and the crop stays centred to sub-pixel precision.
    Works for any mode; returns a new ``size x size`` image of the same mode.
    """
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    return img.resize(
        (size, size),
        RESAMPLE,
        box=(left, top, left + side, top + side),
        reducing_gap=REDUCING_GAP,
    )


def image_to_uint8(img: Image.Image, size: int) -> np.ndarray:
    """Decoded image -> ``(size, size, 3) uint8`` RGB: ``resize_and_crop`` of the RGB image.

    This is what the training cache stores and what ``normalize`` consumes.
    """
    return np.asarray(resize_and_crop(to_rgb(img), size), dtype=np.uint8)


def normalize(batch: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """``uint8 (N, H, W, 3)`` RGB -> ``float32 (N, C, H, W)``, C = ``cfg.channels``.

    Each value is ``(pixel / 255 - mean) / std`` per channel; with ``cfg.grayscale`` the single
    channel is the luma ``0.299 R + 0.587 G + 0.114 B``. Any H, W are accepted (training
    crops need not be ``cfg.size``).
    """
    batch = np.asarray(batch)
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(
            f"normalize expects a uint8 (N, H, W, 3) batch, got {batch.dtype} {batch.shape}"
        )
    x = batch.astype(np.float32) * np.float32(1 / 255)
    mean = np.asarray(cfg.mean, dtype=np.float32)
    std = np.asarray(cfg.std, dtype=np.float32)
    if cfg.grayscale:
        x = (x @ LUMA)[..., None]
        mean, std = mean @ LUMA, std @ LUMA
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


def decode(source: ImageSource, size: int) -> np.ndarray:
    """THE decode: any image source -> ``uint8 (size, size, 3)`` RGB, exactly the pixels a
    model with input side ``size`` sees (a big JPEG is decoded at the reduced scale that
    ``size`` allows, then resized and centre-cropped). ``ImageError`` if it is not an image."""
    return image_to_uint8(load_image(source, draft_size=size), size)


def preprocess(source: ImageSource, cfg: PreprocessConfig | None = None) -> np.ndarray:
    """THE image -> array function: ``float32 (C, cfg.size, cfg.size)``, normalised;
    ``normalize(decode(source, cfg.size)[None], cfg)[0]``.

    Raises ``ImageError`` for anything that is not a usable image.
    """
    cfg = cfg or PreprocessConfig()
    return normalize(decode(source, cfg.size)[None], cfg)[0]


def preprocess_batch(
    sources: Iterable[ImageSource], cfg: PreprocessConfig | None = None
) -> np.ndarray:
    """``preprocess`` over several images: ``float32 (N, C, size, size)`` (N may be 0).

    The first unusable image raises ``ImageError``; callers that want to skip bad images
    should call ``preprocess`` one by one.
    """
    cfg = cfg or PreprocessConfig()
    images = [decode(s, cfg.size) for s in sources]
    if not images:
        return np.zeros((0, cfg.channels, cfg.size, cfg.size), dtype=np.float32)
    return normalize(np.stack(images), cfg)
