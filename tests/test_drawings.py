"""training.drawings: synthetic cartoon drawings, deterministic, in the usual class folders."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data import find_images
from training.drawings import HOTDOGS, OTHERS, draw_scene, write_drawings

ROOT = Path(__file__).resolve().parents[1]


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.png"))
    }


def test_write_drawings_makes_a_dataset_the_loader_reads(tmp_path: Path) -> None:
    write_drawings(tmp_path / "drawings", n_per_class=4, seed=3)
    samples = find_images(tmp_path / "drawings")
    assert sorted(s.label for s in samples) == [0, 0, 0, 0, 1, 1, 1, 1]
    for s in samples:
        with Image.open(s.path) as img:
            assert img.mode == "RGB" and 240 <= img.width < 400 and 200 <= img.height < 320


def test_the_same_seed_draws_the_same_files_and_another_seed_others(tmp_path: Path) -> None:
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        write_drawings(tmp_path / name, n_per_class=3, seed=seed)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert _digests(tmp_path / "a") != _digests(tmp_path / "c")


@pytest.mark.parametrize("draw_object", [*HOTDOGS, *OTHERS], ids=lambda f: f.__name__)
def test_every_object_draws_something(draw_object) -> None:
    from PIL import ImageDraw

    layer = Image.new("RGBA", (200, 120), (0, 0, 0, 0))
    draw_object(ImageDraw.Draw(layer), np.random.default_rng(0), (20.0, 20.0, 180.0, 100.0))
    alpha = np.asarray(layer)[..., 3]
    assert (alpha > 0).mean() > 0.03


def test_hotdog_and_other_scenes_differ() -> None:
    rng = np.random.default_rng(0)
    a = np.asarray(draw_scene(rng, True), dtype=np.float32)
    b = np.asarray(draw_scene(rng, False), dtype=np.float32)
    assert a.shape == b.shape == (256, 320, 3) and np.abs(a - b).mean() > 5


def test_draw_command(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "training", "draw", "--dest", str(dest), "--n", "2"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(dest)
    assert len(list(dest.rglob("*.png"))) == 4
    bad = subprocess.run(
        [sys.executable, "-m", "training", "draw", "--dest", str(dest), "--seed", "-1"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
