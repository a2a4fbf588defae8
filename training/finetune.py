"""Fine-tuning a pretrained EfficientNet-Lite (Lite0, or Lite2) in minutes of CPU time.

A 224 px forward pass of the whole network costs about 50 ms on one laptop core, its backward
twice that, so training every layer for a few epochs on 6,000 photos would take hours. The
recipe keeps the expensive part fixed and pays for it once:

1. The network is split ``trainable_blocks`` blocks before its end (Lite0 has 16 blocks, Lite2
   21). The lower part (stem and most blocks, ImageNet features that already separate foods
   well) is frozen.
2. Each training photo goes through the frozen part ``views`` times: once exactly as the app
   feeds it (the serving view), and ``views - 1`` times as a random augmented crop. The
   resulting 7x7 feature maps are cached as float16 on disk, so a killed run resumes without
   recomputing them.
3. The top (the last MBConv blocks, the 1x1 head conv and a new 2-class classifier) trains on
   the cached maps with ``training.loop.fit_rows``: class- and source-balanced batches,
   AdamW with the pretrained layers at ``backbone_lr_scale`` of the classifier's rate, label
   smoothing, checkpoints every epoch. Every BatchNorm keeps its ImageNet statistics
   (``lock_eval``): the cached features were computed with them, and batch statistics of
   highly correlated views would be worse estimates.

The result is the whole network with the trained top, served like any other model.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from micrograd import Tensor, no_grad
from micrograd.nn import BatchNorm2d, Module, Sequential
from models.architectures import EfficientNetLite, build
from models.io import (
    ModelFileError,
    WeightsSource,
    atomic_write,
    load_model_file,
    source_name,
)
from models.preprocess import PreprocessConfig, normalize
from training.augment import Augmenter
from training.data import Dataset
from training.loop import Callback, FitResult, Rows, TrainConfig, fit_rows
from training.parallel import in_order

#: Photos per forward pass of the frozen part; small batches keep the activations in cache.
EXTRACT_BATCH = 4
#: 2: each unit's augmentation seeded on its own (``FeatureJob``), not from one stream per view.
FEATURES_VERSION = 2

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class FinetuneSettings:
    """How the pretrained network is split and fed (JSON-able, saved in the model card).

    pretrained: the imported ImageNet weights (``python -m training import-weights``).
    trainable_blocks: how many of the last MBConv blocks train (with the head conv and the
        classifier); the rest is frozen and its output cached.
    views: feature maps cached per training photo: the serving view and ``views - 1``
        augmented ones (``augment``, ``AugmentConfig`` fields).
    backbone_lr_scale: learning rate of the pretrained layers that train, relative to the
        new classifier's.
    dropout: before the classifier.
    """

    pretrained: str
    trainable_blocks: int = 2
    views: int = 3
    backbone_lr_scale: float = 0.1
    dropout: float = 0.2
    augment: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.trainable_blocks < 1:
            raise ValueError(f"trainable_blocks must be at least 1, not {self.trainable_blocks}")
        if self.views < 1:
            raise ValueError(f"views must be at least 1, not {self.views}")
        if not 0 < self.backbone_lr_scale <= 1:
            raise ValueError(f"backbone_lr_scale must be in (0, 1], not {self.backbone_lr_scale}")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


def load_pretrained(
    path: WeightsSource, dropout: float, seed: int
) -> tuple[EfficientNetLite, dict[str, Any]]:
    """A 2-class ``EfficientNetLite`` holding the ImageNet weights at ``path`` (or in those
    bytes) everywhere but in its new classifier, and the architecture config that rebuilds it;
    every BatchNorm keeps its ImageNet statistics (``lock_eval``: the cached features are
    computed with them). ``ModelFileError`` if the file is not an imported EfficientNet-Lite."""
    shown = source_name(path)
    state, config = load_model_file(path)
    arch = config.get("architecture", {})
    if not isinstance(arch, dict) or arch.get("type") != "efficientnet_lite":
        raise ModelFileError(f"{shown} is not an EfficientNet-Lite weights file")
    architecture = {**arch, "num_classes": 2, "dropout": dropout, "seed": seed}
    model = build(architecture)
    assert isinstance(model, EfficientNetLite)
    backbone = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    missing = {k for k in model.state_dict() if not k.startswith("classifier.")} - set(backbone)
    if missing:
        raise ModelFileError(f"{shown} lacks {len(missing)} tensors, e.g. {sorted(missing)[0]}")
    model.load_state_dict(backbone, strict=False)
    for module in model.modules():
        if isinstance(module, BatchNorm2d):
            module.lock_eval()
    return model, architecture


class Top(Module):
    """The trainable end of an ``EfficientNetLite``: its last ``k`` blocks, head conv and
    classifier (the same layer objects, not copies). ``(N, C, h, w)`` features -> logits."""

    def __init__(self, net: EfficientNetLite, k: int) -> None:
        self.blocks = net.blocks[len(net.blocks) - k :]
        self.head, self.dropout, self.classifier = net.head, net.dropout, net.classifier
        self.classify = net.classify  # pool -> dropout -> classifier: the layers above

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.head(self.blocks(x)))


def frozen_part(net: EfficientNetLite, k: int) -> Module:
    """Stem and all but the last ``k`` blocks, frozen and in eval mode."""
    part = Sequential(net.stem, *list(net.blocks)[: len(net.blocks) - k])
    return part.requires_grad_(False).eval()


# ------------------------------------------------------------------------------ features


class FeatureRows(Rows):
    """Rows of cached feature maps: row ``v * N + i`` is view ``v`` of photo ``i``.

    features: ``float16 (V, N, C, h, w)``; view 0 is the serving view, which scoring uses.
    """

    def __init__(self, features: np.ndarray, labels: np.ndarray, sources: np.ndarray, key: str):
        self.features, self.key = features, key
        self.n = features.shape[1]
        views = features.shape[0]
        self.labels = np.tile(np.asarray(labels), views)
        self.sources = np.tile(np.asarray(sources), views)

    def train_inputs(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        view, i = np.divmod(np.asarray(idx), self.n)
        return self.features[view, i].astype(np.float32)

    def eval_inputs(self, start: int, stop: int) -> np.ndarray:
        view, i = np.divmod(np.arange(start, min(stop, len(self))), self.n)
        return self.features[view, i].astype(np.float32)

    def fingerprint(self) -> str:
        return self.key


def _features_key(data: Dataset, settings: FinetuneSettings, seed: int) -> str:
    """Identity of a feature cache: photos, labels, pretrained file, split, seed. Not the
    number of views: view ``v`` depends only on ``(seed, v)``, so asking for more views
    later computes only the new ones."""
    h = hashlib.sha256()
    pretrained = Path(settings.pretrained)
    stat = pretrained.stat()
    h.update(
        json.dumps(
            {
                "version": FEATURES_VERSION,
                "pretrained": [str(pretrained.resolve()), stat.st_size, stat.st_mtime_ns],
                "trainable_blocks": settings.trainable_blocks,
                "augment": settings.augment,
                "seed": seed,
                "data": data.fingerprint(),
            },
            sort_keys=True,
        ).encode()
    )
    return h.hexdigest()[:16]


#: One unit of the feature pass: ``(view, start, pixels)``, the photos ``start, start + 1, ...``
#: as ``uint8 (n, S, S, 3)`` squares (the serving ones for view 0, the training ones otherwise).
FeatureUnit = tuple[int, int, np.ndarray]
#: How a feature pass's units are run: on this machine's cores, or on a cluster's workers
#: (``training.cluster.Cluster.map``); ``done(i)`` as unit ``i`` finishes.
RunUnits = Callable[["FeatureJob", Iterable[FeatureUnit], Callable[[int], None]], Iterable[Any]]


class FeatureJob:
    """The frozen part as a pure function of one ``FeatureUnit``: ``float16 (n, C, h, w)``.

    View 0 is the pixels as they are; view ``v > 0`` is ``augmenter`` applied to them with a
    generator seeded by ``(seed, v, start)``, so a unit's result depends on nothing computed
    before it, and units can run anywhere, in any order.
    """

    def __init__(
        self,
        part: Module,
        preprocess: PreprocessConfig,
        augmenter: Augmenter | None,
        seed: int,
        spec: dict[str, Any] | None = None,
        pretrained: Path | None = None,
    ) -> None:
        self.part, self.preprocess, self.augmenter, self.seed = part, preprocess, augmenter, seed
        # what ``from_spec`` rebuilds the job from on a worker, with the pretrained file's bytes
        self.spec, self.pretrained = spec or {}, pretrained

    def __call__(self, unit: FeatureUnit) -> np.ndarray:
        view, start, pixels = unit
        if view > 0 and self.augmenter is not None:
            pixels = self.augmenter(pixels, np.random.default_rng([self.seed, view, start]))
        x = Tensor(normalize(pixels, self.preprocess))
        with no_grad():
            return self.part(x).numpy().astype(np.float16)

    @classmethod
    def from_spec(cls, blob: bytes, spec: dict[str, Any]) -> FeatureJob:
        """The job ``spec`` describes (see ``finetune``), on the pretrained file's bytes: how a
        cluster's worker builds it."""
        net, _ = load_pretrained(blob, 0.0, spec["seed"])
        part = frozen_part(net, spec["trainable_blocks"])
        augment = spec["augment"]
        augmenter = Augmenter(augment) if augment is not None else None
        return cls(part, PreprocessConfig.from_dict(spec["preprocess"]), augmenter, spec["seed"])


def extract_views(
    job: FeatureJob,
    data: Dataset,
    views: int,
    cache_dir: Path,
    key: str,
    progress: Progress | None = None,
    run: RunUnits | None = None,
) -> np.ndarray:
    """``float16 (views, N, C, h, w)``: the frozen part's output for every view of every photo.

    View 0 is ``data.eval_images`` (serving pixels), view ``v > 0`` the training squares
    augmented (``FeatureJob``), ``EXTRACT_BATCH`` photos per unit, units run by ``run`` (default:
    ``training.parallel.in_order``, on this machine's cores). Each view is saved to
    ``cache_dir`` when done (atomically) and read back on the next run with the same key,
    whichever way it was computed.
    """
    out: list[np.ndarray] = []
    total = views * len(data)
    for v in range(views):
        path = cache_dir / f"features-{key}-view{v}.npy"
        if path.is_file():
            out.append(np.load(path, allow_pickle=False))
            if progress:
                progress((v + 1) * len(data), total)
            continue
        pixels = data.eval_images if v == 0 else data.images
        starts = range(0, len(data), EXTRACT_BATCH)
        units = ((v, start, pixels[start : start + EXTRACT_BATCH]) for start in starts)
        finished = 0

        def done(i: int, v: int = v, starts: range = starts) -> None:
            nonlocal finished
            finished += min(EXTRACT_BATCH, len(data) - starts[i])
            if progress:
                progress(v * len(data) + finished, total)

        view = np.concatenate(list((run or in_order)(job, units, done)))
        buffer = io.BytesIO()
        np.save(buffer, view, allow_pickle=False)
        with atomic_write(path) as f:
            f.write(buffer.getvalue())
        out.append(view)
    return np.stack(out)


# ------------------------------------------------------------------------------ the recipe


def finetune(
    train: Dataset,
    val: Dataset | None,
    settings: FinetuneSettings,
    config: TrainConfig,
    cache_dir: str | os.PathLike[str],
    callbacks: list[Callback] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    run: RunUnits | None = None,
) -> tuple[EfficientNetLite, dict[str, Any], FitResult]:
    """Fine-tune the pretrained network on ``train`` (see the module docstring); ``run`` runs
    the feature pass's units (``extract_views``; e.g. on a cluster).

    train, val: ``Dataset`` s at ``config.preprocess``'s size (224), ``train.images`` larger
        for the augmented views. Returns the whole network (eval mode), the architecture
        config that rebuilds it, and ``fit_rows``' result; the classifier's rate is
        ``config.lr``.
    """
    preprocess = PreprocessConfig.from_dict(config.preprocess)
    net, architecture = load_pretrained(settings.pretrained, settings.dropout, config.seed)
    k = settings.trainable_blocks
    if k > len(net.blocks):
        raise ValueError(f"trainable_blocks {k} is over the network's {len(net.blocks)} blocks")
    augment = {**settings.augment, "out_size": preprocess.size}
    spec = {"trainable_blocks": k, "augment": augment, "preprocess": config.preprocess,
            "seed": config.seed}  # fmt: skip
    part = frozen_part(net, k)
    job = FeatureJob(
        part, preprocess, Augmenter(augment), config.seed, spec, Path(settings.pretrained)
    )
    cache = Path(cache_dir)

    def rows(data: Dataset, views: int) -> FeatureRows:
        key = _features_key(data, settings, config.seed)
        features = extract_views(job, data, views, cache, key, progress, run)
        return FeatureRows(features, data.labels, data.sources, key)

    train_rows = rows(train, settings.views)
    val_rows = rows(val, 1) if val is not None else None
    top = Top(net, k)
    pretrained_params = [p for m in (top.blocks, top.head) for p in m.parameters()]
    groups = [
        {"params": top.classifier.parameters()},
        {"params": pretrained_params, "lr": config.lr * settings.backbone_lr_scale},
    ]
    result = fit_rows(
        top, train_rows, val_rows, config, callbacks or [], checkpoint, resume, param_groups=groups
    )
    return net.eval(), architecture, result
