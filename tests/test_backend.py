"""The array backend: one place for the array library and for BLAS's thread count; a
BatchNorm's folding that does not depend on the batch it is in."""

from __future__ import annotations

import numpy as np

from micrograd import Tensor, nn, no_grad
from micrograd.backend import one_blas_thread


def _blas_threads() -> dict[str, int]:
    from threadpoolctl import threadpool_info

    return {info["filepath"]: info["num_threads"] for info in threadpool_info()}


def test_one_blas_thread_limits_every_blas_and_gives_the_count_back() -> None:
    before = _blas_threads()
    with one_blas_thread():
        inside = _blas_threads()
    assert any("scipy" in path for path in inside)  # scipy's BLAS too, loaded or not before
    assert set(inside.values()) == {1}
    assert {path: n for path, n in _blas_threads().items() if path in before} == before


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
