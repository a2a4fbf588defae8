"""The array backend: one place for the array library, and products whose every bit depends
only on their own inputs (not on the batch they are in, nor on the BLAS thread count)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from micrograd import Tensor, nn, no_grad
from micrograd.backend import K_BLOCK, k_blocks, matmul

ROOT = Path(__file__).resolve().parent.parent


def test_k_blocks_cover_the_inner_dimension_once_in_order() -> None:
    assert k_blocks(1) == [None]
    assert k_blocks(K_BLOCK) == [None]
    parts = k_blocks(2 * K_BLOCK + 17)
    assert [(p.start, p.stop) for p in parts] == [
        (0, K_BLOCK),
        (K_BLOCK, 2 * K_BLOCK),
        (2 * K_BLOCK, 2 * K_BLOCK + 17),
    ]


@pytest.mark.parametrize(
    ("a_shape", "b_shape"),
    [((5, 600), (600, 3)), ((2, 5, 600), (600, 4)), ((600,), (600, 2)), ((7, 40), (40, 6))],
)
def test_matmul_is_numpys_product(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    np.testing.assert_allclose(matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)


def _network() -> nn.Module:
    """A conv net whose BatchNorms fold or not by their map's size (8x8 and 2x2 per image) and
    whose 1x1 conv and linear layer sum 528 products per output, a length OpenBLAS splits one
    way on 1 thread and another on 2."""
    rng = np.random.default_rng(0)
    net = nn.Sequential(
        nn.ConvBN(nn.Conv2d(3, 528, 3, 1, 1, bias=False, rng=rng), nn.BatchNorm2d(528)),
        nn.ConvBN(nn.Conv2d(528, 96, 1, bias=False, rng=rng), nn.BatchNorm2d(96)),
        nn.ConvBN(nn.Conv2d(96, 132, 3, 4, 1, bias=False, rng=rng), nn.BatchNorm2d(132)),
        nn.Flatten(),
        nn.Linear(528, 2, rng=rng),
    )
    state = net.state_dict()
    for name, value in state.items():  # running statistics other than 0 and 1
        if "running" in name:
            state[name] = rng.uniform(0.5, 1.5, value.shape).astype(np.float32)
    net.load_state_dict(state)
    return net.eval()


def _logits(batch: int) -> np.ndarray:
    x = np.random.default_rng(1).standard_normal((batch, 3, 8, 8)).astype(np.float32)
    with no_grad():
        return _network()(Tensor(x)).numpy()


def test_a_batchnorm_folds_or_not_by_the_image_never_by_the_batch() -> None:
    """Folding rounds otherwise than the two layers in a row: decided by the batch size, the
    last batch of a job would be computed the other way."""
    net = _network()
    x = Tensor(np.random.default_rng(1).standard_normal((40, 3, 8, 8)).astype(np.float32))
    for layer in list(net)[:3]:  # 64, 64 and 4 pixels per image; 27, 528 and 864 weights
        ops = {len(batch): type(layer(batch)._ctx).__name__ for batch in (x, x[:1])}
        assert ops[40] == ops[1], (layer, ops)  # the graph's last op: the conv, or the BatchNorm
        x = layer(x).detach()


_SCRIPT = """
import hashlib, sys
sys.path.insert(0, {root!r})
from tests.test_backend import _logits
print(hashlib.sha256(_logits(40).tobytes()).hexdigest())
"""


def test_results_do_not_depend_on_the_blas_thread_count() -> None:
    digests = set()
    for threads in ("1", "2", "3"):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT.format(root=str(ROOT))],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        digests.add(done.stdout.strip())
    assert len(digests) == 1
