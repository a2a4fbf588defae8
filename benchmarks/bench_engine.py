"""Engine speed: the shipped CNN on our Tensor engine against the same network in PyTorch.

Both engines train the architecture of ``models.architectures.HOTDOG_CNN`` (a small ResNet) on
one batch of 64 RGB 64x64 images, on the same cores with the same number of threads:

- ``cnn_step_ms`` / ``torch_cnn_step_ms``: one training step (forward, cross-entropy, backward,
  Adam update), the median over all timed steps (PyTorch sets up its kernels during its first
  two steps, which take seconds: warm-up steps are not timed). The PyTorch network is a
  mirror of ``models.architectures.ResNet`` built from the same config and loaded with the same
  weights (the run checks that both give the same logits).
- ``ratio``: ours / torch (above 1 means ours is slower).
- ``infer_ms``: one image, from a decoded PIL image to the hotdog probability (the serving
  path: ``models.load("hotdog_cnn").predict`` when a shipped model exists, otherwise
  ``models.preprocess.preprocess`` + an eval-mode forward under ``no_grad`` + softmax).
- ``peak_mem_mb`` / ``torch_peak_mem_mb``: how far one training step raises the resident set
  above what the model and the batch already use, each engine measured the same way in a fresh
  process of its own; ``numpy_traced_peak_mb`` is the peak of numpy allocations in our step
  (``tracemalloc``); ``mem_ratio``: ours / torch.
- ``effnet_infer_ms`` / ``torch_effnet_infer_ms`` / ``effnet_infer_ratio``: EfficientNet-Lite0
  (the pretrained model's network, random weights: speed does not depend on them) on one
  224 px image in eval mode, forward only, median; PyTorch runs ``benchmarks/torch_effnet.py``
  loaded with the same weights.
- ``effnet_step_ms`` / ``torch_effnet_step_ms`` / ``effnet_step_ratio``: its training step
  at batch 32, 224 px, every layer trainable and BatchNorm in training mode.
- ``scalar_*``: the scalar ``Value`` engine against Karpathy's micrograd, from
  ``benchmarks/bench_scalar.py`` when it is present.

How the timing is fair: each engine is timed alone in a fresh process, and the engines take
turns (``--rounds``, ours then PyTorch, twice by default), all times of an engine pooled.
Sharing one process would measure interference: PyTorch's OpenMP threads keep spinning for a
while after each of its steps and take the cores from the step of ours that follows (a quarter
of our ResNet step's time on two cores), and numpy's BLAS threads do the same to PyTorch.

Trade-offs the engine makes for these figures (see ``micrograd/functional.py``):

- Convolution is a sum of shifted matrix products over a zero-bordered channels-last layout
  (``Conv2d``): no im2col matrix is written or kept, at the price of computing the border rows
  too (1.06x the work of a 32x32 map, 1.27x of an 8x8 one). The weight gradient reads the
  input once per kernel offset and cache-sized block of rows instead of once from an im2col
  copy: it takes about 1.5x the forward's time.
- A conv keeps its zero-bordered input for the weight gradient (laying it out again in
  backward took 4% more time for 7% less memory); a depthwise conv pads its input again
  (its inputs are the largest activations of EfficientNet).
- ``Tensor.backward`` lets go of each activation once the walk is past it, as PyTorch does,
  so a step's memory falls during backward instead of peaking at its end.
- The products accumulate in place through scipy's BLAS ``gemm`` (``beta=1``): scipy comes
  with scikit-image; numpy's ``matmul`` cannot add into its output. All of a conv's products
  go through that one library: mixing numpy's and scipy's BLAS, whose idle threads spin for a
  while, made a two-thread step 2.4x slower.
- Depthwise convolution is one einsum over a strided view of every offset's window: numpy
  runs it as a multiply-accumulate loop along whole rows, 2-3x faster than an op per offset.
- BatchNorm is fused with the activation after it and works in cache-sized blocks over rows
  made wide (``ELEMENTWISE_BLOCK``, ``WIDE_ROW``): these ops are bound by memory traffic, so
  the aim is to read each activation as few times as possible.
- In eval mode a conv's BatchNorm is folded into the conv (``nn.ConvBN``, ``nn.conv_bn``):
  the kernels scaled per output channel, the shift as a bias that starts the products' sum
  (BLAS would zero the output first anyway) and the activation clipped in place: the
  BatchNorm's pass over the output and its array are gone. The fold is redone each call, from
  tensor ops so gradients stay exact (fine-tuning trains through frozen BatchNorms). Where a
  layer has more weights per output channel than output pixels (1x1 convs on a 7x7 map of
  one image), scaling the kernels would cost more than the pass it saves, and the two layers
  run as they are. EfficientNet's one-image eval went from 22 to 19.5 ms (fastest of three
  runs each, two threads), fine-tuning's feature extraction 14% and its training step 19%
  faster.
- Everything stays float32 (only per-channel sums accumulate in float64).
- Tried and dropped: a thread pool for the elementwise sweeps (memory-bound here: the
  BatchNorm forward of EfficientNet's largest layer went from 95 to 80 ms on two threads, its
  backward not at all, and the pool's threads competed with BLAS's), a horizontal im2col (three
  kernel columns per copy) for the forward (slower than nine shifted products), the same copy
  plus a three-offset gradient copy for the weight gradient (no faster on two threads), the
  nine offsets' products as one im2col product (60 vs 82 GFLOP/s at 32 channels: BLAS packs
  its operands either way, and the copy comes on top), threads over row blocks (scipy's
  ``gemm`` holds the GIL; numpy's ``matmul`` lets it go but cannot add into its output).

Why the residual CNN's step stays about 1.5x PyTorch's: on one thread its BLAS products alone
take about 380 ms (forward 118, input gradient 113, weight gradient 146 ms: tall-skinny
products, 40-60 GFLOP/s), more than PyTorch's whole step (330 ms; its oneDNN kernels run the
step's 25.5 GFLOP at 78 GFLOP/s, batch norm and all). The other ~110 ms (batch norm, copies,
elementwise ops) run on one core whatever the thread count, which is why two threads widen
the gap. Timed layer by layer (one conv's forward and backward alone, one thread), PyTorch's
3x3 convs at 64 and 128 channels run at 102-114 GFLOP/s: faster than numpy's BLAS multiplies
any matrices here (104 GFLOP/s for 2048x2048 squares, 94-96 at these layers' shapes, 77 at 32
channels). Even at that best rate for every product, with no copy and no border, the step's
products would take 266 ms, and the step (with its other 117 ms) 1.14-1.18x PyTorch's
on one thread: at the target, with no room for the shapes BLAS runs slower (40-77 GFLOP/s).

numpy's OpenBLAS can be forced onto older kernels by ``OPENBLAS_CORETYPE`` (and tuned by
``OPENBLAS_L2_SIZE``), while PyTorch always uses its own. When either variable is set, the
script re-runs itself without them so the comparison is between each library's best kernels,
and says so.

Usage::

    python benchmarks/bench_engine.py [--batch 64] [--size 64] [--repeats 5] [--rounds 2]
                                      [--json] [--quick]
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_engine.py   # both engines on one thread

PyTorch gets as many threads as numpy's BLAS has. On a machine busy with other work, use one
thread: multi-threaded BLAS kernels wait for every thread to get a core, and stall.

With ``--json`` the last line of stdout is one JSON object holding every figure above (``null``
where a figure could not be measured, e.g. without PyTorch).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The repository is not an installed package: make it importable when run as a script.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import micrograd.functional as F  # noqa: E402
from micrograd import Tensor, no_grad  # noqa: E402
from micrograd.backend import cpu_count  # noqa: E402
from micrograd.nn import Module  # noqa: E402
from micrograd.optim import Adam  # noqa: E402
from models.architectures import HOTDOG_CNN, build  # noqa: E402

BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
REEXEC_MARKER = "BENCH_ENGINE_REMOVED"  # set for the re-executed process: what was removed
SCALAR_BENCH = ROOT / "benchmarks" / "bench_scalar.py"


# ---------------------------------------------------------------------- environment
def reexec_without_blas_overrides() -> None:
    """Replace this process by a fresh run of the same command without ``BLAS_OVERRIDES``."""
    removed = [f"{k}={os.environ[k]}" for k in BLAS_OVERRIDES if k in os.environ]
    if not removed:
        return
    env = {k: v for k, v in os.environ.items() if k not in BLAS_OVERRIDES}
    env[REEXEC_MARKER] = " ".join(removed)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def _openblas_call(name: str, restype: Any) -> Any:
    """Call ``openblas_<name>()`` in the OpenBLAS that numpy loaded (None if not found)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return None
    for path in sorted(paths):
        with contextlib.suppress(OSError):
            lib = ctypes.CDLL(path)
            for symbol in (f"scipy_openblas_{name}64_", f"openblas_{name}64_", f"openblas_{name}"):
                fn = getattr(lib, symbol, None)
                if fn is not None:
                    fn.restype = restype
                    return fn()
    return None


def blas_info() -> dict[str, Any]:
    """numpy's BLAS: ``{"library", "kernel", "threads"}`` (values None when unknown)."""
    try:
        from threadpoolctl import threadpool_info  # type: ignore[import-not-found]

        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                return {
                    "library": pool.get("internal_api"),
                    "kernel": pool.get("architecture"),
                    "threads": pool.get("num_threads"),
                }
    except ImportError:
        pass
    kernel = _openblas_call("get_corename", ctypes.c_char_p)
    threads = _openblas_call("get_num_threads", ctypes.c_int)
    return {
        "library": "openblas" if kernel is not None else None,
        "kernel": kernel.decode() if kernel is not None else None,
        "threads": threads,
    }


def optional_torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


# ---------------------------------------------------------------------- the two networks
def torch_mirror(config: dict[str, Any], torch: Any) -> Any:
    """``models.architectures.ResNet`` for ``config``, in PyTorch, with the same parameter and
    buffer names, so our ``state_dict`` loads into it one to one."""
    if config.get("type") != "resnet":
        raise ValueError("the PyTorch mirror covers the 'resnet' architecture only")
    tnn = torch.nn

    def conv_bn_relu(cin: int, cout: int, stride: int) -> Any:
        return tnn.Sequential(
            tnn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            tnn.BatchNorm2d(cout),
            tnn.ReLU(),
        )

    class ResidualBlock(tnn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.conv1 = conv_bn_relu(channels, channels, 1)
            self.conv2 = tnn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn2 = tnn.BatchNorm2d(channels)

        def forward(self, x: Any) -> Any:
            return torch.relu(x + self.bn2(self.conv2(self.conv1(x))))

    class ResNet(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            cin = config["stem"]
            cin_img = config.get("in_channels", 3)
            if config.get("stem_stride", 1) == 2:
                layers = [conv_bn_relu(cin_img, cin, 2)]
            else:
                layers = [conv_bn_relu(cin_img, cin, 1), tnn.MaxPool2d(2)]
            for i, c in enumerate(config["channels"]):
                if i > 0 or c != cin:
                    layers.append(conv_bn_relu(cin, c, 2 if i > 0 else 1))
                layers.append(ResidualBlock(c))
                cin = c
            self.features = tnn.Sequential(*layers)
            self.dropout = tnn.Dropout(config.get("dropout", 0.0))
            self.head = tnn.Linear(cin, config.get("num_classes", 2))

        def forward(self, x: Any) -> Any:
            return self.head(self.dropout(self.features(x).mean(dim=(2, 3))))

    return ResNet()


def copy_weights(ours: Module, mirror: Any, torch: Any) -> None:
    """Load our parameters and buffers into the mirror; every name must match."""
    state = {name: torch.from_numpy(value) for name, value in ours.state_dict().items()}
    result = mirror.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"mirror mismatch: missing {missing}, extra {result.unexpected_keys}")


def batch(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random normalised images ``float32 (n, 3, size, size)`` and labels ``int64 (n,)``."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3, size, size), dtype=np.float32), rng.integers(0, 2, n)


def our_training_step(images: np.ndarray, labels: np.ndarray) -> Callable[[], None]:
    model = build(HOTDOG_CNN).train()
    optimizer = Adam(model.parameters(), lr=1e-3)
    x = Tensor(images)

    def step() -> None:
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def torch_training_step(images: np.ndarray, labels: np.ndarray, torch: Any) -> Callable[[], None]:
    model = torch_mirror(HOTDOG_CNN, torch)
    copy_weights(build(HOTDOG_CNN), model, torch)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def max_logit_difference(images: np.ndarray, torch: Any) -> float:
    """Largest |ours - torch| over eval-mode logits of the same weights: the mirror is faithful."""
    ours = build(HOTDOG_CNN).eval()
    mirror = torch_mirror(HOTDOG_CNN, torch)
    copy_weights(ours, mirror, torch)
    mirror.eval()
    with no_grad():
        a = ours(Tensor(images)).data
    with torch.no_grad():
        b = mirror(torch.from_numpy(images)).numpy()
    return float(np.abs(a - b).max())


# ---------------------------------------------------------------------- measurements
def time_ms(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Wall times in ms of ``repeats`` calls of each function, after ``warmup`` untimed ones.

    The functions take turns, so a change in background load slows them all alike instead of
    falling on whichever happened to be measured at the time.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000.0)
    return times


def traced_peak_mb(fn: Callable[[], Any]) -> float:
    """Peak of Python and numpy allocations made while ``fn`` runs (``tracemalloc``), in MB."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def _rss_mb(field: str) -> float | None:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from ``/proc``, in MB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def step_rss_mb(engine: str, n: int, size: int, threads: int) -> float | None:
    """In this (fresh) process: how far one training step lifts the resident set, in MB.

    The peak-RSS mark is reset once the model and batch exist (``/proc/self/clear_refs``), so
    the figure is the step's own working memory: activations, gradients, optimizer state and
    temporaries.
    """
    images, labels = batch(n, size)
    if engine == "torch":
        torch = optional_torch()
        if torch is None:
            return None
        torch.set_num_threads(threads)
        step = torch_training_step(images, labels, torch)
    else:
        step = our_training_step(images, labels)
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS to the current RSS
    except OSError:
        return None
    before = _rss_mb("VmRSS")
    step()
    peak = _rss_mb("VmHWM")
    return None if before is None or peak is None else peak - before


def in_subprocess(probe: str, engine: str, args: argparse.Namespace) -> Any:
    """Run this script's ``probe`` ("memory" or "time") for one engine in a fresh process and
    return what it prints (None if it fails, e.g. without PyTorch).

    Each engine runs alone in its own process: in a shared one, PyTorch's OpenMP threads keep
    spinning for a while after each of its steps and take the cores from the next step of ours
    (and numpy's BLAS threads do the same to PyTorch), so taking turns in one process measures
    the two runtimes' interference more than either engine.
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--probe", probe, "--engine", engine,
           "--batch", str(args.batch), "--size", str(args.size), "--repeats", str(args.repeats),
           "--warmup", str(args.warmup)] + (["--quick"] if args.quick else [])  # fmt: skip
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True)
        return json.loads(run.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def inference(image: Any) -> tuple[Callable[[], float], str]:
    """The serving path for one PIL image -> ``p_hotdog``, and a description of it."""
    try:
        from models import load

        classifier = load("hotdog_cnn")
        return lambda: classifier.predict(image).p_hotdog, "models.load('hotdog_cnn')"
    except (ImportError, ValueError, OSError):
        pass
    from models.preprocess import PreprocessConfig, preprocess

    cfg = PreprocessConfig()
    model = build(HOTDOG_CNN).eval()

    def predict() -> float:
        x = preprocess(image, cfg)[None]
        with no_grad():
            return float(F.softmax(model(Tensor(x)), dim=1).data[0, 1])

    return predict, "preprocess + build(HOTDOG_CNN), untrained"


def photo(width: int = 640, height: int = 480) -> Any:
    """A decoded RGB PIL image the size of a phone photo thumbnail: smooth colour + noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) * 127 / (width + height)], -1)
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


EFFNET = {"type": "efficientnet_lite", "num_classes": 2, "dropout": 0.0}


def effnet_functions(
    engine: str, torch: Any, batch: int, size: int
) -> tuple[Callable[[], None], Callable[[], None]]:
    """EfficientNet-Lite0 in one engine, random weights (the same in both engines: PyTorch's
    mirror loads ours): a one-image eval forward, and a training step at ``batch``."""
    ours = build(EFFNET)
    rng = np.random.default_rng(0)
    one = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    images = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    labels = np.arange(batch) % 2
    if engine == "ours":
        optimizer = Adam(ours.parameters(), lr=1e-4)

        def our_infer() -> None:
            ours.eval()
            with no_grad():
                ours(Tensor(one))

        def our_step() -> None:
            ours.train()
            loss = F.cross_entropy(ours(Tensor(images)), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        return our_infer, our_step

    from benchmarks.torch_effnet import efficientnet_lite0
    from training.pretrained import rename

    mirror = efficientnet_lite0(torch, num_classes=2)
    state = ours.state_dict()
    mirror.load_state_dict(
        {k: torch.from_numpy(state[rename(k)]) if rename(k) else v
         for k, v in mirror.state_dict().items()}
    )  # fmt: skip
    torch_optimizer = torch.optim.Adam(mirror.parameters(), lr=1e-4)
    t_one, t_images = torch.from_numpy(one), torch.from_numpy(images)
    t_labels = torch.from_numpy(labels)

    def torch_infer() -> None:
        mirror.eval()
        with torch.no_grad():
            mirror(t_one)

    def torch_step() -> None:
        mirror.train()
        loss = torch.nn.functional.cross_entropy(mirror(t_images), t_labels)
        torch_optimizer.zero_grad()
        loss.backward()
        torch_optimizer.step()

    return torch_infer, torch_step


def engine_times(engine: str, args: argparse.Namespace, threads: int) -> dict[str, list[float]]:
    """In this process, one engine alone: ms of its ResNet training steps, its EfficientNet
    one-image eval forwards and its EfficientNet training steps."""
    torch = optional_torch() if engine == "torch" else None
    if engine == "torch":
        if torch is None:
            raise SystemExit("PyTorch is not installed")
        torch.set_num_threads(threads)
    images, labels = batch(args.batch, args.size)
    if engine == "ours":
        step = our_training_step(images, labels)
    else:
        step = torch_training_step(images, labels, torch)
    effnet_batch, effnet_size = (2, 64) if args.quick else (32, 224)
    infer, effnet_step = effnet_functions(engine, torch, effnet_batch, effnet_size)
    return {
        "cnn_step": time_ms({"step": step}, args.repeats, args.warmup)["step"],
        "effnet_infer": time_ms({"infer": infer}, 5 * args.repeats, 2)["infer"],
        "effnet_step": time_ms({"step": effnet_step}, min(args.repeats, 3), 1)["step"],
    }


def scalar_figures(repeats: int) -> dict[str, Any]:
    """``benchmarks/bench_scalar.py``'s result, or nulls when that benchmark is absent."""
    empty = {"scalar_ms": None, "scalar_karpathy_ms": None, "scalar_ratio": None}
    if not SCALAR_BENCH.is_file():
        return empty
    spec = importlib.util.spec_from_file_location("bench_scalar", SCALAR_BENCH)
    if spec is None or spec.loader is None:
        return empty
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--repeats", str(repeats)])
    return {
        "scalar_ms": result.get("ours_ms"),
        "scalar_karpathy_ms": result.get("karpathy_ms"),
        "scalar_ratio": result.get("ratio"),
    }


def ratio_of(ours: float | None, theirs: float | None) -> float | None:
    """``ours / theirs``, or None when either figure is missing (or PyTorch's is 0)."""
    return ours / theirs if ours is not None and theirs else None


def _fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="images per training step")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps (median is kept)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--quick", action="store_true", help="batch 4, 1 repeat, no extras")
    parser.add_argument("--no-scalar", action="store_true", help="skip bench_scalar.py")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory figures")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the engines")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--probe", choices=["memory", "time"], help=argparse.SUPPRESS)
    parser.add_argument("--engine", choices=["ours", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.repeats, args.warmup, args.rounds = 4, 1, 0, 1
        args.no_scalar = args.no_memory = True

    blas = blas_info()
    threads = blas["threads"] or cpu_count()  # torch gets as many threads as numpy's BLAS
    if args.probe == "memory":
        print(json.dumps({"mb": step_rss_mb(args.engine, args.batch, args.size, threads)}))
        return {}
    if args.probe == "time":
        print(json.dumps(engine_times(args.engine, args, threads)))
        return {}

    removed = os.environ.pop(REEXEC_MARKER, None)
    if removed:
        print(f"note: re-ran without {removed}, so numpy's OpenBLAS uses its native kernels")
    torch = optional_torch()
    if torch is not None:
        torch.set_num_threads(threads)
    kernel = f"{blas['library']} {blas['kernel']}" if blas["kernel"] else "unknown kernel"
    print(f"numpy BLAS: {kernel}, {blas['threads'] or '?'} threads; "
          f"torch: {torch.get_num_threads() if torch else 'absent'} threads; "
          f"load average {_fmt(load_average(), 2)} on {cpu_count()} cpus")  # fmt: skip
    print(f"HOTDOG_CNN {HOTDOG_CNN}, batch {args.batch}, {args.size}x{args.size} RGB")

    images, labels = batch(args.batch, args.size)
    engines = ["ours", "torch"] if torch is not None else ["ours"]
    times: dict[str, dict[str, list[float]]] = {e: {} for e in engines}
    for _ in range(args.rounds):  # the engines take turns, each in a fresh process
        for engine in engines:
            found = in_subprocess("time", engine, args)
            if found is None:
                raise SystemExit(f"timing {engine} failed: run with --probe time --engine {engine}")
            for key, values in found.items():
                times[engine].setdefault(key, []).extend(values)
    ours_times, torch_times = times["ours"]["cnn_step"], times.get("torch", {}).get("cnn_step")
    logit_diff = max_logit_difference(images[:8], torch) if torch is not None else None
    numpy_peak = ours_rss = torch_rss = None
    if not args.no_memory:
        numpy_peak = traced_peak_mb(our_training_step(images, labels))
        ours_rss = (in_subprocess("memory", "ours", args) or {}).get("mb")
        torch_rss = (in_subprocess("memory", "torch", args) or {}).get("mb") if torch else None

    predict, infer_path = inference(photo())
    infer_times = time_ms({"infer": predict}, 3 if args.quick else 30, 1 if args.quick else 3)

    step_ms = statistics.median(ours_times)
    torch_ms = statistics.median(torch_times) if torch_times else None
    result: dict[str, Any] = {
        "cnn_step_ms": step_ms,
        "torch_cnn_step_ms": torch_ms,
        "ratio": ratio_of(step_ms, torch_ms),
        "infer_ms": statistics.median(infer_times["infer"]),
        "peak_mem_mb": ours_rss,
        "torch_peak_mem_mb": torch_rss,
        "mem_ratio": ratio_of(ours_rss, torch_rss),
        "numpy_traced_peak_mb": numpy_peak,
        "cnn_step_ms_all": ours_times,
        "torch_cnn_step_ms_all": torch_times,
        "max_logit_diff": logit_diff,
        "batch": args.batch,
        "image_size": args.size,
        "threads": threads,
        "blas_kernel": blas["kernel"],
        "blas_overrides_removed": removed,
        "infer_path": infer_path,
        "load_average": load_average(),
    }

    print(f"{'':28}{'ours':>10}{'torch':>10}{'ratio':>8}")
    ratio = _fmt(result["ratio"], 2, "x")
    print(f"{'train step (ms, median)':28}{step_ms:>10.1f}{_fmt(torch_ms):>10}{ratio:>8}")
    spread = f"{min(ours_times):.0f}-{max(ours_times):.0f}"
    torch_spread = f"{min(torch_times):.0f}-{max(torch_times):.0f}" if torch_times else "n/a"
    print(f"{'  spread (min-max)':28}{spread:>10}{torch_spread:>10}")
    mem_ratio = _fmt(result["mem_ratio"], 2, "x")
    print(f"{'step memory (MB, RSS rise)':28}{_fmt(ours_rss):>10}{_fmt(torch_rss):>10}"
          f"{mem_ratio:>8}")  # fmt: skip
    print(f"{'  numpy allocations peak':28}{_fmt(numpy_peak):>10}")
    print(f"{'inference, 1 image (ms)':28}{result['infer_ms']:>10.1f}   via {infer_path}")
    if logit_diff is not None:
        print(f"same weights, eval logits differ by at most {logit_diff:.2e}")

    effnet_batch, effnet_size = (2, 64) if args.quick else (32, 224)
    for figure, key in (("infer", "effnet_infer"), ("step", "effnet_step")):
        mine = statistics.median(times["ours"][key])
        theirs = statistics.median(times["torch"][key]) if torch is not None else None
        result[f"effnet_{figure}_ms"], result[f"torch_effnet_{figure}_ms"] = mine, theirs
        result[f"effnet_{figure}_ratio"] = ratio_of(mine, theirs)
    result["effnet_batch"], result["effnet_size"] = effnet_batch, effnet_size
    print(f"EfficientNet-Lite0, {effnet_size} px:")
    ratio = _fmt(result["effnet_infer_ratio"], 2, "x")
    print(f"{'  1 image, eval (ms)':28}{result['effnet_infer_ms']:>10.1f}"
          f"{_fmt(result['torch_effnet_infer_ms']):>10}{ratio:>8}")  # fmt: skip
    ratio = _fmt(result["effnet_step_ratio"], 2, "x")
    print(f"{f'  train step, batch {effnet_batch}':28}{result['effnet_step_ms']:>10.1f}"
          f"{_fmt(result['torch_effnet_step_ms']):>10}{ratio:>8}")  # fmt: skip

    if not args.no_scalar:
        print("scalar engine (benchmarks/bench_scalar.py):")
        result.update(scalar_figures(args.repeats))
    else:
        result.update({"scalar_ms": None, "scalar_karpathy_ms": None, "scalar_ratio": None})
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    reexec_without_blas_overrides()
    main()
