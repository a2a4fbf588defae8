"""The fast kernels behind ``micrograd.functional``'s convolution and BatchNorm.

Each file is one idea, and each kernel is an autograd ``Function`` with its forward next to its
backward:

- ``conv.py``: ``Conv2dOp``, a dense convolution as a sum of shifted matrix products;
- ``depthwise.py``: ``DepthwiseConv2dOp``, one filter per channel, over sliding windows;
- ``batchnorm.py``: ``BatchNormOp``, normalisation in cache-sized blocks;
- ``common.py``: fused activations (and ``ReLU6Op``), scratch buffers, in-place BLAS products.

They compute exactly what ``micrograd.reference`` composes from the autograd primitives in a
few lines each; read that first. The tests check every kernel against it, forward and backward,
and against PyTorch.
"""
