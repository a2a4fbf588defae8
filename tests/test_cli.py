"""``python -m training``: train / evaluate / predict / fetch, run as a user would (subprocess)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import models
from micrograd import Tensor, no_grad
from models.architectures import build
from models.io import load_arrays, load_model_file, save_model
from models.preprocess import PreprocessConfig, decode, normalize
from tests.tiny_data import write_image_folder
from training.metrics import calibration_error

pytestmark = pytest.mark.slow  # runs the CLI in subprocesses, training included

ROOT = Path(__file__).resolve().parents[1]
TINY_ARCH = '{"type": "resnet", "stem": 4, "channels": [8], "dropout": 0.0}'
TINY = ["--size", "16", "--batch-size", "8", "--workers", "1", "--arch-json", TINY_ARCH]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    cache = tmp_path_factory.mktemp("cache")
    return {
        **os.environ,
        "HOTDOG_CACHE_DIR": str(cache),
        "TQDM_DISABLE": "1",
        "PYTHONPATH": str(ROOT),
    }


def run(env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def assert_clean_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """Exit ``code``, no traceback, and a one-line message on stderr; return that line."""
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two sources: 2 x 20 PNGs and 2 x 10 JPEGs, reddish hot_dog/ vs bluish nothotdog/."""
    root = tmp_path_factory.mktemp("data")
    write_image_folder(root / "alpha", n_per_class=20, side=24, seed=0)
    write_image_folder(root / "beta", n_per_class=10, side=30, seed=5, fmt="JPEG")
    return root


@pytest.fixture(scope="module")
def trained(env: dict[str, str], data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out") / "tiny"
    proc = run(env, "train", "--data", str(data), "--out", str(out), "--epochs", "3", *TINY,
               "--notes", "test run")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return out.with_suffix(".npz")


# ------------------------------------------------------------------------------- train


def test_train_writes_a_loadable_model_and_its_card(trained: Path, data: Path) -> None:
    with np.load(trained, allow_pickle=False) as z:
        assert "__config__" in z.files
    clf = models.load(trained)
    assert clf.preprocess.size == 16
    assert not trained.with_suffix(".ckpt.npz").exists()  # removed after a finished run

    card = json.loads(trained.with_suffix(".json").read_text())
    for key in ("name", "created", "command", "architecture", "preprocess", "classes", "data",
                "augmentation", "training", "epochs_run", "best_epoch", "seed", "wall_seconds",
                "cpu_count", "metrics", "history", "n_parameters", "notes"):  # fmt: skip
        assert key in card, key
    assert card["name"] == "tiny" and card["notes"] == "test run"
    assert card["command"].startswith("python -m training train --data ")
    assert card["architecture"]["channels"] == [8]
    assert card["epochs_run"] == len(card["history"]) == 3
    assert card["data"]["train"]["n"] + card["data"]["val"]["n"] == 60
    assert set(card["data"]["val"]["sources"]) == {"alpha", "beta"}
    metrics = card["metrics"]
    assert metrics["n"] == card["data"]["val"]["n"]
    assert set(metrics["per_source"]) == {"alpha", "beta"}
    assert metrics["accuracy"] > 0.7  # reddish vs bluish: easy
    assert card["history"][-1]["train_loss"] < card["history"][0]["train_loss"]


def test_mlp_preset_and_resume_of_a_finished_run(
    env: dict[str, str], data: Path, tmp_path: Path
) -> None:
    out, ckpt = tmp_path / "mlp", tmp_path / "mlp.ckpt.npz"
    args = ["train", "--data", str(data), "--model", "mlp", "--size", "8", "--epochs", "2",
            "--out", str(out), "--workers", "1", "--batch-size", "16"]  # fmt: skip
    first = run(env, *args, "--keep-checkpoint")
    assert first.returncode == 0, first.stderr
    assert "epoch 2/2" in first.stderr
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["architecture"]["in_features"] == 64 and card["preprocess"]["grayscale"]
    weights = load_arrays(out.with_suffix(".npz"))

    again = run(env, *args, "--resume", "--keep-checkpoint")
    assert again.returncode == 0, again.stderr
    assert "resuming after epoch 2 of 2" in again.stderr
    for k, v in load_arrays(out.with_suffix(".npz")).items():
        assert np.array_equal(v, weights[k]), k
    command = json.loads(out.with_suffix(".json").read_text())["command"]
    assert "--resume" not in command and "--keep-checkpoint" in command

    other = run(env, *args, "--resume", "--lr", "0.5")
    assert "other settings (lr: 0.001 -> 0.5)" in assert_clean_error(other)
    assert ckpt.exists()
    missing = run(env, *args, "--resume", "--checkpoint", str(tmp_path / "none.npz"))
    assert "no checkpoint" in assert_clean_error(missing)


def test_ctrl_c_keeps_the_last_checkpoint(env: dict[str, str], data: Path, tmp_path: Path) -> None:
    out, ckpt = tmp_path / "long", tmp_path / "long.ckpt.npz"
    # Ctrl-C's default action in the child even where this suite was started in the
    # background, whose shell ignores SIGINT for everything it starts (and Python keeps that)
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", "train", "--data", str(data), "--out", str(out),
         "--epochs", "1000", *TINY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert re.search(r"interrupted: .*long\.ckpt\.npz holds epoch \d+; .*--resume", stderr)
    meta = json.loads(str(load_arrays(ckpt)["meta"]))
    assert meta["epoch"] >= 1 and len(meta["history"]) == meta["epoch"]
    assert not out.with_suffix(".npz").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_termination_keeps_the_checkpoint_and_releases_the_lock(
    env: dict[str, str], data: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    out, ckpt = tmp_path / "long", tmp_path / "long.ckpt.npz"
    command = ["train", "--data", str(data), "--out", str(out), "--epochs", "1000", *TINY]
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", *command],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert not out.with_suffix(".lock").exists()
    assert json.loads(str(load_arrays(ckpt)["meta"]))["epoch"] >= 1
    # past the lock, the checkpoint is read (and its settings compared: 1000 vs 2 epochs)
    resumed = run(env, *command[: -len(TINY) - 2], "--epochs", "2", *TINY, "--resume")
    assert "other settings (epochs: 1000 -> 2" in assert_clean_error(resumed)


# ------------------------------------------------------------------------------- evaluate


def test_evaluate_json_contract(env: dict[str, str], trained: Path, data: Path) -> None:
    proc = run(env, "evaluate", "--weights", str(trained), "--data", str(data), "--json")
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"n", "accuracy", "balanced_accuracy", "confusion", "seconds"} <= set(result)
    assert result["n"] == 60
    (tn, fp), (fn, tp) = result["confusion"]
    assert tn + fp == 30 and fn + tp == 30
    assert result["accuracy"] == pytest.approx((tn + tp) / 60)
    assert 0 <= result["balanced_accuracy"] <= 1 and result["seconds"] >= 0
    assert "balanced accuracy" in proc.stdout  # the human table comes first


def test_the_fitted_temperature_is_applied_by_predict_and_evaluate(
    env: dict[str, str], trained: Path, data: Path, tmp_path: Path
) -> None:
    """train stores the temperature it fitted; predict and evaluate divide the network's
    logits by the one in the weights file (worked out here from the raw logits)."""
    state, config = load_model_file(trained)
    calibration = json.loads(trained.with_suffix(".json").read_text())["metrics"]["calibration"]
    assert config["temperature"] == calibration["temperature"] > 0
    assert 0 <= calibration["ece"] <= 1 and 0 <= calibration["ece_uncalibrated"] <= 1
    hot = save_model(tmp_path / "hot.npz", state, {**config, "temperature": 0.2})
    net = build(config["architecture"])
    net.load_state_dict(state)
    pre = PreprocessConfig.from_dict(config["preprocess"])
    images = sorted(str(p) for p in data.rglob("*.png"))
    labels = np.array(["nothotdog" not in p for p in images], dtype=np.int64)
    with no_grad():
        z = net.eval()(Tensor(normalize(np.stack([decode(p, pre.size) for p in images]), pre)))
    margin = z.numpy()[:, 1].astype(np.float64) - z.numpy()[:, 0]
    want = 1 / (1 + np.exp(-margin / 0.2))
    proc = run(env, "predict", "--weights", str(hot), *images)
    assert proc.returncode == 0, proc.stderr
    got = [float(line.split("\t")[2]) for line in proc.stdout.strip().splitlines()]
    assert got == pytest.approx(want, abs=1e-4)
    assert np.abs(want - 1 / (1 + np.exp(-margin))).max() > 0.01  # T made a difference
    for folder in ("hot_dog", "nothotdog"):
        (tmp_path / "alpha" / folder).mkdir(parents=True)
        for path in (data / "alpha" / folder).iterdir():
            (tmp_path / "alpha" / folder / path.name).write_bytes(path.read_bytes())
    proc = run(env, "evaluate", "--weights", str(hot), "--data", str(tmp_path / "alpha"),
               "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["calibration_error"] == pytest.approx(calibration_error(labels, want), abs=1e-4)


def test_evaluate_without_json_prints_a_table(env: dict[str, str], trained: Path, data: Path):
    proc = run(env, "evaluate", "--weights", str(trained), "--data", str(data / "beta"))
    assert proc.returncode == 0, proc.stderr
    assert "images             20" in proc.stdout
    assert "{" not in proc.stdout


@pytest.mark.parametrize("case", ["missing", "empty", "no_class_folders", "no_images", "file"])
def test_evaluate_bad_data(env: dict[str, str], trained: Path, tmp_path: Path, case: str) -> None:
    target = tmp_path / case
    if case == "empty":
        target.mkdir()
    elif case == "no_class_folders":
        (target / "pizza").mkdir(parents=True)
        (target / "pizza" / "a.png").write_bytes((trained.parent / "tiny.json").read_bytes())
    elif case == "no_images":
        (target / "hot_dog").mkdir(parents=True)
        (target / "not_hot_dog").mkdir()
        (target / "hot_dog" / "notes.txt").write_text("no images here")
    elif case == "file":
        target.write_text("a file, not a folder")
    proc = run(env, "evaluate", "--weights", str(trained), "--data", str(target), "--json")
    assert str(target.name) in assert_clean_error(proc)
    assert proc.stdout == ""


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04 truncated"])
def test_evaluate_bad_weights(
    env: dict[str, str], data: Path, tmp_path: Path, content: bytes
) -> None:
    weights = tmp_path / "broken.npz"
    weights.write_bytes(content)
    proc = run(env, "evaluate", "--weights", str(weights), "--data", str(data), "--json")
    assert "broken.npz" in assert_clean_error(proc)
    missing = run(env, "evaluate", "--weights", str(tmp_path / "gone.npz"), "--data", str(data))
    assert "gone.npz" in assert_clean_error(missing)


# ------------------------------------------------------------------------------- predict


def test_predict_lines_and_a_bad_image_in_the_middle(
    env: dict[str, str], trained: Path, data: Path, tmp_path: Path
) -> None:
    hotdog = data / "alpha" / "hot_dog" / "hot_dog_000.png"
    other = data / "beta" / "nothotdog" / "nothotdog_001.jpeg"
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    proc = run(env, "predict", "--weights", str(trained), str(hotdog), str(bad), str(other))
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(hotdog), str(other)]
    for line in lines:
        assert re.fullmatch(r"[^\t]+\t(hotdog|not_hotdog)\t[01]\.\d{4}", line), line
    assert lines[0].split("\t")[1] == "hotdog" and lines[1].split("\t")[1] == "not_hotdog"
    err = assert_clean_error(proc, code=1)
    assert "broken.jpg" in err

    ok = run(env, "predict", "--weights", str(trained), str(hotdog))
    assert ok.returncode == 0 and ok.stderr == ""
    assert ok.stdout.count("\n") == 1


def test_predict_bad_weights(env: dict[str, str], data: Path, tmp_path: Path) -> None:
    image = data / "alpha" / "hot_dog" / "hot_dog_000.png"
    proc = run(env, "predict", "--weights", str(tmp_path / "none.npz"), str(image))
    assert "none.npz" in assert_clean_error(proc)


# ------------------------------------------------------------------------------- misc


def test_argument_errors_exit_2(env: dict[str, str]) -> None:
    for args in (["train", "--out", "x"], ["evaluate"], ["predict"], ["frobnicate"],
                 ["train", "--data", "d", "--out", "x", "--epochs", "0"]):  # fmt: skip
        proc = run(env, *args)
        assert proc.returncode == 2, args
        assert "Traceback" not in proc.stderr
        assert "error:" in proc.stderr.strip().splitlines()[-1]


def test_fetch_from_a_local_archive(env: dict[str, str], data: Path, tmp_path: Path) -> None:
    archive = tmp_path / "mini.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for image in sorted((data / "alpha").rglob("*.png"))[::8]:
            z.write(image, f"mini/{image.parent.name}/{image.name}")
    dest = tmp_path / "fetched"
    refused = run(env, "fetch", "mini", "--url", str(archive), "--dest", str(dest))
    assert "--sha256" in assert_clean_error(refused)  # no checksum known: nothing extracted
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    proc = run(env, "fetch", "mini", "--url", str(archive), "--dest", str(dest), "--sha256", digest)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == dest / "mini"
    assert sorted(p.name for p in (dest / "mini").iterdir()) == ["hot_dog", "not_hot_dog"]

    unknown = run(env, "fetch", "no-such-dataset", "--dest", str(dest))
    assert "unknown dataset" in assert_clean_error(unknown)


# ------------------------------------------------------------------------------- hardening


@pytest.mark.parametrize("option", ["--lr", "--source-power", "--weight-decay", "--grad-clip"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_hyperparameters_are_refused_at_once(
    env: dict[str, str], data: Path, tmp_path: Path, option: str, value: str
) -> None:
    proc = run(env, "train", "--data", str(data), "--out", str(tmp_path / "m"), f"{option}={value}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{option}: must be a finite number" in proc.stderr.strip().splitlines()[-1]
    assert not list(tmp_path.iterdir())


def test_a_source_power_that_would_overflow_is_refused_at_once(
    env: dict[str, str], data: Path, tmp_path: Path
) -> None:
    proc = run(env, "train", "--data", str(data), "--out", str(tmp_path / "m"),
               "--source-power", "1e308")  # fmt: skip
    assert "source_power must be at most 4" in assert_clean_error(proc)
    assert not list(tmp_path.iterdir())


def test_a_diverged_run_fails_loudly_and_saves_nothing(
    env: dict[str, str], data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "diverged"
    proc = run(env, "train", "--data", str(data), "--out", str(out), "--epochs", "3", *TINY,
               "--lr", "1e6", "--grad-clip", "0", "--optimizer", "sgd")  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "training diverged" in proc.stderr.strip().splitlines()[-1]
    assert "warning" not in proc.stderr  # numpy's overflow chatter is not the message
    assert not out.with_suffix(".npz").exists() and not out.with_suffix(".json").exists()


def test_non_finite_weights_are_refused_when_loading(trained: Path, tmp_path: Path) -> None:
    state, config = models.io.load_model_file(trained)
    name = next(iter(state))
    state[name] = state[name].copy()
    state[name].flat[0] = np.nan
    bad = models.io.save_model(tmp_path / "nan.npz", state, config, {"metrics": {"loss": np.nan}})
    with pytest.raises(models.ModelFileError, match="NaN or infinite"):
        models.load(bad)
    assert '"loss": null' in bad.with_suffix(".json").read_text()  # strict JSON, not NaN


def test_predict_streams_in_batches(env: dict[str, str], trained: Path, data: Path) -> None:
    images = sorted(str(p) for p in data.rglob("*.png"))
    assert len(images) > 32  # more than one batch
    proc = run(env, "predict", "--weights", str(trained), *images)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == images


@pytest.mark.parametrize(
    ("out", "words"),
    [("", "must name a model file"), ("/etc/passwd/model", "cannot write into")],
)
def test_bad_out_is_refused_before_any_work(
    env: dict[str, str], data: Path, out: str, words: str
) -> None:
    proc = run(env, "train", "--data", str(data), "--out", out, *TINY)
    assert words in assert_clean_error(proc)


def test_out_that_is_a_folder_is_refused(env: dict[str, str], data: Path, tmp_path: Path) -> None:
    (tmp_path / "model.npz").mkdir()
    proc = run(env, "train", "--data", str(data), "--out", str(tmp_path / "model"), *TINY)
    assert "is a folder" in assert_clean_error(proc)


def test_overwriting_a_model_needs_force_and_one_run_at_a_time(
    env: dict[str, str], data: Path, trained: Path, tmp_path: Path
) -> None:
    out = tmp_path / "again"
    out.with_suffix(".npz").write_bytes(trained.read_bytes())
    args = ["train", "--data", str(data), "--out", str(out), "--epochs", "1", *TINY]
    assert "add --force" in assert_clean_error(run(env, *args))
    out.with_suffix(".lock").write_text("12345\n")  # another run holds it
    assert "another run is writing" in assert_clean_error(run(env, *args, "--force"))
    out.with_suffix(".lock").unlink()
    stale = tmp_path / ".again.npz.0123456789ab.tmp"  # a write killed mid-way
    stale.write_bytes(b"half")
    proc = run(env, *args, "--force")
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists() and not out.with_suffix(".lock").exists()
    card = json.loads(out.with_suffix(".json").read_text())
    assert "--force" in card["command"]


def test_unreadable_files_are_counted_once(env: dict[str, str], tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", n_per_class=12, side=16)
    (root / "hot_dog" / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "m"
    proc = run(env, "train", "--data", str(root), "--out", str(out), "--epochs", "1", *TINY)
    assert proc.returncode == 0, proc.stderr
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["data"]["n_skipped"] == 1 and len(card["data"]["skipped"]) == 1
    assert "skipped" not in card["data"]["train"] and "skipped" not in card["data"]["val"]


@pytest.mark.parametrize("case", ["a model", "its own output", "not a file", "not a checkpoint"])
def test_a_checkpoint_path_that_is_not_a_checkpoint_is_refused_before_any_work(
    env: dict[str, str], trained: Path, data: Path, tmp_path: Path, case: str
) -> None:
    """--checkpoint names a file the run overwrites every epoch and deletes at the end."""
    model = tmp_path / "precious.npz"
    model.write_bytes(trained.read_bytes())
    notes = tmp_path / "notes.npz"
    notes.write_bytes(b"not a checkpoint")
    out = tmp_path / "new"
    checkpoint = {
        "a model": model,
        "its own output": out.with_suffix(".npz"),
        "not a file": tmp_path,
        "not a checkpoint": notes,
    }[case]
    before = {p: p.read_bytes() for p in (model, notes)}
    proc = run(env, "train", "--data", str(data), "--out", str(out), "--epochs", "1", *TINY,
               "--checkpoint", str(checkpoint))  # fmt: skip
    assert "checkpoint" in assert_clean_error(proc)
    assert {p: p.read_bytes() for p in (model, notes)} == before
    assert not out.with_suffix(".npz").exists()


def test_a_crafted_file_name_cannot_forge_a_result_line(
    env: dict[str, str], trained: Path, data: Path, tmp_path: Path
) -> None:
    import shutil

    hotdog = data / "alpha" / "hot_dog" / "hot_dog_000.png"
    forged = tmp_path / "cat.jpg\thotdog\t0.9999\nreal.jpg"
    shutil.copy(hotdog, forged)
    proc = run(env, "predict", "--weights", str(trained), str(forged))
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    name, label, p = line.split("\t")
    assert name == str(tmp_path / "cat.jpg\\thotdog\\t0.9999\\nreal.jpg")
    assert label in ("hotdog", "not_hotdog") and re.fullmatch(r"[01]\.\d{4}", p)
