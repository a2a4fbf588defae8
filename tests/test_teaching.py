"""``models.teaching``: the neuron graph and the plain tables of "How it works"."""

from __future__ import annotations

import pytest

from models.architectures import HOTDOG_CNN, LITE0_STAGES, build
from models.teaching import architecture_rows, neuron_graph


def test_neuron_graph_is_karpathys_neuron_after_backward() -> None:
    dot = neuron_graph()
    assert dot.startswith("digraph") and "rankdir=TB" in dot
    assert "data 0.7071" in dot  # tanh(0.8814)
    assert "grad -1.5000" in dot  # d out / d x1 = w1 * (1 - tanh^2) = -3 * 0.5


def test_effnet_rows_follow_the_grid_down_to_7x7() -> None:
    rows = architecture_rows({"type": "efficientnet_lite", "num_classes": 2}, 224)
    assert [r["step"] for r in rows] == [
        "look",
        *[f"stage {i}" for i in range(1, len(LITE0_STAGES) + 1)],
        "combine",
        "decide",
    ]
    assert rows[0]["output"] == "32 maps of 112×112"
    assert rows[-2]["output"] == "1280 maps of 7×7"
    assert rows[-1]["output"] == "2 scores (not hotdog, hotdog)"


def test_resnet_and_mlp_rows() -> None:
    rows = architecture_rows(HOTDOG_CNN, 64)
    assert [r["output"] for r in rows[:4]] == [
        "32 maps of 32×32",
        "32 maps of 32×32",
        "64 maps of 16×16",
        "128 maps of 8×8",
    ]
    build(HOTDOG_CNN)  # the config the rows describe is a real one
    mlp = architecture_rows({"type": "mlp", "in_features": 1024, "hidden": [64, 32]}, 32)
    assert [r["output"] for r in mlp] == ["1024 numbers", "64 numbers", "32 numbers", "2 scores"]


@pytest.mark.parametrize("config", [{}, {"type": "transformer"}, {"type": "resnet"},
                                    {"type": "mlp", "in_features": "x", "hidden": 3}])  # fmt: skip
def test_unknown_or_broken_configs_give_no_rows(config: dict) -> None:
    assert architecture_rows(config, 64) == []
