"""``models.io``: weights files are written atomically and read without trusting them."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import models
from models.io import (
    ModelFileError,
    atomic_write,
    load_model_file,
    read_json,
    save_model,
    write_json,
)

CONFIG = {"architecture": {"type": "mlp"}}


def test_round_trip(tmp_path: Path) -> None:
    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    path = save_model(tmp_path / "m", state, CONFIG, {"name": "m"})
    assert path.suffix == ".npz" and read_json(path.with_suffix(".json")) == {"name": "m"}
    loaded, config = load_model_file(path)
    np.testing.assert_array_equal(loaded["w"], state["w"])
    assert config == CONFIG


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "weights.npz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write(b"half of the new")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_json_is_strict(tmp_path: Path) -> None:
    write_json(tmp_path / "c.json", {"x": float("nan"), "y": [float("inf"), 1.0]})
    assert read_json(tmp_path / "c.json") == {"x": None, "y": [None, 1.0]}
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")


def zip_of(tmp_path: Path, members: dict[str, bytes], method: int) -> Path:
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_a_zip_bomb_is_refused_from_its_directory(tmp_path: Path) -> None:
    """256 MB of zeros deflate to a few hundred KB: refused at once, before unpacking."""
    zeros = npy(np.zeros(64 * 2**20, np.float32))
    path = zip_of(
        tmp_path, {"w.npy": zeros, "__config__.npy": npy(np.array("{}"))}, zipfile.ZIP_DEFLATED
    )
    assert path.stat().st_size < 2**20
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match="zip bomb"):
        load_model_file(path)
    assert time.perf_counter() - start < 1.0  # nothing was unpacked


def test_a_file_that_would_unpack_to_too_much_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.io

    monkeypatch.setattr(models.io, "MAX_UNPACKED_BYTES", 1000)
    path = save_model(tmp_path / "m", {"w": np.zeros(1000, np.float32)}, CONFIG)
    with pytest.raises(ModelFileError, match="would unpack to"):
        load_model_file(path)


def test_values_that_float32_cannot_hold_are_refused(tmp_path: Path) -> None:
    path = zip_of(
        tmp_path,
        {"w.npy": npy(np.array([1e300])), "__config__.npy": npy(np.array('{"a": 1}'))},
        zipfile.ZIP_STORED,
    )
    with pytest.raises(ModelFileError, match="too large for float32"):
        load_model_file(path)


def test_integer_arrays_are_not_weights(tmp_path: Path) -> None:
    path = zip_of(
        tmp_path,
        {"w.npy": npy(np.arange(3)), "__config__.npy": npy(np.array("{}"))},
        zipfile.ZIP_STORED,
    )
    with pytest.raises(ModelFileError, match="not floating point"):
        load_model_file(path)


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ("[" * 100_000 + "]" * 100_000, "corrupt model config"),
        ('{"a": ' + "9" * 5000 + "}", "corrupt model config"),
    ],
    ids=["deeply-nested", "huge-integer"],
)
def test_hostile_configs_are_one_line_errors(tmp_path: Path, config: str, words: str) -> None:
    path = zip_of(
        tmp_path,
        {"w.npy": npy(np.zeros(3, np.float32)), "__config__.npy": npy(np.array(config))},
        zipfile.ZIP_STORED,
    )
    with pytest.raises(ModelFileError, match=words):
        load_model_file(path)


@pytest.mark.parametrize(
    ("architecture", "words"),
    [
        ("resnet", "not an object"),
        ({"type": "mlp", "in_features": 4, "hidden": [], "num_classes": 1}, "at least 2 classes"),
    ],
    ids=["string-architecture", "one-class"],
)
def test_a_model_file_of_the_wrong_shape_is_a_one_line_error(
    tmp_path: Path, architecture: object, words: str
) -> None:
    import models
    from models.preprocess import PreprocessConfig

    config = {"architecture": architecture, "preprocess": PreprocessConfig().to_dict()}
    path = save_model(tmp_path / "m", {"w": np.zeros(3, np.float32)}, config)
    with pytest.raises(models.ModelFileError, match=words):
        models.load(path)


def test_a_model_loads_from_the_bytes_of_its_file(tmp_path: Path) -> None:
    """How a cluster's workers load the model: from the file's bytes, no pickle."""
    shipped = models.MODELS_DIR / "hotdog_cnn.npz"
    from_bytes, from_file = models.load_bytes(shipped.read_bytes()), models.load(shipped)
    x = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert np.array_equal(from_bytes.logits_uint8(x), from_file.logits_uint8(x))
    with pytest.raises(models.ModelFileError, match=r"^the weights received is not a \.npz"):
        models.load_bytes(b"not a weights file")
    cut = shipped.read_bytes()[:5000]
    with pytest.raises(models.ModelFileError, match=r"^the weights received"):
        models.load_bytes(cut)
