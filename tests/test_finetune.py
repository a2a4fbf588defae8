"""Fine-tuning a pretrained EfficientNet-Lite on cached features (``training.finetune``), on a
tiny network that stands in for the ImageNet one, so it runs in seconds without the package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import models
from models.architectures import build
from models.io import save_model
from models.preprocess import PreprocessConfig
from tests.test_loop import StopAt
from tests.tiny_data import make_dataset, write_image_folder
from training.finetune import FinetuneSettings, finetune, load_pretrained
from training.loop import TrainConfig

pytestmark = pytest.mark.slow  # trains

ROOT = Path(__file__).resolve().parents[1]
TINY_LITE = {
    "type": "efficientnet_lite",
    "num_classes": 10,
    "stages": [[1, 3, 1, 1, 8], [1, 3, 2, 2, 8], [2, 5, 2, 2, 16]],
    "stem": 8,
    "head": 24,
    "dropout": 0.0,
}
PRE = PreprocessConfig(size=16, mean=(0.498,) * 3, std=(0.502,) * 3)
CONFIG = TrainConfig(
    epochs=3, batch_size=8, lr=3e-2, warmup_epochs=0.5, seed=0, preprocess=PRE.to_dict()
)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 'pretrained' tiny network: random weights, saved the way import-weights saves."""
    path = tmp_path_factory.mktemp("pretrained") / "tiny-lite.npz"
    net = build({**TINY_LITE, "seed": 7})
    config = {"architecture": TINY_LITE, "preprocess": PRE.to_dict(), "classes": "imagenet-1k"}
    return save_model(path, net.state_dict(), config)


def settings(pretrained: Path, **kwargs: Any) -> FinetuneSettings:
    return FinetuneSettings(
        pretrained=str(pretrained), trainable_blocks=1, views=2, dropout=0.0, **kwargs
    )


def run_finetune(pretrained: Path, cache: Path, **kwargs: Any) -> Any:
    train, val = make_dataset(48, size=16, cache_size=20), make_dataset(16, size=16, seed=1)
    return finetune(train, val, settings(pretrained), CONFIG, cache, **kwargs)


def test_loss_falls_and_only_the_top_trains(pretrained: Path, tmp_path: Path) -> None:
    start, _ = load_pretrained(pretrained, dropout=0.0, seed=0)
    net, architecture, result = run_finetune(pretrained, tmp_path)
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < losses[0], losses
    assert result.best_metrics["balanced_accuracy"] > 0.9
    before, after = start.state_dict(), net.state_dict()
    changed = {k for k in after if not np.array_equal(after[k], before[k])}
    assert {k.split(".")[0] for k in changed} == {"blocks", "head", "classifier"}
    assert all(k.startswith(("blocks.3.", "head.", "classifier.")) for k in changed), changed
    assert not any("running" in k for k in changed)  # BatchNorm statistics stay ImageNet's
    assert architecture["num_classes"] == 2 and architecture["stages"] == TINY_LITE["stages"]
    assert len(list(tmp_path.glob("features-*-view*.npy"))) == 3  # 2 train views + 1 val


def test_resume_after_a_kill_ends_with_the_same_weights(pretrained: Path, tmp_path: Path) -> None:
    straight, _, _ = run_finetune(pretrained, tmp_path)
    ckpt = tmp_path / "ckpt.npz"
    with pytest.raises(KeyboardInterrupt):
        run_finetune(pretrained, tmp_path, callbacks=[StopAt(2, 1)], checkpoint=ckpt)
    cached = {p: p.stat().st_mtime_ns for p in tmp_path.glob("features-*.npy")}
    resumed, _, result = run_finetune(pretrained, tmp_path, checkpoint=ckpt, resume=True)
    assert result.epochs_run == CONFIG.epochs
    for name, value in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], value, err_msg=name)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("features-*.npy")} == cached


def test_other_augmentation_gets_its_own_feature_cache(pretrained: Path, tmp_path: Path) -> None:
    data = make_dataset(16, size=16, cache_size=20)
    config = replace(CONFIG, epochs=1)
    finetune(data, None, settings(pretrained), config, tmp_path)
    finetune(data, None, settings(pretrained, augment={"hue": 0.0}), config, tmp_path)
    assert len(list(tmp_path.glob("features-*-view1.npy"))) == 2


def test_not_an_efficientnet_file_is_refused(tmp_path: Path) -> None:
    path = save_model(tmp_path / "cnn.npz", {}, {"architecture": {"type": "resnet"}})
    with pytest.raises(models.ModelFileError, match="not an EfficientNet-Lite"):
        load_pretrained(path, dropout=0.0, seed=0)


# ------------------------------------------------------------------------------ command line
def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOTDOG_CACHE_DIR": str(tmp_path / "cache"), "TQDM_DISABLE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=120,
    )


def test_effnet_preset_from_the_command_line(pretrained: Path, tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "data", n_per_class=12, side=24)
    out = tmp_path / "effnet"
    proc = cli(
        tmp_path, "train", "--data", str(data), "--model", "effnet", "--out", str(out),
        "--pretrained", str(pretrained), "--size", "16", "--epochs", "2", "--views", "2",
        "--trainable-blocks", "1", "--batch-size", "8", "--workers", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["pretrained"]["licence"] == "Apache-2.0"
    assert card["finetune"] == {
        "trainable_blocks": 1, "views": 2, "backbone_lr_scale": 0.1, "dropout": 0.2,
        "augment": {"scale": [0.4, 1.0], "rotation": 10.0, "hue": 0.03},
    }  # fmt: skip
    assert card["architecture"]["type"] == "efficientnet_lite"
    assert card["metrics"]["n"] == 4
    clf = models.load(out.with_suffix(".npz"))
    assert clf.preprocess.size == 16 and clf.preprocess.mean == (0.498,) * 3
    image = next((data / "hot_dog").iterdir())
    proc = cli(tmp_path, "predict", "--weights", str(out.with_suffix(".npz")), str(image))
    assert proc.returncode == 0, proc.stderr
    path, label, p = proc.stdout.strip().split("\t")
    assert path == str(image) and label in ("hotdog", "not_hotdog") and 0 <= float(p) <= 1
    proc = cli(tmp_path, "evaluate", "--weights", str(out) + ".npz", "--data", str(data), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["n"] == 24


def test_effnet_preset_without_pretrained_weights_says_what_to_run(tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "data", n_per_class=2, side=8)
    proc = cli(
        tmp_path, "train", "--data", str(data), "--model", "effnet", "--out",
        str(tmp_path / "m"), "--pretrained", str(tmp_path / "missing.npz"),
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "import-weights efficientnet-lite0" in proc.stderr
