"""Networks built from a JSON-able config dict, so a model card fully describes its model.

Three families:

- ``{"type": "resnet", "channels": [c1, c2, c3], "stem": c0, "stem_stride": s, "dropout": p}``:
  a small residual CNN for ``(N, 3, H, W)`` images. A 3x3 stem that halves the resolution
  (stride 2, or stride 1 followed by 2x2 max pooling), then per stage one residual block (two
  3x3 convs with BatchNorm and an identity shortcut), with a stride-2 downsampling conv before
  it in every stage but the first (which gets a stride-1 conv only where its width differs from
  the stem's), then global average pooling and a linear classifier. Global pooling makes it
  indifferent to where in the frame the hotdog is, and it works for any input size.
- ``{"type": "mlp", "in_features": d, "hidden": [h1, h2], "dropout": p}``: the original approach,
  a multi-layer perceptron over flattened (usually grayscale) pixels ``(N, C, H, W) -> (N, d)``.
- ``{"type": "efficientnet_lite", "num_classes": k, "dropout": p}``: EfficientNet-Lite0, the
  ImageNet network that the pretrained models fine-tune (``stages``, ``stem`` and ``head``
  describe other widths and depths).

All output ``(N, num_classes)`` logits; class 1 is "hotdog".
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from micrograd import nn
from micrograd.tensor import Tensor


class ConvBNReLU(nn.ConvBN):
    """3x3 conv (no bias: BatchNorm has one) -> BatchNorm -> ReLU, one fused op in eval mode
    (``nn.conv_bn``). NCHW -> NCHW."""

    def __init__(self, cin: int, cout: int, stride: int, rng: np.random.Generator) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False, rng=rng),
            nn.BatchNorm2d(cout, activation="relu"),
        )


class ResidualBlock(nn.Module):
    """``relu(x + bn(conv(relu(bn(conv(x))))))``: shape-preserving, ``(N, C, H, W)``."""

    def __init__(self, channels: int, rng: np.random.Generator) -> None:
        self.conv1 = ConvBNReLU(channels, channels, 1, rng)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False, rng=rng)
        self.bn2 = nn.BatchNorm2d(channels)
        # start each block close to the identity so the deep signal path trains from step one
        self.bn2.weight.data[...] = 0.25

    def forward(self, x: Tensor) -> Tensor:
        return (x + nn.conv_bn(self.conv1(x), self.conv2, self.bn2)).relu()


class ResNet(nn.Module):
    """Small residual CNN: ``(N, in_channels, H, W)`` -> ``(N, num_classes)`` logits."""

    def __init__(
        self,
        channels: list[int],
        stem: int,
        in_channels: int = 3,
        num_classes: int = 2,
        dropout: float = 0.0,
        seed: int = 0,
        stem_stride: int = 1,
    ) -> None:
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, not {stem_stride}")
        rng = np.random.default_rng(seed)
        # The stem halves the resolution: a stride-2 conv, or a full-resolution conv + max pool.
        stem_layers: list[nn.Module] = (
            [ConvBNReLU(in_channels, stem, 2, rng)]
            if stem_stride == 2
            else [ConvBNReLU(in_channels, stem, 1, rng), nn.MaxPool2d(2)]
        )
        layers = stem_layers
        cin = stem
        for i, c in enumerate(channels):
            if i > 0 or c != cin:
                layers.append(ConvBNReLU(cin, c, 2 if i > 0 else 1, rng))
            layers.append(ResidualBlock(c, rng))
            cin = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.GlobalAvgPool2d()
        self.dropout = nn.Dropout(dropout, rng=rng)
        self.head = nn.Linear(cin, num_classes, rng=rng)

    def classify(self, features: Tensor) -> Tensor:
        """The last feature maps ``self.features(x)`` ``(N, C, h, w)`` -> logits."""
        return self.head(self.dropout(self.pool(features)))

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.features(x))


class MLP(nn.Module):
    """Flattened pixels -> ReLU hidden layers -> logits: ``(N, C, H, W)`` -> ``(N, classes)``."""

    def __init__(
        self,
        in_features: int,
        hidden: list[int],
        num_classes: int = 2,
        dropout: float = 0.0,
        seed: int = 0,
    ) -> None:
        rng = np.random.default_rng(seed)
        layers: list[nn.Module] = [nn.Flatten()]
        cin = in_features
        for h in hidden:
            layers += [nn.Linear(cin, h, rng=rng), nn.BatchNorm1d(h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout, rng=rng))
            cin = h
        layers.append(nn.Linear(cin, num_classes, rng=rng))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def make_conv_bn(
    cin: int,
    cout: int,
    kernel: int,
    stride: int,
    rng: np.random.Generator,
    groups: int = 1,
    activation: bool = True,
) -> nn.ConvBN:
    """kxk conv (symmetric ``k//2`` padding, no bias) -> BatchNorm (eps 1e-3) -> ReLU6 (none
    with ``activation=False``), one fused op in eval mode (``nn.conv_bn``)."""
    return nn.ConvBN(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False, rng=rng, groups=groups),
        nn.BatchNorm2d(cout, eps=1e-3, activation="relu6" if activation else None),
    )


class MBConv(nn.Module):
    """Inverted residual block (MobileNetV2; EfficientNet-Lite drops squeeze-excitation):
    1x1 expand to ``cin * expand`` channels, kxk depthwise, 1x1 linear projection, and the
    input added back when the shape allows. ``(N, cin, H, W)`` -> ``(N, cout, H/s, W/s)``."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, expand: int, rng: np.random.Generator
    ) -> None:
        mid = cin * expand
        self.expand = make_conv_bn(cin, mid, 1, 1, rng) if expand != 1 else None
        self.depthwise = make_conv_bn(mid, mid, kernel, stride, rng, groups=mid)
        self.project = make_conv_bn(mid, cout, 1, 1, rng, activation=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        h = self.expand(x) if self.expand is not None else x
        h = self.project(self.depthwise(h))
        return x + h if self.residual else h


#: EfficientNet-Lite0's stages: (repeats, kernel, stride of the first block, expansion, out).
LITE0_STAGES = [
    [1, 3, 1, 1, 16],
    [2, 3, 2, 6, 24],
    [2, 5, 2, 6, 40],
    [3, 3, 2, 6, 80],
    [3, 5, 1, 6, 112],
    [4, 5, 2, 6, 192],
    [1, 3, 1, 6, 320],
]
#: EfficientNet-Lite2's: Lite0's widened 1.1x and deepened 1.2x, the first and last stage kept
#: at one block as the Lite variants do (stem and head stay 32 and 1280 wide).
LITE2_STAGES = [
    [1, 3, 1, 1, 16],
    [3, 3, 2, 6, 24],
    [3, 5, 2, 6, 48],
    [4, 3, 2, 6, 88],
    [4, 5, 1, 6, 120],
    [5, 5, 2, 6, 208],
    [1, 3, 1, 6, 352],
]


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite (Tan & Le, 2019; the Lite variants drop squeeze-excitation and use
    ReLU6): ``(N, 3, H, W)`` -> ``(N, num_classes)`` logits.

    A stride-2 3x3 stem, MBConv stages (``stages`` rows as in ``LITE0_STAGES``), a 1x1 conv to
    ``head`` channels, global average pooling, dropout and a linear classifier. With the
    defaults and ``num_classes=1000`` its parameters are ImageNet EfficientNet-Lite0's, named
    so ``training.pretrained`` can load them. The network halves the resolution five times:
    224 px in, 7x7 feature maps out of ``features``.
    """

    def __init__(
        self,
        num_classes: int = 2,
        stages: list[list[int]] | None = None,
        stem: int = 32,
        head: int = 1280,
        dropout: float = 0.2,
        seed: int = 0,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.stem = make_conv_bn(3, stem, 3, 2, rng)
        blocks: list[nn.Module] = []
        cin = stem
        for repeats, kernel, stride, expand, cout in stages or LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if r == 0 else 1, expand, rng))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = make_conv_bn(cin, head, 1, 1, rng)
        self.pool = nn.GlobalAvgPool2d()
        self.dropout = nn.Dropout(dropout, rng=rng)
        self.classifier = nn.Linear(head, num_classes, rng=rng)

    def features(self, x: Tensor) -> Tensor:
        """The last convolutional feature maps ``(N, head, H/32, W/32)`` (for Grad-CAM)."""
        return self.head(self.blocks(self.stem(x)))

    def classify(self, features: Tensor) -> Tensor:
        """``features`` ``(N, head, h, w)`` -> logits ``(N, num_classes)``."""
        return self.classifier(self.dropout(self.pool(features)))

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.features(x))


#: The most parameters a config may ask for: a weights file from elsewhere must not be able to
#: make the server allocate gigabytes before its arrays are even compared with the config.
MAX_PARAMETERS = 50_000_000


def unknown_architecture(kind: Any) -> ValueError:
    """The one error for a config whose ``type`` names no network here."""
    return ValueError(
        f"unknown architecture type {kind!r} (expected 'resnet', 'mlp' or 'efficientnet_lite')"
    )


def parameter_estimate(config: dict[str, Any]) -> int:
    """About as many parameters as the network of ``config`` would have, never fewer (within
    2x), from the config alone, so absurd configs are refused before anything is allocated;
    ``ValueError`` for a malformed config."""
    kind = config.get("type")
    try:
        classes = int(config.get("num_classes", 2))
        if kind == "resnet":
            widths = [int(config["stem"]), *map(int, config["channels"])]
            convs = 9 * int(config.get("in_channels", 3)) * widths[0]
            convs += sum(9 * a * b + 18 * b * b for a, b in itertools.pairwise(widths))
            return convs + 18 * widths[-1] ** 2 + 6 * sum(widths) + (widths[-1] + 1) * classes
        if kind == "mlp":
            sizes = [int(config["in_features"]), *map(int, config["hidden"]), classes]
            return sum((a + 3) * b for a, b in itertools.pairwise(sizes))
        if kind == "efficientnet_lite":
            total, cin = 27 * int(config.get("stem", 32)), int(config.get("stem", 32))
            for repeats, kernel, _, expand, cout in config.get("stages") or LITE0_STAGES:
                for _ in range(int(repeats)):
                    mid = cin * int(expand)
                    total += mid * (cin + int(kernel) ** 2 + int(cout) + 4) + 2 * int(cout)
                    cin = int(cout)
            head = int(config.get("head", 1280))
            return total + cin * head + 2 * head + (head + 1) * classes
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed {kind} config ({exc})") from None
    raise unknown_architecture(kind)


def check_config(config: dict[str, Any]) -> None:
    """``ValueError`` (one line) for a config no network can be built from: a size that is not
    a positive integer (a width of 0 would divide by zero at initialisation), a dropout
    outside [0, 1), or more than ``MAX_PARAMETERS``. Cheap: nothing is allocated."""
    dropout = config.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), not {dropout!r}")
    sizes = [
        config[k]
        for k in ("stem", "in_features", "head", "in_channels", "num_classes")
        if k in config
    ]
    for key in ("channels", "hidden", "stages"):
        value = config.get(key) or []
        if not isinstance(value, list):
            raise ValueError(f"{key} must be a list, not {value!r}")
        sizes += [v for row in value for v in (row if isinstance(row, list) else [row])]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes):
        raise ValueError(f"every size in the architecture must be a positive integer: {sizes}")
    count = parameter_estimate(config)
    if not 0 < count <= MAX_PARAMETERS:
        raise ValueError(f"the config asks for {count:,} parameters (the limit is 50 million)")


def build(config: dict[str, Any]) -> nn.Module:
    """Instantiate the network a config dict describes (see the module docstring); a config
    ``check_config`` refuses is refused before anything is allocated."""
    check_config(config)
    kind = config.get("type")
    params = {k: v for k, v in config.items() if k != "type"}
    if kind == "resnet":
        return ResNet(**params)
    if kind == "mlp":
        return MLP(**params)
    if kind == "efficientnet_lite":
        return EfficientNetLite(**params)
    raise unknown_architecture(kind)


#: The shipped CNN's architecture (benchmarks and training presets use it).
HOTDOG_CNN: dict[str, Any] = {
    "type": "resnet",
    "stem": 32,
    "stem_stride": 2,
    "channels": [32, 64, 128],
    "in_channels": 3,
    "num_classes": 2,
    "dropout": 0.2,
}
