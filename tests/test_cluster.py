"""Batch jobs on a Ray cluster (``--ray``, ``training.cluster``): the same output as the plain
path, bit for bit, on a local cluster of 2 workers; a killed worker loses and doubles nothing;
Ctrl-C stops the job and the cluster; without Ray, one line says how to install it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import models
import training.cluster
from models import DEFAULT_MODEL, MODELS_DIR
from models.architectures import build
from models.io import save_model
from models.preprocess import PreprocessConfig
from tests.conftest import optional_import
from tests.tiny_data import make_dataset, write_image_folder
from training.augment import Augmenter
from training.cli import main
from training.cluster import Cluster, ClusterError
from training.finetune import FeatureJob, extract_views, frozen_part, load_pretrained
from training.parallel import in_order

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2
#: A small EfficientNet-Lite whose frozen part has a 1x1 conv summing 576 products per output:
#: a length OpenBLAS sums one way on 1 thread and another on 2.
WIDE_LITE = {
    "type": "efficientnet_lite",
    "num_classes": 10,
    "stages": [[1, 3, 1, 1, 16], [1, 3, 2, 6, 96], [1, 3, 1, 6, 96], [1, 3, 2, 6, 96]],
    "stem": 16,
    "head": 32,
    "dropout": 0.0,
}
PRE = PreprocessConfig(size=32, mean=(0.498,) * 3, std=(0.502,) * 3)


@pytest.fixture(autouse=True)
def two_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster started here gets 2 CPUs, so 2 workers, whatever this machine has."""
    monkeypatch.setattr(training.cluster, "cpu_count", lambda: WORKERS)


def ray_installed() -> Any:
    return optional_import("ray")


def photos(folder: Path, n: int, side: int = 300) -> list[str]:
    """``n`` JPEG photos of noise and colour, of several sizes, plus two unreadable files."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    paths = []
    for i in range(n):
        shape = (side + 7 * i, side + 3 * (i % 5), 3)
        array = np.clip(rng.normal(120 + i, 60, shape), 0, 255).astype(np.uint8)
        path = folder / f"photo_{i:02d}.jpg"
        Image.fromarray(array).save(path, quality=90)
        paths.append(str(path))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a photo")
    return [*paths[:3], str(folder / "empty.jpg"), *paths[3:], str(folder / "notes.jpg")]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------ the output


@pytest.mark.slow
def test_predict_on_a_cluster_prints_the_plain_paths_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ray_installed()
    files = photos(tmp_path / "photos", 40)  # more than one run of 32
    plain = run_cli(capsys, "predict", *files)
    on_ray = run_cli(capsys, "predict", *files, "--ray")
    assert plain[0] == on_ray[0] == 1  # two files could not be read
    assert plain[1] == on_ray[1] and len(plain[1].splitlines()) == 40
    unreadable = [line for line in on_ray[2].splitlines() if line.endswith(".jpg: empty file")]
    assert len(unreadable) == 1 and "notes.jpg: not an image" in on_ray[2]


@pytest.mark.slow
def test_evaluate_on_a_cluster_gives_the_plain_paths_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ray_installed()
    data = write_image_folder(tmp_path / "data", n_per_class=22, side=40, fmt="JPEG")
    (data / "hot_dog" / "broken.jpg").write_text("not a photo")
    weights = str(ROOT / "models" / "hotdog_cnn.npz")
    args = ["evaluate", "--weights", weights, "--data", str(data), "--json", "--batch-size", "8"]
    plain, on_ray = run_cli(capsys, *args), run_cli(capsys, *args, "--ray", "local")
    assert plain[0] == on_ray[0] == 0
    figures = [json.loads(result[1].splitlines()[-1]) for result in (plain, on_ray)]
    for f in figures:
        f.pop("seconds")
    assert figures[0] == figures[1] and figures[0]["n"] == 44
    tables = [result[1].splitlines()[:-2] for result in (plain, on_ray)]  # without the times
    assert tables[0] == tables[1] and "(1 unreadable, skipped)" in tables[0][1]
    assert "skipped 1 unreadable image" in on_ray[2]


def wide_pretrained(folder: Path) -> Path:
    config = {"architecture": WIDE_LITE, "preprocess": PRE.to_dict(), "classes": "imagenet-1k"}
    return save_model(
        folder / "wide-lite.npz", build({**WIDE_LITE, "seed": 5}).state_dict(), config
    )


def feature_job(pretrained: Path) -> FeatureJob:
    net, _ = load_pretrained(pretrained, dropout=0.0, seed=0)
    augment = {"out_size": PRE.size, "scale": [0.4, 1.0], "rotation": 10.0, "hue": 0.03}
    spec = {"trainable_blocks": 1, "augment": augment, "preprocess": PRE.to_dict(), "seed": 4}
    return FeatureJob(frozen_part(net, 1), PRE, Augmenter(augment), 4, spec, pretrained)


@pytest.mark.slow
def test_the_feature_cache_is_byte_identical_either_way(tmp_path: Path) -> None:
    ray_installed()
    job = feature_job(wide_pretrained(tmp_path))
    data = make_dataset(22, size=32, cache_size=40)  # 6 units of 4 photos, the last of 2
    here, there = tmp_path / "here", tmp_path / "there"
    plain = extract_views(job, data, 3, here, "key")
    with Cluster() as cluster:
        on_ray = extract_views(job, data, 3, there, "key", run=cluster.features)
    assert np.array_equal(plain, on_ray)
    for v in range(3):
        name = f"features-key-view{v}.npy"
        assert (here / name).read_bytes() == (there / name).read_bytes()
    assert not np.array_equal(plain[1], plain[2])  # the views are augmented, each its own way


def test_a_job_rebuilt_from_its_spec_on_the_weights_bytes_computes_the_same(
    tmp_path: Path,
) -> None:
    """What a worker builds (``FeatureJob.from_spec`` on the bytes it is sent) is the job."""
    job = feature_job(wide_pretrained(tmp_path))
    assert job.pretrained is not None
    rebuilt = FeatureJob.from_spec(job.pretrained.read_bytes(), job.spec)
    pixels = make_dataset(4, size=32, cache_size=40).images
    for view in (0, 1):
        assert np.array_equal(job((view, 8, pixels)), rebuilt((view, 8, pixels)))


# ------------------------------------------------------------------------------ failures


@pytest.mark.slow
def test_a_killed_worker_loses_and_doubles_nothing(tmp_path: Path) -> None:
    ray_installed()
    files = photos(tmp_path / "photos", 22, side=260)
    # the default model: products long and wide enough that OpenBLAS on several threads may
    # round them otherwise than the workers' one thread, as the plain path does not
    weights = MODELS_DIR / f"{DEFAULT_MODEL}.npz"
    runs = [files[i : i + 4] for i in range(0, len(files), 4)]  # 6 units
    killed: list[int] = []

    with Cluster() as cluster:

        def done(i: int) -> None:
            if not killed:  # after the first unit, the other worker dies mid-job
                killed.append(cluster.worker_pids[1])
                os.kill(killed[0], signal.SIGKILL)

        on_ray = list(cluster.score(weights, runs, done=done))
    assert killed
    clf = models.load(weights)
    plain = list(in_order(clf.score, runs))  # the plain path
    assert len(on_ray) == len(plain) == len(runs)
    for a, b in zip(on_ray, plain, strict=True):
        assert np.array_equal(a.logits, b.logits) and a.errors == b.errors


def test_without_ray_the_option_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code, out, err = run_cli(capsys, "predict", str(ROOT / "README.md"), "--ray")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "error: --ray needs Ray, which is not installed: pip install '.[ray]' "
        "(Ray is pinned in requirements-ray.txt)"
    ]
    data = write_image_folder(tmp_path / "data", n_per_class=2)
    code, _, err = run_cli(capsys, "train", "--data", str(data), "--model", "effnet",
                           "--out", str(tmp_path / "m"), "--ray")  # fmt: skip
    assert code == 2 and "pip install '.[ray]'" in err and len(err.strip().splitlines()) == 1


def test_a_file_name_is_not_taken_for_an_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--ray", "photo.jpg", "other.jpg"])
    assert exit_.value.code == 2
    assert "'photo.jpg' is not a cluster address" in capsys.readouterr().err


def test_the_scratch_presets_have_no_feature_pass_to_distribute(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_image_folder(tmp_path / "data", n_per_class=2)
    code, _, err = run_cli(capsys, "train", "--data", str(data), "--out", str(tmp_path / "m"),
                           "--ray", "auto")  # fmt: skip
    assert code == 2 and "cnn trains from scratch" in err


def test_a_cluster_that_cannot_be_joined_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ray_installed()
    with pytest.raises(ClusterError, match=r"cannot join 127\.0\.0\.1:1"):
        Cluster("127.0.0.1:1").connect()


def raylets() -> set[int]:
    """Processes of Ray's node manager on this machine: one per running cluster."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"raylet" in (entry / "cmdline").read_bytes()[:200]:
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def lines(stream: Any) -> Iterator[str]:
    yield from iter(stream.readline, "")


@pytest.mark.slow
def test_ctrl_c_stops_the_job_and_the_cluster_it_started(tmp_path: Path) -> None:
    ray_installed()
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("needs /proc to see Ray's processes")
    before = raylets()
    files = [f for f in photos(tmp_path / "photos", 20, side=200) if "photo_" in f] * 20
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", "predict", "--ray", "local", *files],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline()  # the job is running
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err == "interrupted\n", repr(err)  # one line, no traceback, nothing of Ray's
    deadline = time.monotonic() + 20
    while raylets() - before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not raylets() - before  # the cluster it started is gone


@pytest.mark.slow
def test_a_fine_tune_resumes_across_the_two_paths(tmp_path: Path) -> None:
    """``train --ray`` writes the feature cache a plain ``train`` then reads (and the other way
    round): the same files, byte for byte, and the same model."""
    ray_installed()
    data = write_image_folder(tmp_path / "data", n_per_class=10, side=48, fmt="JPEG")
    pretrained = wide_pretrained(tmp_path)
    cache = tmp_path / "cache"

    def train(out: str, *extra: str) -> subprocess.CompletedProcess[str]:
        command = [
            sys.executable, "-m", "training", "train", "--data", str(data), "--model", "effnet",
            "--pretrained", str(pretrained), "--size", "32", "--epochs", "1", "--views", "2",
            "--trainable-blocks", "1", "--batch-size", "8", "--workers", "1",
            "--out", str(tmp_path / out), *extra,
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1",
               "HOTDOG_CACHE_DIR": str(cache)}  # fmt: skip
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done

    def cached() -> dict[str, tuple[bytes, int]]:
        files = (cache / "features").glob("features-*.npy")
        return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}

    train("on_ray", "--ray")
    made = cached()
    assert len(made) == 3  # two views of the training split, one of the held-out photos
    train("resumed")  # plain, on the cache --ray wrote: it reads those files, writes none
    assert cached() == made
    for p in (cache / "features").glob("features-*.npy"):
        p.unlink()
    train("plain")  # and computing them again without Ray gives the same bytes
    assert {name: data for name, (data, _) in cached().items()} == {
        name: data for name, (data, _) in made.items()
    }
    names = ("on_ray", "resumed", "plain")
    cards = [json.loads((tmp_path / f"{name}.json").read_text()) for name in names]
    assert cards[0]["metrics"] == cards[1]["metrics"] == cards[2]["metrics"]
    assert "--ray" not in cards[0]["command"]  # where the features were made is not the recipe
