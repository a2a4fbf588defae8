"""Batch jobs on one machine, plain and on a local Ray cluster, side by side in one run.

For ``--photos`` photos (default 1,000, from ``--data``, default ``../shared/data``'s full-size
food and everyday photos), with the app's default model:

(a) ``predict``: the whole command, ``python -m training predict`` (the units on one thread
    per core of this process, each on one BLAS thread) against ``predict --ray`` (a local
    cluster, one single-thread worker per core), start-up included: photos per second, the
    median of ``--repeats`` runs that take turns. Their outputs must be identical (the
    benchmark fails otherwise).
(b) start-up: what ``--ray`` adds before the first photo, in parts: starting the local
    cluster, and starting the workers with the model loaded.
(c) the feature pass of the ``effnet-lite2`` recipe (the frozen part of the ImageNet network,
    ``--views`` views of every photo: the serving one and augmented ones), in this process,
    plain against on a cluster started for it, start-up included. The two feature arrays must
    be identical.
(d) what the driver (this process) spends per unit of work on a cluster: CPU seconds (reading
    files, shipping units, taking results) and bytes shipped each way. With the workers' time
    per unit, that bounds what more workers give: a job of ``U`` units on ``n`` workers takes
    about ``start-up + U * max(worker_s / n, driver_s)``, plus, on other machines, the bytes
    over the network; the figures for 8 and 64 workers are that model's.

Usage::

    python benchmarks/bench_cluster.py [--photos 1000] [--repeats 3] [--views 2] [--json]

Needs Ray (``pip install '.[ray]'``) and, for (c), the ImageNet weights that
``python -m training import-weights efficientnet-lite2`` writes (skipped without them).
With ``--json`` the last line of stdout is one JSON object of the figures printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from micrograd.backend import cpu_count  # noqa: E402
from models import DEFAULT_MODEL, MODELS_DIR  # noqa: E402
from training.augment import Augmenter  # noqa: E402
from training.cli import PREDICT_BATCH  # noqa: E402
from training.cluster import Cluster  # noqa: E402
from training.data import find_images, load_dataset  # noqa: E402
from training.finetune import (  # noqa: E402
    EXTRACT_BATCH,
    FeatureJob,
    extract_views,
    frozen_part,
    load_pretrained,
)
from training.pretrained import VARIANTS  # noqa: E402
from training.recipes import PRESETS  # noqa: E402

WEIGHTS = MODELS_DIR / f"{DEFAULT_MODEL}.npz"
DEFAULT_DATA = [
    ROOT.parent / "shared" / "data" / name for name in ("food-photos", "everyday-photos")
]


def photo_paths(roots: list[Path], n: int) -> list[str]:
    """``n`` photos spread over the folders' classes (every ``k``-th file), in a fixed order."""
    samples = find_images(roots)
    step = max(1, len(samples) // n)
    return [str(s.path) for s in samples[::step][:n]]


def run_predict(files: list[str], ray: bool) -> tuple[float, str]:
    command = [sys.executable, "-m", "training", "predict", "--weights", str(WEIGHTS), *files]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    done = subprocess.run(
        [*command, *(["--ray", "local"] if ray else [])],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"predict failed: {done.stderr.strip()[-500:]}")
    return seconds, done.stdout


def start_up() -> dict[str, float]:
    """Seconds to start a local cluster, and then to have its workers up with the model."""
    start = time.perf_counter()
    with Cluster() as cluster:
        cluster.connect()
        connected = time.perf_counter()
        list(cluster.map("score", WEIGHTS.read_bytes(), {}, []))  # workers up, no unit
        ready = time.perf_counter()
    return {"cluster_s": connected - start, "workers_s": ready - connected}


def driver_cost(files: list[str]) -> dict[str, float]:
    """The driver's CPU seconds per unit of ``predict`` on a cluster, and bytes per unit."""
    runs = [files[i : i + PREDICT_BATCH] for i in range(0, len(files), PREDICT_BATCH)]
    with Cluster() as cluster:
        cluster.connect()
        list(cluster.map("score", WEIGHTS.read_bytes(), {}, []))  # start-up outside the count
        cpu = time.process_time()
        for _ in cluster.score(WEIGHTS, runs):
            pass
        cpu = time.process_time() - cpu
    shipped = sum(Path(f).stat().st_size for f in files) / len(runs)
    return {"driver_cpu_s_per_unit": cpu / len(runs), "bytes_in_per_unit": shipped,
            "bytes_out_per_unit": 2 * 4 * PREDICT_BATCH}  # fmt: skip


def feature_pass(files: list[str], views: int, repeats: int) -> dict[str, Any] | None:
    pretrained = VARIANTS["efficientnet-lite2"].default_path
    if not pretrained.is_file():
        print(f"(c) skipped: no {pretrained}; run python -m training import-weights ...")
        return None
    preset = PRESETS["effnet-lite2"]
    size = preset.preprocess.size
    folder = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        for i, f in enumerate(files):  # a dataset of exactly these photos
            label = "hot_dog" if "/hot_dog/" in f else "not_hot_dog"
            (folder / "photos" / label).mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.abspath(f), folder / "photos" / label / f"{i:05d}{Path(f).suffix}")
        data = load_dataset(folder / "photos", size, cache=False)
        k = preset.finetune["trainable_blocks"] if preset.finetune else 2
        net, _ = load_pretrained(pretrained, 0.0, 0)
        augment = {**(preset.augment or {}), "out_size": size}
        spec = {"trainable_blocks": k, "augment": augment,
                "preprocess": preset.preprocess.to_dict(), "seed": 0}  # fmt: skip
        job = FeatureJob(frozen_part(net, k), preset.preprocess, Augmenter(augment), 0, spec,
                         pretrained)  # fmt: skip
        plain, on_ray, arrays = [], [], {}
        for r in range(repeats):
            for way in ("plain", "ray"):
                cache = folder / f"cache-{way}-{r}"
                start = time.perf_counter()
                if way == "plain":
                    arrays[way] = extract_views(job, data, views, cache, "bench")
                    plain.append(time.perf_counter() - start)
                else:
                    with Cluster() as cluster:
                        cpu = time.process_time()
                        arrays[way] = extract_views(job, data, views, cache, "bench",
                                                    run=cluster.features)  # fmt: skip
                        cpu = time.process_time() - cpu
                    on_ray.append(time.perf_counter() - start)
                print(f"    feature pass {way:5} {time.perf_counter() - start:6.1f} s", flush=True)
        if not np.array_equal(arrays["plain"], arrays["ray"]):
            raise SystemExit("the feature pass on the cluster differs from the plain one")
        units = views * -(-len(data) // EXTRACT_BATCH)
        unit_in = EXTRACT_BATCH * data.images[0].nbytes
        unit_out = EXTRACT_BATCH * arrays["plain"][0, 0].nbytes
        return {"photos": len(data), "views": views, "units": units,
                "plain_s": statistics.median(plain), "ray_s": statistics.median(on_ray),
                "driver_cpu_s_per_unit": cpu / units, "bytes_in_per_unit": unit_in,
                "bytes_out_per_unit": unit_out}  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def extrapolate(
    units: int, workers: int, ray_s: float, startup_s: float, driver_s: float
) -> dict[str, Any]:
    """The model of (d): each worker's seconds per unit from the measured run, then the same
    job's seconds on 8 and 64 workers, and the worker count at which the driver saturates."""
    worker_s = max(ray_s - startup_s, 1e-9) * workers / units
    out: dict[str, Any] = {"worker_s_per_unit": worker_s,
                           "driver_bound_workers": worker_s / max(driver_s, 1e-9)}  # fmt: skip
    for n in (8, 64):
        out[f"seconds_{n}_workers"] = startup_s + units * max(worker_s / n, driver_s)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--data", nargs="+", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    files = photo_paths(args.data, args.photos)
    n, workers = len(files), cpu_count()
    print(f"{n} photos, {workers} cores; model {DEFAULT_MODEL}")

    plain, on_ray, outputs = [], [], {}
    for _ in range(args.repeats):
        for ray in (False, True):
            seconds, outputs[ray] = run_predict(files, ray)
            (on_ray if ray else plain).append(seconds)
            print(f"    predict {'--ray' if ray else 'plain'} {seconds:6.1f} s", flush=True)
    if outputs[False] != outputs[True]:
        raise SystemExit("predict --ray printed other lines than predict")
    startup = start_up()
    startup_s = startup["cluster_s"] + startup["workers_s"]
    predict = {"plain_s": statistics.median(plain), "ray_s": statistics.median(on_ray),
               **driver_cost(files)}  # fmt: skip
    predict_units = -(-n // PREDICT_BATCH)
    predict.update(extrapolate(predict_units, workers, predict["ray_s"], startup_s,
                               predict["driver_cpu_s_per_unit"]))  # fmt: skip
    features = feature_pass(files, args.views, args.repeats)
    if features is not None:
        features.update(extrapolate(features["units"], workers, features["ray_s"], startup_s,
                                    features["driver_cpu_s_per_unit"]))  # fmt: skip

    print(f"\n(a) predict, {n} photos in runs of {PREDICT_BATCH} (start-up included):")
    for way in ("plain", "ray"):
        s = predict[f"{way}_s"]
        print(f"    {way:5}  {s:6.1f} s  {n / s:5.1f} photos/s")
    print(f"    ratio plain / ray: {predict['plain_s'] / predict['ray_s']:.2f}x")
    print(f"(b) start-up: cluster {startup['cluster_s']:.1f} s, workers with the model "
          f"{startup['workers_s']:.1f} s")  # fmt: skip
    if features is not None:
        print(f"(c) feature pass, {features['photos']} photos x {features['views']} views:")
        for way in ("plain", "ray"):
            s = features[f"{way}_s"]
            print(f"    {way:5}  {s:6.1f} s  {features['photos'] * features['views'] / s:5.1f}"
                  " views/s")  # fmt: skip
        print(f"    ratio plain / ray: {features['plain_s'] / features['ray_s']:.2f}x")
    print("(d) per unit, and the model's 8 and 64 workers (same job):")
    for name, figures in (("predict", predict), ("features", features)):
        if figures is None:
            continue
        print(
            f"    {name:8}: worker {figures['worker_s_per_unit']:.2f} s, driver "
            f"{figures['driver_cpu_s_per_unit'] * 1000:.1f} ms CPU, "
            f"{figures['bytes_in_per_unit'] / 2**20:.2f} MB in, "
            f"{figures['bytes_out_per_unit'] / 2**10:.1f} KB out; 8 workers "
            f"{figures['seconds_8_workers']:.1f} s, 64 workers "
            f"{figures['seconds_64_workers']:.1f} s; the driver saturates at "
            f"{figures['driver_bound_workers']:.0f} workers"
        )
    if args.json:
        figures = {"photos": n, "cores": workers, "model": DEFAULT_MODEL, "predict": predict,
                   "start_up": startup, "features": features}  # fmt: skip
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
