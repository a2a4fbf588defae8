"""Neural-network building blocks.

Scalar networks on :class:`~micrograd.engine.Value` (Karpathy's micrograd API) come first; tensor
layers follow below them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from micrograd import functional as F
from micrograd.backend import DEFAULT_DTYPE, to_numpy, xp
from micrograd.engine import Value
from micrograd.kernels.common import _out_size
from micrograd.tensor import Tensor

# Scalar networks on Value (Karpathy's micrograd API)
#
# ``Neuron``, ``Layer`` and ``MLP`` behave exactly as in micrograd's nn.py (same init, same graph,
# same repr). Their base is named ``ScalarModule`` so that ``Module`` can name the tensor base.


class ScalarModule:
    """Base of the scalar networks: a bag of ``Value`` parameters."""

    def zero_grad(self) -> None:
        """Reset the gradient of every parameter to 0 (gradients accumulate otherwise)."""
        for p in self.parameters():
            p.grad = 0.0

    def parameters(self) -> list[Value]:
        """All trainable ``Value`` objects, in a fixed order."""
        return []


class Neuron(ScalarModule):
    """``relu(w · x + b)``, or ``w · x + b`` when ``nonlin`` is false.

    Weights start uniform in [-1, 1] (drawn from Python's ``random``), the bias at 0.
    """

    def __init__(self, nin: int, nonlin: bool = True) -> None:
        self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = Value(0.0)
        self.nonlin = nonlin

    def __call__(self, x: Sequence[Value | float]) -> Value:
        act = sum((wi * xi for wi, xi in zip(self.w, x, strict=False)), self.b)
        return act.relu() if self.nonlin else act

    def parameters(self) -> list[Value]:
        return [*self.w, self.b]

    def __repr__(self) -> str:
        return f"{'ReLU' if self.nonlin else 'Linear'}Neuron({len(self.w)})"


class Layer(ScalarModule):
    """``nout`` independent neurons reading the same ``nin`` inputs.

    Calling it returns a list of ``nout`` values, or the single value when ``nout == 1``.
    """

    def __init__(self, nin: int, nout: int, **kwargs: bool) -> None:
        self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]

    def __call__(self, x: Sequence[Value | float]) -> Value | list[Value]:
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Value]:
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(ScalarModule):
    """Multi-layer perceptron: ReLU hidden layers, a linear last layer.

    ``MLP(2, [16, 16, 1])`` maps 2 inputs through two hidden layers of 16 to one output.
    """

    def __init__(self, nin: int, nouts: Sequence[int]) -> None:
        sz = [nin, *nouts]
        self.layers = [
            Layer(sz[i], sz[i + 1], nonlin=i != len(nouts) - 1) for i in range(len(nouts))
        ]

    def __call__(self, x: Sequence[Value | float]) -> Value | list[Value]:
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"


# Tensor layers (PyTorch's torch.nn names and shapes)
#
# A ``Module`` finds its parameters, buffers and sub-modules by looking at its attributes, so a
# layer only has to assign them in ``__init__``. Parameters are Tensors with requires_grad; buffers
# (BatchNorm's running statistics) are plain arrays: saved in ``state_dict`` but never trained.


class Parameter(Tensor):
    """A trainable tensor: ``requires_grad`` is on and ``Module.parameters()`` finds it."""

    def __init__(self, data: Any, dtype: Any = DEFAULT_DTYPE) -> None:
        super().__init__(data, requires_grad=True, dtype=dtype)


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def kaiming_normal(
    shape: tuple[int, ...], fan_in: int, rng: np.random.Generator, gain: float = math.sqrt(2.0)
) -> np.ndarray:
    """He et al. (2015) initialisation for ReLU networks: N(0, gain² / fan_in), float32."""
    return (rng.standard_normal(shape) * (gain / math.sqrt(fan_in))).astype(np.float32)


class Module:
    """Base of every tensor layer and network.

    Protocol: ``forward(x)`` (called by ``__call__``), ``parameters()``, ``named_parameters()``,
    ``zero_grad()``, ``train()`` / ``eval()``, ``state_dict()`` / ``load_state_dict()``.
    """

    training: bool = True

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError

    def __call__(self, *args: Any) -> Any:
        return self.forward(*args)

    # -- discovery: attributes that are Parameters, buffers or Modules, in assignment order
    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def modules(self) -> Iterator[Module]:
        """This module and all modules inside it, depth first."""
        stack: list[Module] = [self]
        while stack:
            module = stack.pop()
            yield module
            stack.extend(reversed([child for _, child in module.named_children()]))

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child.named_parameters(f"{prefix}{name}.")

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def register_buffer(self, name: str, array: Any) -> None:
        """Keep ``array`` as non-trainable state that ``state_dict`` saves (e.g. running mean)."""
        self.__dict__.setdefault("_buffers", {})[name] = xp.asarray(array)

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        for name, value in self.__dict__.get("_buffers", {}).items():
            yield prefix + name, value
        for name, child in self.named_children():
            yield from child.named_buffers(f"{prefix}{name}.")

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails: buffers read like attributes (bn.running_mean)
        buffers = self.__dict__.get("_buffers", {})
        if name in buffers:
            return buffers[name]
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Switch gradients of every parameter inside on or off (``False`` freezes them:
        backward computes nothing for them and optimizers leave them as they are)."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def train(self, mode: bool = True) -> Module:
        """Training mode (batch statistics, dropout on) for every module inside, except those
        locked in eval mode by ``lock_eval``; ``train(False)`` is ``eval()``."""
        for module in self.modules():
            module.training = mode and not module.__dict__.get("eval_locked", False)
        return self

    def lock_eval(self, locked: bool = True) -> Module:
        """Keep this module and everything inside it in eval mode whatever ``train()`` says:
        a BatchNorm normalises with its running statistics and never updates them (the usual
        way to fine-tune a pretrained network on small batches)."""
        for module in self.modules():
            module.eval_locked = locked
            module.training = module.training and not locked
        return self

    def eval(self) -> Module:
        return self.train(False)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter and buffer by dotted name, as host numpy arrays (copies)."""
        state = {name: to_numpy(p.data).copy() for name, p in self.named_parameters()}
        state.update({name: to_numpy(b).copy() for name, b in self.named_buffers()})
        return state

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Copy arrays into parameters and buffers in place; names and shapes must match."""
        targets: dict[str, Any] = {n: p.data for n, p in self.named_parameters()}
        targets.update(dict(self.named_buffers()))
        if strict:
            missing = sorted(set(targets) - set(state))
            unexpected = sorted(set(state) - set(targets))
            if missing or unexpected:
                raise KeyError(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
        for name, target in targets.items():
            if name not in state:
                continue
            value = xp.asarray(state[name])
            if value.shape != target.shape:
                raise ValueError(
                    f"state_dict[{name!r}] has shape {value.shape}, expected {target.shape}"
                )
            target[...] = value

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def __repr__(self) -> str:
        children = [
            f"  ({n}): {repr(c).replace(chr(10), chr(10) + '  ')}" for n, c in self.named_children()
        ]
        inner = self.extra_repr()
        if not children:
            return f"{type(self).__name__}({inner})"
        return f"{type(self).__name__}(\n" + "\n".join(children) + "\n)"

    def extra_repr(self) -> str:
        return ""


class Linear(Module):
    """``y = x Wᵀ + b``: ``(..., in_features)`` -> ``(..., out_features)``; W is ``(out, in)``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        rng: int | np.random.Generator | None = None,
    ) -> None:
        g = _rng(rng)
        self.weight = Parameter(kaiming_normal((out_features, in_features), in_features, g))
        self.bias = Parameter(np.zeros(out_features, np.float32)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        out_f, in_f = self.weight.shape
        return f"in_features={in_f}, out_features={out_f}, bias={self.bias is not None}"


class Conv2d(Module):
    """2-D convolution: ``(N, in, H, W)`` -> ``(N, out, Ho, Wo)``; weight
    ``(out, in/groups, k, k)``. ``groups=in_channels=out_channels`` is a depthwise conv."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        rng: int | np.random.Generator | None = None,
        groups: int = 1,
    ) -> None:
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide {in_channels} and {out_channels}")
        g = _rng(rng)
        fan_in = in_channels // groups * kernel_size * kernel_size
        shape = (out_channels, in_channels // groups, kernel_size, kernel_size)
        self.weight = Parameter(kaiming_normal(shape, fan_in, g))
        self.bias = Parameter(np.zeros(out_channels, np.float32)) if bias else None
        self.stride, self.padding, self.groups = stride, padding, groups

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.groups)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        groups = f", groups={self.groups}" if self.groups != 1 else ""
        return (
            f"{i * self.groups}, {o}, kernel_size={k}, stride={self.stride}, "
            f"padding={self.padding}{groups}"
        )


class _BatchNorm(Module):
    """``activation`` ("relu" or "relu6") is applied to the output in the same fused op, as a
    ``ReLU``/``ReLU6`` module after it would, with fewer passes over memory."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        activation: str | None = None,
    ) -> None:
        F.activation_bounds(activation)  # an unknown name fails here, not at the first forward
        self.weight = Parameter(np.ones(num_features, np.float32))
        self.bias = Parameter(np.zeros(num_features, np.float32))
        self.register_buffer("running_mean", np.zeros(num_features, np.float32))
        self.register_buffer("running_var", np.ones(num_features, np.float32))
        self.eps, self.momentum, self.activation = eps, momentum, activation

    def forward(self, x: Tensor) -> Tensor:
        buffers = self.__dict__["_buffers"]
        return F.batch_norm(
            x,
            buffers["running_mean"],
            buffers["running_var"],
            self.weight,
            self.bias,
            training=self.training,
            momentum=self.momentum,
            eps=self.eps,
            activation=self.activation,
        )

    def extra_repr(self) -> str:
        then = f", activation={self.activation!r}" if self.activation else ""
        return f"{self.weight.shape[0]}, eps={self.eps}, momentum={self.momentum}{then}"


class BatchNorm1d(_BatchNorm):
    """Batch norm over ``(N, C)``: each feature normalised over the batch."""


class BatchNorm2d(_BatchNorm):
    """Batch norm over ``(N, C, H, W)``: each channel normalised over batch and pixels."""


class ReLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.relu()


class ReLU6(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.relu6(x)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01) -> None:
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        return x.leaky_relu(self.negative_slope)


class Dropout(Module):
    """Zeroes activations with probability ``p`` while training; the identity in eval mode.

    ``rng`` is the module's own ``numpy.random.Generator``, so a training run (and a resumed one)
    is reproducible: its state can be saved with ``rng.bit_generator.state``.
    """

    def __init__(self, p: float = 0.5, rng: int | np.random.Generator | None = None) -> None:
        self.p = p
        self.rng = _rng(rng)

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training, self.rng)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Flatten(Module):
    """``(N, ...)`` -> ``(N, prod(...))``."""

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)


class MaxPool2d(Module):
    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0) -> None:
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(MaxPool2d):
    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class GlobalAvgPool2d(Module):
    """``(N, C, H, W)`` -> ``(N, C)``: the mean of each channel."""

    def forward(self, x: Tensor) -> Tensor:
        return F.global_avg_pool2d(x)


class Identity(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


class Sequential(Module):
    """Modules applied in order; children are named ``"0"``, ``"1"``, ... as in PyTorch."""

    def __init__(self, *layers: Module) -> None:
        for i, layer in enumerate(layers):
            setattr(self, str(i), layer)

    def __iter__(self) -> Iterator[Module]:
        return (module for _, module in self.named_children())

    def __getitem__(self, i: int | slice) -> Module:
        """One layer, or for a slice a ``Sequential`` of those layers (the same objects)."""
        layers = list(self)
        return Sequential(*layers[i]) if isinstance(i, slice) else layers[i]

    def __len__(self) -> int:
        return len(list(self.named_children()))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self:
            x = layer(x)
        return x


def conv_bn(x: Tensor, conv: Conv2d, bn: _BatchNorm) -> Tensor:
    """``bn(conv(x))``: ``(N, C, H, W)`` -> ``(N, O, Ho, Wo)``, with ``bn``'s activation.

    In eval mode (running statistics) a BatchNorm is a fixed affine map per channel,
    ``y * scale + shift``, and a convolution is linear per output channel, so the BatchNorm
    folds into it: the kernel of output channel ``o`` scaled by ``scale[o]``, ``shift`` as the
    bias (where the products' sum starts) and the activation clipped in place, one op: the
    BatchNorm's own pass over the output, and its output array, are gone.
    The fold is made of tensor ops, so gradients reach ``conv.weight``, ``bn.weight`` and
    ``bn.bias`` as through the two layers (fine-tuning with frozen statistics, ``lock_eval``).

    The two layers run as they are in training (the BatchNorm needs the batch's statistics),
    and where scaling the kernels costs more than the pass it saves: one multiply per weight
    against one per output value, e.g. a 1x1 conv from 1152 channels on a 7x7 map. That choice
    is made per image, never from the batch size: the two ways round differently, and a
    batch job cut into other batches would otherwise take the other way for some of them.
    """
    if bn.training:
        return bn(conv(x))
    _, _, h, w = x.shape
    _, per_group, kh, kw = conv.weight.shape
    p, s = conv.padding, conv.stride
    pixels = _out_size(h, kh, s, p) * _out_size(w, kw, s, p)  # per image: see the docstring
    if pixels < per_group * kh * kw:
        return bn(conv(x))
    mean, var = bn.running_mean, bn.running_var
    scale = bn.weight * (1.0 / xp.sqrt(var + bn.eps)).astype(var.dtype)  # (O,)
    shift = bn.bias - scale * mean
    if conv.bias is not None:
        shift = shift + scale * conv.bias
    weight = conv.weight * scale.reshape(-1, 1, 1, 1)
    return F.conv2d(
        x, weight, shift, conv.stride, conv.padding, conv.groups, activation=bn.activation
    )


class ConvBN(Sequential):
    """``Conv2d`` then ``BatchNorm2d`` (with its activation), folded into one op in eval mode
    (``conv_bn``). Children and parameter names are those of ``Sequential(conv, bn)``:
    ``0.weight``, ``1.weight``, ``1.running_mean``, ..."""

    def __init__(self, conv: Conv2d, bn: BatchNorm2d) -> None:
        super().__init__(conv, bn)

    def forward(self, x: Tensor) -> Tensor:
        return conv_bn(x, getattr(self, "0"), getattr(self, "1"))
