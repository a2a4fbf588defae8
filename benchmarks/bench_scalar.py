"""Scalar engine speed: our ``Value`` MLP against Karpathy's original micrograd, in one run.

Both engines run the same step of Karpathy's moons demo: an ``MLP(2, [16, 16, 1])`` with the same
initial weights scores a batch of moons points, the SVM max-margin loss is formed, and
``backward()`` fills every gradient. The figure is the median wall time of that forward+backward
over several repeats.

Karpathy's micrograd is fetched from PyPI (``pip download micrograd==0.1.0``, cached in the
temporary directory) and loaded by file path under the module name ``karpathy_micrograd``, so it
never shadows this repository's ``micrograd`` package. Without network access its figures are
``null``.

Usage::

    python benchmarks/bench_scalar.py [--batch 100] [--repeats 7] [--json]

With ``--json`` the last line of stdout is one JSON object: ``{"ours_ms", "karpathy_ms", "ratio"}``
where ``ratio = ours_ms / karpathy_ms`` (below 1 means ours is faster).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

# The repository is not an installed package: make `micrograd` importable when run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples.moons import make_moons
from micrograd import engine as our_engine
from micrograd import nn as our_nn

KARPATHY_VERSION = "0.1.0"
CACHE_DIR = Path(tempfile.gettempdir()) / f"karpathy-micrograd-{KARPATHY_VERSION}"


def load_karpathy() -> tuple[ModuleType, ModuleType] | None:
    """Return Karpathy's ``(engine, nn)`` modules, downloading the wheel once; None if offline."""
    package_dir = CACHE_DIR / "micrograd"
    if not (package_dir / "nn.py").is_file():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--dest", str(CACHE_DIR), f"micrograd=={KARPATHY_VERSION}"]  # fmt: skip
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"could not download Karpathy's micrograd: {exc}", file=sys.stderr)
            return None
        wheels = sorted(CACHE_DIR.glob(f"micrograd-{KARPATHY_VERSION}-*.whl"))
        if not wheels:
            print("pip download produced no micrograd wheel", file=sys.stderr)
            return None
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extractall(CACHE_DIR, [n for n in wheel.namelist() if n.startswith("micrograd/")])

    engine = _load_module("karpathy_micrograd.engine", package_dir / "engine.py")
    # Karpathy's nn.py says `from micrograd.engine import Value`: while it executes, point that
    # name at his engine, then put ours back.
    saved = {name: sys.modules.get(name) for name in ("micrograd", "micrograd.engine")}
    shim = ModuleType("micrograd")
    shim.engine = engine  # type: ignore[attr-defined]
    sys.modules.update({"micrograd": shim, "micrograd.engine": engine})
    try:
        nn = _load_module("karpathy_micrograd.nn", package_dir / "nn.py")
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return engine, nn


def _load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def moons_step(value_cls: Any, model: Any, xs: list[list[float]], ys: list[float]) -> float:
    """Forward and backward of Karpathy's demo loss (SVM max-margin + L2) on one batch.

    Returns the loss as a number, so the graph is released when the step ends, as in a training
    loop (holding it would make every later garbage collection walk it).
    """
    inputs = [[value_cls(x) for x in row] for row in xs]
    scores = [model(row) for row in inputs]
    losses = [(1 + -y * score).relu() for y, score in zip(ys, scores, strict=True)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = 1e-4 * sum(p * p for p in model.parameters())
    total = data_loss + reg_loss
    model.zero_grad()
    total.backward()
    return total.data


def time_engine(
    engine: ModuleType, nn: ModuleType, xs: list[list[float]], ys: list[float], repeats: int
) -> tuple[float, float]:
    """Median milliseconds of one forward+backward, and the loss (to check both engines agree)."""
    random.seed(0)  # same initial weights for every engine
    model = nn.MLP(2, [16, 16, 1])
    loss = moons_step(engine.Value, model, xs, ys)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        moons_step(engine.Value, model, xs, ys)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times), loss


def main(argv: list[str] | None = None) -> dict[str, float | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100, help="moons points per step")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (median is kept)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)

    X, y = make_moons(args.batch, noise=0.1, seed=1337)
    xs, ys = X.tolist(), (2.0 * y - 1.0).tolist()

    ours_ms, ours_loss = time_engine(our_engine, our_nn, xs, ys, args.repeats)
    print(f"ours      {ours_ms:8.2f} ms  (loss {ours_loss:.6f})")
    karpathy_ms = ratio = None
    karpathy = load_karpathy()
    if karpathy is not None:
        karpathy_ms, karpathy_loss = time_engine(*karpathy, xs, ys, args.repeats)
        ratio = ours_ms / karpathy_ms
        print(f"karpathy  {karpathy_ms:8.2f} ms  (loss {karpathy_loss:.6f})")
        print(f"ratio ours/karpathy {ratio:.3f}")
    result = {"ours_ms": ours_ms, "karpathy_ms": karpathy_ms, "ratio": ratio}
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
