"""benchmarks/bench_engine.py: its JSON contract, and that its PyTorch mirror is our network."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from micrograd import Tensor, no_grad
from models.architectures import HOTDOG_CNN, build
from tests.conftest import optional_import

pytestmark = pytest.mark.slow  # runs the benchmark in subprocesses

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_engine.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_engine", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


@pytest.fixture(scope="module")
def quick_run() -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return run, json.loads(run.stdout.strip().splitlines()[-1])


def test_json_contract(quick_run: tuple[Any, dict[str, Any]]) -> None:
    _, result = quick_run
    torch_present = importlib.util.find_spec("torch") is not None
    assert is_number(result["cnn_step_ms"]) and result["cnn_step_ms"] > 0
    assert is_number(result["infer_ms"]) and result["infer_ms"] > 0
    if torch_present:
        assert is_number(result["torch_cnn_step_ms"]) and result["torch_cnn_step_ms"] > 0
        ratio = result["cnn_step_ms"] / result["torch_cnn_step_ms"]
        assert result["ratio"] == pytest.approx(ratio)
        assert result["max_logit_diff"] < 1e-3
    else:
        assert result["torch_cnn_step_ms"] is None and result["ratio"] is None
    for key in ("peak_mem_mb", "torch_peak_mem_mb", "numpy_traced_peak_mb", "scalar_ms"):
        assert result[key] is None or is_number(result[key]), key
    mine, theirs = result["peak_mem_mb"], result["torch_peak_mem_mb"]  # null with --quick
    if mine is None or theirs is None:
        assert result["mem_ratio"] is None
    else:
        assert result["mem_ratio"] == pytest.approx(mine / theirs)
    assert result["batch"] == 4 and result["image_size"] == 64
    assert isinstance(result["threads"], int) and result["threads"] >= 1
    for ours, theirs, ratio in (
        ("effnet_infer_ms", "torch_effnet_infer_ms", "effnet_infer_ratio"),
        ("effnet_step_ms", "torch_effnet_step_ms", "effnet_step_ratio"),
    ):
        assert is_number(result[ours]) and result[ours] > 0
        if torch_present:
            assert result[ratio] == pytest.approx(result[ours] / result[theirs])
        else:
            assert result[theirs] is None and result[ratio] is None


def test_ratios_are_null_where_a_figure_is_missing() -> None:
    ratio_of = load_bench().ratio_of
    assert ratio_of(215.0, 190.0) == pytest.approx(215 / 190)
    assert ratio_of(None, 190.0) is None and ratio_of(215.0, None) is None
    assert ratio_of(215.0, 0.0) is None


def test_blas_overrides_are_removed(quick_run: tuple[Any, dict[str, Any]]) -> None:
    run, result = quick_run
    overrides = [k for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ]
    if overrides:
        assert all(k in result["blas_overrides_removed"] for k in overrides)
        assert "re-ran without" in run.stdout
    else:
        assert result["blas_overrides_removed"] is None


def test_torch_mirror_is_the_same_network() -> None:
    torch = optional_import("torch")
    bench = load_bench()
    ours = build(HOTDOG_CNN)
    mirror = bench.torch_mirror(HOTDOG_CNN, torch)
    theirs = {k: tuple(v.shape) for k, v in mirror.state_dict().items()}
    mine = {k: v.shape for k, v in ours.state_dict().items()}
    assert {k: v for k, v in theirs.items() if not k.endswith("num_batches_tracked")} == mine
    assert [n for n, _ in mirror.named_parameters()] == [n for n, _ in ours.named_parameters()]
    # same weights, same function: in eval mode and for a training-mode forward without dropout
    images = np.random.default_rng(0).standard_normal((3, 3, 40, 40), dtype=np.float32)
    assert bench.max_logit_difference(images, torch) < 1e-4
    bench.copy_weights(ours, mirror, torch)
    ours.dropout.p = mirror.dropout.p = 0.0
    with no_grad():
        a = ours(Tensor(images)).data
    b = mirror(torch.from_numpy(images)).detach().numpy()
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_step_memory_probe() -> None:
    """The probe (a subprocess in full runs) measures how far one step lifts the resident set:
    a number wherever Linux's /proc lets it reset the peak, for ours and for PyTorch."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("no /proc/self/clear_refs: the peak cannot be reset here")
    bench = load_bench()
    mb = bench.step_rss_mb("ours", 2, 16, threads=1)
    assert is_number(mb) and mb > 0, mb
    optional_import("torch")
    torch_mb = bench.step_rss_mb("torch", 2, 16, threads=1)
    assert is_number(torch_mb) and torch_mb > 0, torch_mb
