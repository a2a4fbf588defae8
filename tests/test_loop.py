"""training.loop: learning, checkpoints, bit-exact resume, interruption, early stopping."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import models.io
from micrograd.nn import Module
from models.architectures import build
from models.io import load_arrays
from models.preprocess import PreprocessConfig
from tests.tiny_data import make_dataset
from training.loop import (
    Callback,
    CheckpointError,
    FitResult,
    ImageRows,
    TrainConfig,
    fit,
    rows_logits,
    score_logits,
)

pytestmark = pytest.mark.slow  # trains

ARCH = {"type": "resnet", "stem": 4, "channels": [8], "dropout": 0.3}
CONFIG = TrainConfig(
    epochs=3,
    batch_size=8,
    lr=3e-3,
    warmup_epochs=0.5,
    label_smoothing=0.05,
    grad_clip=5.0,
    seed=7,
    preprocess=PreprocessConfig(size=16).to_dict(),
)


@pytest.fixture(scope="module")
def train() -> Any:
    data = make_dataset(40, seed=0)
    data.sources = np.array(["big"] * 30 + ["small"] * 10)
    return data


@pytest.fixture(scope="module")
def val() -> Any:
    return make_dataset(16, seed=1)


def model() -> Module:
    return build(ARCH)


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_train_start(self, info: dict[str, Any]) -> None:
        self.events.append(("start", info))

    def on_epoch_start(self, epoch: int, steps: int) -> None:
        self.events.append(("epoch_start", epoch, steps))

    def on_batch_end(self, step_in_epoch: int, steps: int, loss: float, acc: float) -> None:
        self.events.append(("batch", step_in_epoch, steps, loss, acc))

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        self.events.append(("epoch_end", epoch, record))

    def on_train_end(self, result: FitResult) -> None:
        self.events.append(("end", result))


class StopAt(Callback):
    """Raise KeyboardInterrupt (Ctrl-C) at a given batch of a given epoch."""

    def __init__(self, epoch: int, step: int) -> None:
        self.target, self.epoch = (epoch, step), 0

    def on_epoch_start(self, epoch: int, steps: int) -> None:
        self.epoch = epoch

    def on_batch_end(self, step_in_epoch: int, steps: int, loss: float, acc: float) -> None:
        if (self.epoch, step_in_epoch) == self.target:
            raise KeyboardInterrupt


def assert_same_state(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def without_seconds(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_fit_learns_and_reports(train: Any, val: Any) -> None:
    net, rec = model(), Recorder()
    result = fit(net, train, val, CONFIG, callbacks=[rec])

    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    first, last = result.history[0], result.history[-1]
    assert last["train_loss"] < first["train_loss"]
    assert result.best_metrics["accuracy"] >= 0.75
    assert set(last) == {
        "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
        "val_balanced_accuracy", "val_roc_auc", "lr", "seconds",
    }  # fmt: skip
    json.dumps(result.history, allow_nan=False)
    json.dumps(result.best_metrics, allow_nan=False)

    # The model ends in eval mode holding the best epoch's weights.
    assert not net.training
    again = score_logits(val.labels, rows_logits(net, ImageRows(val, PreprocessConfig(size=16))))
    assert again["loss"] == pytest.approx(result.best_metrics["loss"], rel=1e-6)

    kinds = [e[0] for e in rec.events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert rec.events[0][1]["steps_per_epoch"] == 5 and rec.events[0][1]["start_epoch"] == 0
    assert kinds.count("batch") == 15 and kinds.count("epoch_end") == 3
    batch = next(e for e in rec.events if e[0] == "batch")
    assert batch[1:3] == (1, 5)


@pytest.mark.parametrize(
    "settings", [{}, {"balanced": False}, {"source_power": 0.0, "optimizer": "sgd"}]
)
def test_interrupted_and_resumed_equals_uninterrupted(
    train: Any, val: Any, tmp_path: Path, settings: dict[str, Any]
) -> None:
    config = replace(CONFIG, **settings)
    straight = model()
    expected = fit(straight, train, val, config)

    # Ctrl-C in the middle of epoch 2: the checkpoint holds epoch 1.
    ckpt = tmp_path / "run.ckpt.npz"
    with pytest.raises(KeyboardInterrupt):
        fit(model(), train, val, config, callbacks=[StopAt(2, 3)], checkpoint=ckpt)
    assert json.loads(str(load_arrays(ckpt)["meta"]))["epoch"] == 1

    resumed, rec = model(), Recorder()
    result = fit(resumed, train, val, config, callbacks=[rec], checkpoint=ckpt, resume=True)

    assert rec.events[0][1]["start_epoch"] == 1
    assert_same_state(straight.state_dict(), resumed.state_dict())
    assert without_seconds(result.history) == without_seconds(expected.history)
    assert result.best_epoch == expected.best_epoch


def test_stopping_between_epochs_and_resuming_twice(train: Any, val: Any, tmp_path: Path) -> None:
    straight = model()
    fit(straight, train, val, CONFIG)

    ckpt = tmp_path / "run.ckpt.npz"
    with pytest.raises(KeyboardInterrupt):
        fit(model(), train, val, CONFIG, callbacks=[StopAt(2, 1)], checkpoint=ckpt)
    with pytest.raises(KeyboardInterrupt):  # killed again, right after resuming
        fit(model(), train, val, CONFIG, [StopAt(3, 1)], checkpoint=ckpt, resume=True)
    resumed = model()
    fit(resumed, train, val, CONFIG, checkpoint=ckpt, resume=True)
    assert_same_state(straight.state_dict(), resumed.state_dict())

    # Resuming a finished run trains no further and restores the same best weights.
    done = model()
    result = fit(done, train, val, CONFIG, checkpoint=ckpt, resume=True)
    assert result.epochs_run == 3
    assert_same_state(straight.state_dict(), done.state_dict())


def test_failed_checkpoint_write_keeps_the_previous_one(
    train: Any, val: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = tmp_path / "run.ckpt.npz"
    real_fsync, calls = models.io.os.fsync, []

    def failing_fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:  # the second epoch's checkpoint, half written
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(models.io.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space"):
        fit(model(), train, val, CONFIG, checkpoint=ckpt)
    monkeypatch.undo()

    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt.npz"]  # no temporary file left
    assert json.loads(str(load_arrays(ckpt)["meta"]))["epoch"] == 1
    straight, resumed = model(), model()
    fit(straight, train, val, CONFIG)
    fit(resumed, train, val, CONFIG, checkpoint=ckpt, resume=True)
    assert_same_state(straight.state_dict(), resumed.state_dict())


def test_resume_refuses_other_settings_and_other_data(train: Any, val: Any, tmp_path: Path) -> None:
    ckpt = tmp_path / "run.ckpt.npz"
    with pytest.raises(KeyboardInterrupt):
        fit(model(), train, val, CONFIG, callbacks=[StopAt(2, 1)], checkpoint=ckpt)

    with pytest.raises(CheckpointError, match=r"other settings \(lr: 0.003 -> 0.01\)"):
        fit(model(), train, val, replace(CONFIG, lr=0.01), checkpoint=ckpt, resume=True)
    with pytest.raises(CheckpointError, match="other images"):
        fit(model(), train.subset(range(38)), val, CONFIG, checkpoint=ckpt, resume=True)
    other_arch = build({**ARCH, "channels": [6]})
    with pytest.raises(CheckpointError, match="does not match this model"):
        fit(other_arch, train, val, CONFIG, checkpoint=ckpt, resume=True)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        fit(model(), train, val, CONFIG, checkpoint=tmp_path / "nope.npz", resume=True)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a usable checkpoint"):
        fit(model(), train, val, CONFIG, checkpoint=tmp_path / "bad.npz", resume=True)


def test_early_stopping_restores_the_best_epoch(train: Any) -> None:
    # Validation labels are the opposite of what training teaches: the model gets worse on
    # them every epoch, so the first epoch stays the best and patience runs out.
    inverted = make_dataset(16, seed=1)
    inverted.labels = 1 - inverted.labels
    config = replace(CONFIG, epochs=8, patience=2, augment=None)
    net = model()
    result = fit(net, train, inverted, config)

    assert result.stopped_early
    assert result.epochs_run == result.best_epoch + 2 < 8
    again = score_logits(
        inverted.labels, rows_logits(net, ImageRows(inverted, PreprocessConfig(size=16)))
    )
    assert again["loss"] == pytest.approx(result.best_metrics["loss"], rel=1e-6)


def test_fit_without_validation_keeps_the_last_epoch(train: Any) -> None:
    config = replace(CONFIG, epochs=2, patience=1, optimizer="sgd", lr=0.05, balanced=False)
    result = fit(model(), train, None, config)
    assert result.best_epoch == 2 and result.best_metrics == {}
    assert result.history[-1]["val_loss"] is None
    assert not result.stopped_early


def test_config_checks() -> None:
    assert TrainConfig().to_dict()["preprocess"]["size"] == 64
    for bad in ({"epochs": 0}, {"batch_size": 1}, {"optimizer": "lbfgs"}, {"lr": 0.0},
                {"warmup_epochs": 11}, {"label_smoothing": 1.0}, {"patience": -1},
                {"preprocess": {"size": 0}}):  # fmt: skip
        with pytest.raises(ValueError):
            TrainConfig(**bad)


def test_wrong_image_size_is_refused(train: Any) -> None:
    with pytest.raises(ValueError, match="16px but the preprocessing expects 32px"):
        fit(model(), train, None, replace(CONFIG, preprocess=PreprocessConfig(32).to_dict()))


def test_a_batch_larger_than_the_data_is_the_whole_data(train: Any) -> None:
    """``--batch-size 3000`` on a few dozen photos trains on batches of all of them, in one
    step per epoch, instead of allocating for 3,000."""
    rec_steps: list[int] = []

    class Steps(Callback):
        def on_epoch_start(self, epoch: int, steps: int) -> None:
            rec_steps.append(steps)

    config = replace(CONFIG, epochs=1, batch_size=3000, augment=None)
    fit(model(), train, None, config, [Steps()])
    assert rec_steps == [1]
