"""Optimizers and learning-rate schedules.

Each ``step`` is written to read like the update rule in its paper, with ``g`` the gradient,
``θ`` the parameter and ``lr`` the learning rate. Updates work on the raw arrays
(``p.data``, ``p.grad``), in place, so they never build a graph.

Optimizer and scheduler state is a flat ``dict[str, ndarray | float]`` (``state_dict()``), so a
training checkpoint can hold it in an ``.npz`` next to the weights, without pickle.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from micrograd.backend import to_numpy, xp
from micrograd.tensor import Tensor

ParamGroups = Iterable[Tensor] | Iterable[dict[str, Any]]


class Optimizer:
    """Base: holds the parameters in groups, each with its own hyperparameters, and
    per-parameter state buffers.

    ``params`` is a list of tensors, or, as in PyTorch, a list of groups
    ``{"params": [...], "lr": ..., ...}``: a key a group leaves out takes the optimizer's
    default. Parameters with ``requires_grad`` off, or without a gradient, are skipped.
    ``optimizer.lr`` is the first group's learning rate; setting it (a schedule does) moves
    every group's rate in proportion, so a backbone at a tenth of the head's rate stays there.
    """

    def __init__(self, params: ParamGroups, lr: float, **defaults: Any) -> None:
        items = list(params)
        groups = items if items and isinstance(items[0], dict) else [{"params": items}]
        self.param_groups: list[dict[str, Any]] = []
        for group in groups:
            full = {"lr": lr, **defaults, **group, "params": list(group["params"])}
            full["initial_lr"] = full["lr"]
            self.param_groups.append(full)
        self.params = [p for g in self.param_groups for p in g["params"]]
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        self._group_of = [g for g, grp in enumerate(self.param_groups) for _ in grp["params"]]
        self.t = 0  # number of steps taken
        self.buffers: dict[str, list[Any]] = {}

    @property
    def lr(self) -> float:
        return float(self.param_groups[0]["lr"])

    @lr.setter
    def lr(self, value: float) -> None:
        first = self.param_groups[0]["initial_lr"]
        for group in self.param_groups:
            group["lr"] = value * (group["initial_lr"] / first) if first else value

    def _buffer(self, name: str) -> list[Any]:
        """Per-parameter state (e.g. momentum), zeros until first used."""
        if name not in self.buffers:
            self.buffers[name] = [xp.zeros_like(p.data) for p in self.params]
        return self.buffers[name]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        self.t += 1
        for i, p in enumerate(self.params):
            if p.grad is not None and p.requires_grad:
                self.update(i, p.data, p.grad, self.param_groups[self._group_of[i]])

    def update(self, i: int, theta: Any, g: Any, group: dict[str, Any]) -> None:
        """Update parameter ``i`` (array ``theta``, modified in place) given its gradient and
        its group's hyperparameters (``group["lr"]``, ...)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"t": np.asarray(self.t), "lr": np.asarray(self.lr)}
        for name, bufs in self.buffers.items():
            for i, b in enumerate(bufs):
                state[f"{name}.{i}"] = to_numpy(b).copy()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["t"])
        self.lr = float(state["lr"])
        self.buffers = {}
        for key, value in state.items():
            if "." not in key:
                continue
            name, index = key.rsplit(".", 1)
            bufs = self._buffer(name)
            i = int(index)
            if bufs[i].shape != value.shape:
                raise ValueError(f"optimizer state {key} has shape {value.shape}")
            bufs[i][...] = xp.asarray(value)


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (PyTorch's formulation) and L2 weight decay.

    g ← g + λθ;  v ← μv + g;  θ ← θ − lr·v   (Nesterov: θ ← θ − lr·(g + μv))
    """

    def __init__(
        self,
        params: ParamGroups,
        lr: float = 0.01,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(params, lr, momentum=momentum, weight_decay=weight_decay)
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.nesterov = nesterov

    def update(self, i: int, theta: Any, g: Any, group: dict[str, Any]) -> None:
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        if wd:
            g = g + wd * theta
        if mu:
            v = self._buffer("v")[i]
            v *= mu
            v += g
            g = g + mu * v if self.nesterov else v
        theta -= lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), with optional L2 weight decay added to the gradient.

    m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;  m̂ = m/(1−β₁ᵗ);  v̂ = v/(1−β₂ᵗ);
    θ ← θ − lr·m̂/(√v̂ + ε)
    """

    decoupled = False

    def __init__(
        self,
        params: ParamGroups,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr, weight_decay=weight_decay)
        self.betas, self.eps = betas, eps

    def update(self, i: int, theta: Any, g: Any, group: dict[str, Any]) -> None:
        b1, b2 = self.betas
        lr, wd = group["lr"], group["weight_decay"]
        if wd and not self.decoupled:
            g = g + wd * theta
        if wd and self.decoupled:
            theta *= 1 - lr * wd
        m, v = self._buffer("m")[i], self._buffer("v")[i]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        m_hat_scale = 1 / (1 - b1**self.t)
        v_hat_scale = 1 / (1 - b2**self.t)
        theta -= lr * (m * m_hat_scale) / (xp.sqrt(v * v_hat_scale) + self.eps)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019): θ ← θ − lr·λθ, then Adam.

    Default weight decay 0.01, as PyTorch.
    """

    decoupled = True

    def __init__(
        self,
        params: ParamGroups,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)


def clip_grad_norm_(params: Iterable[Tensor], max_norm: float) -> float:
    """Scale all gradients so their joint L2 norm is at most ``max_norm``; return the norm
    before clipping (``torch.nn.utils.clip_grad_norm_``)."""
    grads = [p.grad for p in params if p.grad is not None]
    total = math.sqrt(sum(float((g * g).sum()) for g in grads))
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads:
            g *= scale
    return total


class CosineWarmup:
    """Learning rate: linear warm-up over ``warmup_steps`` (base/w on the first step, never 0),
    then cosine decay from the optimizer's base lr to ``min_lr`` at ``total_steps``.
    Call ``step()`` once per optimizer step.

    lr(t) = base·(t+1)/w  for t < w;  min + (base − min)·(1 + cos(π·(t−w)/(T−w)))/2  after.
    """

    def __init__(
        self, optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, min_lr: float = 0.0
    ) -> None:
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ValueError("need total_steps >= 1 and 0 <= warmup_steps <= total_steps")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.total, self.warmup, self.min_lr = total_steps, warmup_steps, min_lr
        self.t = 0
        self.optimizer.lr = self.lr_at(0)

    def lr_at(self, t: int) -> float:
        if t < self.warmup:
            return self.base_lr * (t + 1) / self.warmup
        progress = min(1.0, (t - self.warmup) / max(1, self.total - self.warmup))
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))

    def step(self) -> None:
        self.t += 1
        self.optimizer.lr = self.lr_at(self.t)

    def state_dict(self) -> dict[str, Any]:
        return {"t": np.asarray(self.t), "base_lr": np.asarray(self.base_lr)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["t"])
        self.base_lr = float(state["base_lr"])
        self.optimizer.lr = self.lr_at(self.t)
