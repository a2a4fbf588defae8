"""Weight files and model cards.

A model is two files side by side:

- ``NAME.npz``: every parameter and buffer (``state_dict``) as plain float32 arrays, plus one
  ``__config__`` entry holding the JSON needed to rebuild and feed the network (architecture,
  preprocessing, class names). It loads with ``numpy.load(..., allow_pickle=False)``: no pickle,
  so a weight file can never run code.
- ``NAME.json``: the model card, everything a person wants to know about the model (data,
  training recipe, metrics, per-epoch history). The app shows it; nothing needs it to predict.

Every write goes to a temporary file in the same folder, is flushed to disk, then renamed over
the target, so a crash mid-write leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import secrets
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

CONFIG_KEY = "__config__"
#: The most a weights file may unpack to, all arrays together (the shipped ones are under 20 MB,
#: ImageNet checkpoints under 30 MB): read from the zip directory before any array is.
MAX_UNPACKED_BYTES = 512 * 2**20
#: A member that unpacks to more than this many times its stored size is a zip bomb: arrays of
#: real weights barely compress (``np.savez`` stores them; even deflate gains under 10%).
MAX_COMPRESSION_RATIO = 50


class ModelFileError(ValueError):
    """A weight file or model card that is missing, corrupt or inconsistent (one-line message)."""


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a temporary file next to ``path`` for binary writing; on success it replaces
    ``path`` in one rename. On any error the temporary file is removed and ``path`` untouched."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Like mkstemp, but with ordinary permissions (0666 less the umask, as the OS applies it)
    # rather than mkstemp's 0600, and without touching the process-wide umask.
    while True:
        tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_arrays(path: str | os.PathLike[str], arrays: dict[str, Any]) -> None:
    """Write ``arrays`` (name -> array or JSON-able scalar) to an ``.npz`` atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    with atomic_write(path) as f:
        f.write(buffer.getvalue())


#: A weights file as a path, or its bytes (as a cluster's workers receive it).
WeightsSource = str | os.PathLike[str] | bytes


def source_name(source: WeightsSource) -> str:
    """How messages name a weights file: its path, or what bytes of one are."""
    return "the weights received" if isinstance(source, bytes) else str(source)


def load_arrays(source: WeightsSource) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file or of its bytes (no pickle). Raises
    ``ModelFileError`` on bad files."""
    name = source_name(source)
    if isinstance(source, bytes):

        def archive() -> Path | IO[bytes]:
            return io.BytesIO(source)  # each reader from the start
    else:
        path = Path(source)
        if not path.is_file():
            raise ModelFileError(f"no such weights file: {path}")

        def archive() -> Path | IO[bytes]:
            return path

    if not zipfile.is_zipfile(archive()):  # np.load would blame pickling for any non-zip file
        raise ModelFileError(f"{name} is not a .npz weights file (corrupt or another format)")
    try:
        _check_sizes(archive(), name)
        with np.load(archive(), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFileError(f"{name} is not a readable .npz weights file ({exc})") from None


def _check_sizes(archive: Path | IO[bytes], name: str) -> None:
    """Refuse, from the zip directory alone, a file whose arrays would unpack to more than
    ``MAX_UNPACKED_BYTES`` or that compresses like a zip bomb. A member cannot unpack to more
    than it declares: zipfile stops reading at the declared size."""
    with zipfile.ZipFile(archive) as z:
        members = z.infolist()
    total = sum(m.file_size for m in members)
    if total > MAX_UNPACKED_BYTES:
        raise ModelFileError(
            f"{name} would unpack to {total / 2**20:.0f} MB: more than any weights file "
            f"({MAX_UNPACKED_BYTES // 2**20} MB)"
        )
    for m in members:
        if m.file_size > 2**20 and m.file_size > MAX_COMPRESSION_RATIO * max(m.compress_size, 1):
            raise ModelFileError(
                f"{name} holds {m.filename!r}, compressed {m.file_size // max(m.compress_size, 1)}"
                " times: a zip bomb, not weights"
            )


def save_model(
    path: str | os.PathLike[str],
    state: dict[str, np.ndarray],
    config: dict[str, Any],
    card: dict[str, Any] | None = None,
) -> Path:
    """Write ``path`` (``.npz``: ``state`` + ``config``) and, if given, the card next to it
    (same name, ``.json``). Returns the ``.npz`` path."""
    npz = Path(path).with_suffix(".npz")
    arrays: dict[str, Any] = {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}
    arrays[CONFIG_KEY] = np.asarray(json.dumps(config))
    save_arrays(npz, arrays)
    if card is not None:
        write_json(npz.with_suffix(".json"), card)
    return npz


def load_model_file(source: WeightsSource) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a weights file written by ``save_model`` (its path or its bytes):
    ``(state_dict, config)``."""
    arrays = load_arrays(source)
    path = source_name(source)
    if CONFIG_KEY not in arrays:
        raise ModelFileError(f"{path} has no model config: not a weights file of this project")
    try:
        config = json.loads(str(arrays.pop(CONFIG_KEY)))
    except (ValueError, RecursionError) as exc:  # bad JSON, a 5,000-digit number, deep nesting
        raise ModelFileError(f"{path} has a corrupt model config ({type(exc).__name__})") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{path} has a corrupt model config (not an object)")
    for name, array in arrays.items():
        if array.dtype.kind != "f":
            raise ModelFileError(f"{path} holds {name} as {array.dtype}, not floating point")
        if not np.isfinite(array).all():
            raise ModelFileError(f"{path} holds NaN or infinite values in {name}: a diverged run")
        if array.size and float(np.abs(array).max()) > float(np.finfo(np.float32).max):
            raise ModelFileError(f"{path} holds values in {name} too large for float32")
    return arrays, config


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as pretty, strict JSON atomically (NaN and infinities become null, which
    every JSON reader accepts)."""
    with atomic_write(path) as f:
        f.write((json.dumps(_strict(obj), indent=2, allow_nan=False) + "\n").encode())


def _strict(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_strict(v) for v in obj]
    return obj


def _bounded_int(text: str) -> int | float:
    """A JSON integer; one too long to be a count (a 5,000-digit one) reads as infinity, which
    every card field refuses on its own, so the rest of the card stays readable."""
    return int(text) if len(text) <= 30 else float("inf")


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON object; ``ModelFileError`` if missing or corrupt."""
    try:
        return json.loads(Path(path).read_text(), parse_int=_bounded_int)
    except FileNotFoundError:
        raise ModelFileError(f"no such file: {path}") from None
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, huge numbers, deep nesting
        raise ModelFileError(
            f"{path} is not valid JSON ({str(exc)[:200] or type(exc).__name__})"
        ) from None
