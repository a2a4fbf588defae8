"""Optimizers and schedules against torch.optim, step by step, in float64."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from micrograd import Tensor
from micrograd.nn import Parameter
from micrograd.optim import SGD, Adam, AdamW, CosineWarmup, Optimizer, clip_grad_norm_
from tests.conftest import optional_import


@pytest.fixture(scope="module")
def torch() -> Any:
    return optional_import("torch")


_rng = np.random.default_rng(0)
X, Y = _rng.standard_normal((8, 3)), _rng.standard_normal((8, 4))
W0, B0 = _rng.standard_normal((3, 4)) * 0.5, _rng.standard_normal(4) * 0.5


def loss_fn(w: Any, b: Any, x: Any, y: Any) -> Any:
    """A quadratic data term plus a quartic penalty: curved enough that every optimizer's
    trajectory is distinct. Works on our Tensors and on torch tensors alike."""
    residual = x @ w + b - y
    return (residual * residual).mean() + 0.05 * (w**4).sum()


def our_trajectory(make: Callable[[list[Parameter]], Optimizer], steps: int) -> list[np.ndarray]:
    w, b = Parameter(W0.copy(), dtype=None), Parameter(B0.copy(), dtype=None)
    optimizer = make([w, b])
    x, y = Tensor(X, dtype=None), Tensor(Y, dtype=None)
    out = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(w, b, x, y).backward()
        optimizer.step()
        out.append(np.concatenate([w.data.ravel(), b.data]))
    return out


def torch_trajectory(torch: Any, name: str, kwargs: dict[str, Any], steps: int) -> list[Any]:
    w = torch.tensor(W0, requires_grad=True)
    b = torch.tensor(B0, requires_grad=True)
    optimizer = getattr(torch.optim, name)([w, b], **kwargs)
    x, y = torch.tensor(X), torch.tensor(Y)
    out = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(w, b, x, y).backward()
        optimizer.step()
        out.append(np.concatenate([w.detach().numpy().ravel(), b.detach().numpy()]))
    return out


OPTIMIZERS = [
    pytest.param(SGD, "SGD", {"lr": 0.1}, id="sgd"),
    pytest.param(SGD, "SGD", {"lr": 0.05, "momentum": 0.9}, id="sgd-momentum"),
    pytest.param(SGD, "SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}, id="sgd-nesterov"),
    pytest.param(
        SGD, "SGD", {"lr": 0.05, "momentum": 0.8, "weight_decay": 0.1}, id="sgd-weight-decay"
    ),
    pytest.param(SGD, "SGD", {"lr": 0.1, "weight_decay": 0.1}, id="sgd-plain-weight-decay"),
    pytest.param(Adam, "Adam", {"lr": 0.05}, id="adam"),
    pytest.param(
        Adam, "Adam", {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-4}, id="adam-betas-eps"
    ),
    pytest.param(Adam, "Adam", {"lr": 0.05, "weight_decay": 0.1}, id="adam-l2"),
    pytest.param(AdamW, "AdamW", {"lr": 0.05}, id="adamw-default-decay"),
    pytest.param(AdamW, "AdamW", {"lr": 0.05, "weight_decay": 0.3}, id="adamw"),
]


@pytest.mark.parametrize(("ours", "name", "kwargs"), OPTIMIZERS)
def test_matches_torch_optim(
    ours: type[Optimizer], name: str, kwargs: dict[str, Any], torch: Any
) -> None:
    got = our_trajectory(lambda params: ours(params, **kwargs), steps=10)
    expected = torch_trajectory(torch, name, kwargs, steps=10)
    for step, (a, b) in enumerate(zip(got, expected, strict=True)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=f"step {step + 1}")
    assert not np.allclose(got[0], got[-1])  # it moved


def test_steps_keep_float32() -> None:
    w = Parameter(W0)
    for optimizer in (SGD([w], 0.1, momentum=0.9, weight_decay=0.1), AdamW([w], 0.1)):
        loss_fn(w, Tensor(B0), Tensor(X), Tensor(Y)).backward()
        optimizer.step()
        assert w.dtype == np.float32
        assert all(b.dtype == np.float32 for bufs in optimizer.buffers.values() for b in bufs)
        w.zero_grad()


def test_parameters_without_gradient_are_left_alone() -> None:
    used, unused = Parameter(np.ones(2)), Parameter(np.ones(2))
    optimizer = Adam([used, unused], lr=0.1)
    (used * used).sum().backward()
    optimizer.step()
    np.testing.assert_array_equal(unused.data, np.ones(2))
    assert not np.array_equal(used.data, np.ones(2))


def test_updates_are_in_place() -> None:
    w = Parameter(np.ones(3))
    data = w.data
    optimizer = SGD([w], lr=0.1, momentum=0.9)
    (w * w).sum().backward()
    optimizer.step()
    assert w.data is data  # a model holding the array sees the update


def test_optimizer_argument_checks() -> None:
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        SGD([Parameter(np.ones(1))], lr=0.1, nesterov=True)


# ---------------------------------------------------------------------- gradient clipping
@pytest.mark.parametrize("max_norm", [0.5, 100.0], ids=["clipped", "unclipped"])
def test_clip_grad_norm_matches_torch(max_norm: float, torch: Any) -> None:
    grads = [_rng.standard_normal((3, 4)), _rng.standard_normal(5), _rng.standard_normal((2, 2))]
    params = [Parameter(np.zeros(g.shape), dtype=None) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.copy()
    params.append(Parameter(np.zeros(2), dtype=None))  # no gradient: ignored
    tparams = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, g in zip(tparams, grads, strict=True):
        p.grad = torch.tensor(g)
    norm = clip_grad_norm_(params, max_norm)
    expected = torch.nn.utils.clip_grad_norm_(tparams, max_norm)
    assert norm == pytest.approx(float(expected), rel=1e-12)
    for p, t in zip(params[:-1], tparams, strict=True):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12)


def test_clip_grad_norm_after_backward_through_shared_gradients() -> None:
    # Add hands the same gradient array to both inputs; clipping must scale each once
    a, b = Parameter(np.ones(4)), Parameter(np.ones(4))
    ((a + b) * 3.0).sum().backward()
    norm = clip_grad_norm_([a, b], 1.0)
    assert norm == pytest.approx(math.sqrt(8 * 9.0))
    total = math.sqrt(float((a.grad**2).sum() + (b.grad**2).sum()))
    assert total == pytest.approx(1.0, rel=1e-5)


# ---------------------------------------------------------------------- schedules
def test_cosine_warmup_schedule() -> None:
    optimizer = SGD([Parameter(np.ones(1))], lr=1.0)
    schedule = CosineWarmup(optimizer, total_steps=11, warmup_steps=3, min_lr=0.1)
    lrs = [optimizer.lr]
    for _ in range(13):
        schedule.step()
        lrs.append(optimizer.lr)
    # linear warm-up to the base lr
    assert lrs[:4] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    # then cosine: halfway between base and min halfway through the decay, min at the end
    assert lrs[7] == pytest.approx(0.55)
    assert all(a > b for a, b in itertools.pairwise(lrs[3:12]))
    assert lrs[11] == pytest.approx(0.1) and lrs[13] == pytest.approx(0.1)
    for t in range(3, 12):
        expected = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (t - 3) / 8))
        assert lrs[t] == pytest.approx(expected)


def test_cosine_without_warmup_starts_at_base_lr() -> None:
    optimizer = Adam([Parameter(np.ones(1))], lr=0.01)
    CosineWarmup(optimizer, total_steps=5)
    assert optimizer.lr == pytest.approx(0.01)


def test_cosine_warmup_argument_checks() -> None:
    optimizer = SGD([Parameter(np.ones(1))], lr=1.0)
    with pytest.raises(ValueError):
        CosineWarmup(optimizer, total_steps=0)
    with pytest.raises(ValueError):
        CosineWarmup(optimizer, total_steps=5, warmup_steps=6)


# ---------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize(
    "make",
    [
        lambda ps: SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
        lambda ps: AdamW(ps, lr=0.05, weight_decay=0.1),
    ],
    ids=["sgd", "adamw"],
)
def test_state_dict_round_trip_continues_identically(
    make: Callable[[list[Parameter]], Optimizer], tmp_path: Path
) -> None:
    x, y = Tensor(X), Tensor(Y)

    def train(
        params: list[Parameter], optimizer: Optimizer, schedule: CosineWarmup, n: int
    ) -> None:
        for _ in range(n):
            optimizer.zero_grad()
            loss_fn(*params, x, y).backward()
            optimizer.step()
            schedule.step()

    params = [Parameter(W0), Parameter(B0)]
    optimizer = make(params)
    schedule = CosineWarmup(optimizer, total_steps=10, warmup_steps=2)
    train(params, optimizer, schedule, 4)
    np.savez(tmp_path / "optimizer.npz", **optimizer.state_dict())
    np.savez(tmp_path / "schedule.npz", **schedule.state_dict())
    saved_params = [p.data.copy() for p in params]
    train(params, optimizer, schedule, 4)

    resumed = [Parameter(a) for a in saved_params]
    optimizer2 = make(resumed)
    schedule2 = CosineWarmup(optimizer2, total_steps=10, warmup_steps=2)
    with np.load(tmp_path / "optimizer.npz", allow_pickle=False) as state:
        optimizer2.load_state_dict(dict(state))
    with np.load(tmp_path / "schedule.npz", allow_pickle=False) as state:
        schedule2.load_state_dict(dict(state))
    assert optimizer2.t == 4
    train(resumed, optimizer2, schedule2, 4)
    assert optimizer2.lr == optimizer.lr
    for a, b in zip(params, resumed, strict=True):
        np.testing.assert_array_equal(a.data, b.data)


def test_load_state_dict_rejects_wrong_shapes() -> None:
    w = Parameter(np.ones(3))
    optimizer = Adam([w], lr=0.1)
    (w * w).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    state["m.0"] = np.zeros(4)
    with pytest.raises(ValueError, match=r"m\.0"):
        Adam([Parameter(np.ones(3))], lr=0.1).load_state_dict(state)


def test_param_groups_match_torch(torch: Any) -> None:
    """A backbone at a tenth of the head's rate, with its own weight decay, under a schedule."""

    def make_ours(params: list[Parameter]) -> Optimizer:
        w, b = params
        return AdamW([{"params": [w], "lr": 0.005, "weight_decay": 0.0}, {"params": [b]}], lr=0.05)

    w, b = Parameter(W0.copy(), dtype=None), Parameter(B0.copy(), dtype=None)
    ours = make_ours([w, b])
    schedule = CosineWarmup(ours, total_steps=8, warmup_steps=2)
    wt = torch.tensor(W0, requires_grad=True)
    bt = torch.tensor(B0, requires_grad=True)
    theirs = torch.optim.AdamW(
        [{"params": [wt], "lr": 0.005, "weight_decay": 0.0}, {"params": [bt]}], lr=0.05
    )
    x, y = Tensor(X, dtype=None), Tensor(Y, dtype=None)
    for _ in range(8):
        factor = ours.lr / 0.005  # where the schedule stands, applied to torch by hand
        for group, base in zip(theirs.param_groups, (0.005, 0.05), strict=True):
            group["lr"] = base * factor
        ours.zero_grad()
        theirs.zero_grad()
        loss_fn(w, b, x, y).backward()
        loss_fn(wt, bt, torch.tensor(X), torch.tensor(Y)).backward()
        ours.step()
        theirs.step()
        schedule.step()
        np.testing.assert_allclose(w.data, wt.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b.data, bt.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert ours.param_groups[0]["lr"] == pytest.approx(0.1 * ours.param_groups[1]["lr"])
