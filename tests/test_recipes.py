"""``training.recipes``: presets resolve into a plan before any work, and refuse what cannot
train (no data is read, nothing is trained here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.architectures import LITE2_STAGES, build
from models.io import save_model
from training.pretrained import VARIANTS
from training.recipes import PRESETS, RecipeError, TrainOptions, plan


def options(tmp_path: Path, **kwargs: object) -> TrainOptions:
    return TrainOptions(data=[str(tmp_path)], out=str(tmp_path / "m"), **kwargs)  # type: ignore[arg-type]


def test_a_preset_fills_what_is_not_given_and_a_given_value_wins(tmp_path: Path) -> None:
    p = plan(options(tmp_path, model="cnn"))
    assert p.config.epochs == PRESETS["cnn"].train["epochs"] and p.preprocess.size == 64
    p = plan(options(tmp_path, model="cnn", epochs=2, size=48))
    assert p.config.epochs == 2 and p.preprocess.size == 48
    assert p.out == tmp_path / "m.npz" and p.checkpoint == tmp_path / "m.ckpt.npz"


def imported(tmp_path: Path, variant: str) -> Path:
    """A stand-in for an imported ImageNet network (random weights, the real architecture)."""
    v = VARIANTS[variant]
    net = build({**v.architecture, "num_classes": 2})
    config = {
        "architecture": {**v.architecture, "num_classes": 2},
        "preprocess": v.preprocess.to_dict(),
    }
    return save_model(tmp_path / f"{variant}.npz", net.state_dict(), config)


@pytest.mark.parametrize(
    ("preset", "variant", "size"),
    [("effnet", "efficientnet-lite0", 224), ("effnet-lite2", "efficientnet-lite2", 260)],
)
def test_each_fine_tuning_preset_feeds_its_own_imagenet_network(
    tmp_path: Path, preset: str, variant: str, size: int
) -> None:
    weights = imported(tmp_path, variant)
    p = plan(options(tmp_path, model=preset, pretrained=str(weights)))
    assert p.preprocess.size == size and p.preset.pretrained is VARIANTS[variant]
    assert p.finetune is not None and p.finetune.pretrained == str(weights)
    assert p.finetune.views == 5 and p.finetune.trainable_blocks == 2


def test_without_imported_weights_the_preset_says_which_to_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOTDOG_CACHE_DIR", str(tmp_path / "empty-cache"))
    with pytest.raises(RecipeError, match="import-weights efficientnet-lite2"):
        plan(options(tmp_path, model="effnet-lite2"))


def test_lite2_is_lite0_wider_and_deeper() -> None:
    lite0 = [row for row in build({"type": "efficientnet_lite"}).blocks]
    assert len(lite0) == 16 and sum(r[0] for r in LITE2_STAGES) == 21
    assert np.all(
        [b >= a for a, b in zip((1, 2, 2, 3, 3, 4, 1), (r[0] for r in LITE2_STAGES), strict=True)]
    )


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"model": "transformer"}, "unknown model"),
        ({"model": "cnn", "size": 4096}, "size"),
        ({"model": "cnn", "epochs": 0}, "epochs"),
    ],
)
def test_what_cannot_train_is_refused_before_any_work(
    tmp_path: Path, kwargs: dict, words: str
) -> None:
    with pytest.raises(RecipeError, match=words):
        plan(options(tmp_path, **kwargs))


def test_the_train_command_takes_its_defaults_from_the_settings_types() -> None:
    """One place per default: what ``python -m training train`` uses when an option is left
    out is ``TrainOptions``' default, itself ``TrainConfig``'s where the two share a setting."""
    from dataclasses import fields

    from training.cli import build_parser
    from training.loop import OPTIMIZERS, TrainConfig

    args = build_parser().parse_args(["train", "--data", "d", "--out", "m"])
    defaults = {f.name: f.default for f in fields(TrainOptions)}
    for name in (
        "model",
        "optimizer",
        "min_lr",
        "grad_clip",
        "seed",
        "val_fraction",
        "patience",
        "notes",
        "epochs",
        "lr",
        "batch_size",
        "source_power",
    ):
        assert getattr(args, name) == defaults[name], name
    config = {f.name: f.default for f in fields(TrainConfig)}
    assert all(defaults[n] == config[n] for n in ("optimizer", "min_lr", "seed", "patience"))
    optimizer = next(
        a
        for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
        if a.dest == "optimizer"
    )
    assert tuple(optimizer.choices) == OPTIMIZERS


@pytest.mark.parametrize(
    ("architecture", "words"),
    [
        ({"type": "resnet", "stem": 0, "channels": [8]}, "positive integer"),
        ({"type": "resnet", "stem": 8, "channels": [8], "dropout": 2}, "dropout"),
        ({"type": "mlp", "in_features": 100, "hidden": [8]}, "takes in_features 3072"),
        ({"type": "resnet", "stem": 8, "channels": "wide"}, "must be a list"),
    ],
)
def test_an_architecture_that_cannot_train_is_refused_before_any_decoding(
    tmp_path: Path, architecture: dict, words: str
) -> None:
    with pytest.raises(RecipeError, match=words):
        plan(options(tmp_path, model="cnn", architecture=architecture, size=32))


def test_names_and_folders_that_cannot_be_written_are_refused_before_any_work(
    tmp_path: Path,
) -> None:
    with pytest.raises(RecipeError, match="too long for a file name"):
        plan(TrainOptions(data=[str(tmp_path)], out=str(tmp_path / ("m" * 240))))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(RecipeError, match="--checkpoint: cannot write into"):
        plan(options(tmp_path, checkpoint=str(blocker / "sub" / "run.ckpt.npz")))
