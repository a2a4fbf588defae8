"""micrograd: a small autograd engine.

- ``micrograd.engine.Value``: scalar autograd, API-compatible with Karpathy's micrograd.
- ``micrograd.Tensor``: autograd over numpy arrays with PyTorch names and shapes.
"""

from micrograd.tensor import Tensor, no_grad

__all__ = ["Tensor", "no_grad"]
