"""What "How it works" shows a curious reader: one neuron's graph, and a network in plain rows.

The app draws these and imports ``models`` only; the engine behind them lives in ``micrograd``.
"""

from __future__ import annotations

from typing import Any

from micrograd.engine import Value
from micrograd.viz import draw_dot
from models.architectures import LITE0_STAGES


def neuron_graph() -> str:
    """DOT source of one neuron, ``tanh(x1*w1 + x2*w2 + b)``, after ``backward()``: each box
    holds a value and the gradient of the output with respect to it (Karpathy's example)."""
    x1, x2 = Value(2.0, label="x1"), Value(0.0, label="x2")
    w1, w2 = Value(-3.0, label="w1"), Value(1.0, label="w2")
    b = Value(6.8813735870195432, label="b")
    x1w1, x2w2 = x1 * w1, x2 * w2
    x1w1.label, x2w2.label = "x1·w1", "x2·w2"
    s = x1w1 + x2w2
    s.label = "sum"
    n = s + b
    n.label = "n"
    out = n.tanh()
    out.label = "out"
    out.backward()
    return draw_dot(out, rankdir="TB", fontsize=20)


def architecture_rows(config: dict[str, Any], size: int) -> list[dict[str, str]]:
    """A network's config (``models.architectures``) as a short table a non-expert can read:
    one row per stage, ``{"step", "what it does", "output"}``, for ``size x size`` inputs.
    An unknown or malformed config gives no rows (the page shows the raw config instead)."""
    try:
        kind = config.get("type")
        classes = int(config.get("num_classes", 2))
        if kind == "efficientnet_lite":
            return _effnet_rows(config, size, classes)
        if kind == "resnet":
            return _resnet_rows(config, size, classes)
        if kind == "mlp":
            return _mlp_rows(config, classes)
    except (AttributeError, KeyError, TypeError, ValueError):
        pass
    return []


def _row(step: str, what: str, output: str) -> dict[str, str]:
    return {"step": step, "what it does": what, "output": output}


def _grid(channels: int, side: int) -> str:
    return f"{channels} maps of {side}×{side}"


def _scores(classes: int) -> dict[str, str]:
    return _row(
        "decide",
        "averages each map to one number, then weighs them into scores",
        f"{classes} scores (not hotdog, hotdog)",
    )


def _effnet_rows(config: dict[str, Any], size: int, classes: int) -> list[dict[str, str]]:
    side = (size + 1) // 2
    stem = int(config.get("stem", 32))
    rows = [_row("look", "3×3 filters over the pixels, every 2nd position", _grid(stem, side))]
    for i, (repeats, kernel, stride, _, cout) in enumerate(config.get("stages") or LITE0_STAGES):
        side = (side + int(stride) - 1) // int(stride)
        shrink = ", halving the grid" if int(stride) == 2 else ""
        blocks = f"{repeats} block{'s' if int(repeats) > 1 else ''}"
        what = (
            f"{blocks} of {kernel}×{kernel} filters (each block widens, filters, narrows){shrink}"
        )
        rows.append(_row(f"stage {i + 1}", what, _grid(int(cout), side)))
    head = int(config.get("head", 1280))
    rows.append(_row("combine", "1×1 filters mixing every map", _grid(head, side)))
    return [*rows, _scores(classes)]


def _resnet_rows(config: dict[str, Any], size: int, classes: int) -> list[dict[str, str]]:
    side = (size + 1) // 2
    channels = [int(c) for c in config["channels"]]
    stem = int(config["stem"])
    rows = [_row("look", "3×3 filters over the pixels, halving the grid", _grid(stem, side))]
    for i, c in enumerate(channels):
        if i > 0:
            side = (side + 1) // 2
        shrink = "halves the grid, then " if i > 0 else ""
        what = f"{shrink}two 3×3 filter layers with a shortcut around them"
        rows.append(_row(f"stage {i + 1}", what, _grid(c, side)))
    return [*rows, _scores(classes)]


def _mlp_rows(config: dict[str, Any], classes: int) -> list[dict[str, str]]:
    rows = [
        _row(
            "flatten",
            "lays the gray pixels out in one long row",
            f"{int(config['in_features'])} numbers",
        )
    ]
    for i, h in enumerate(config["hidden"]):
        rows.append(_row(f"layer {i + 1}", "each neuron weighs every input number", f"{h} numbers"))
    rows.append(_row("decide", "weighs the last layer into scores", f"{classes} scores"))
    return rows
