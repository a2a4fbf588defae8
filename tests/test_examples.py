"""The runnable examples do what their docstrings promise."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from examples import and_gate, hotdogs_on_values, moons
from tests.tiny_data import write_image_folder


@pytest.fixture
def frozen_heap() -> Iterator[None]:
    """Keep the garbage collector off the objects earlier tests left (PyTorch's, mostly).

    A scalar training step allocates some 10**5 graph nodes, so collections run often, and each
    full one walks the whole heap: in a session that imported torch, that would triple the
    demo's run time. The demo in a fresh interpreter never pays this.
    """
    gc.freeze()
    yield
    gc.unfreeze()


def test_make_moons_shapes_and_labels():
    X, y = moons.make_moons(101, noise=0.1, seed=3)
    assert X.shape == (101, 2)
    assert y.shape == (101,)
    assert sorted(set(y.tolist())) == [0, 1]
    assert int(y.sum()) == 51


@pytest.mark.slow
def test_moons_demo_reaches_full_training_accuracy(capsys, frozen_heap):
    # Karpathy's demo (100 steps, decaying learning rate) on 60 points rather than 100: the
    # same result in about half the time.
    accuracy = moons.main(n_samples=60, seed=1337)
    assert accuracy == 1.0
    out = capsys.readouterr().out
    assert "step 0 loss" in out and "step 99 loss" in out


def test_and_gate_learns_the_truth_table(capsys):
    table = and_gate.main()
    for (x1, x2), p in table:
        expected = float(x1 == 1.0 and x2 == 1.0)
        assert abs(p - expected) < 0.1, f"AND({x1}, {x2}) = {p}"
    assert " 1  1 |" in capsys.readouterr().out


def test_hotdogs_on_values_trains_the_scalar_engine_on_photos(
    capsys, frozen_heap, tmp_path, monkeypatch
):
    monkeypatch.setenv("HOTDOG_CACHE_DIR", str(tmp_path / "cache"))
    data = write_image_folder(tmp_path / "data", n_per_class=20, side=12)
    metrics = hotdogs_on_values.main(["--data", str(data), "--size", "4", "--epochs", "10"])
    assert metrics["balanced_accuracy"] > 0.8  # reddish hotdogs, bluish others: easy
    out = capsys.readouterr().out
    assert "MLP(16, [16, 1])" in out and "images/second" in out
