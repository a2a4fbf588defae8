"""``models.architectures``: the networks a config builds, their shapes and training, and the
limits that refuse absurd configs before anything is allocated."""

from __future__ import annotations

import numpy as np
import pytest

import micrograd.functional as F
from micrograd import Tensor, no_grad
from models.architectures import HOTDOG_CNN, LITE2_STAGES, build, parameter_estimate


@pytest.mark.parametrize("size", [(64, 64), (32, 32), (48, 80), (17, 23)])
def test_hotdog_cnn_forward_shape(size: tuple[int, int]) -> None:
    model = build(HOTDOG_CNN)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, *size)))
    out = model(x)
    assert out.shape == (2, HOTDOG_CNN["num_classes"]) and out.dtype == np.float32
    model.eval()
    with no_grad():
        assert model(x[:1]).shape == (1, 2)
    assert model.features(x).shape[:2] == (2, HOTDOG_CNN["channels"][-1])


def test_hotdog_cnn_trains_end_to_end() -> None:
    model = build(HOTDOG_CNN)
    x = Tensor(np.random.default_rng(0).standard_normal((4, 3, 32, 32)))
    F.cross_entropy(model(x), [0, 1, 1, 0]).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
        assert p.grad.dtype == np.float32 and np.isfinite(p.grad).all(), name


def test_build_rejects_unknown_type() -> None:
    with pytest.raises(ValueError, match="unknown architecture"):
        build({"type": "transformer"})


@pytest.mark.parametrize(
    "config",
    [
        {"type": "resnet", "stem": 32, "channels": [100_000]},
        {"type": "mlp", "in_features": 10**6, "hidden": [10**5]},
        {"type": "efficientnet_lite", "head": 10**6},
        {"type": "efficientnet_lite", "stages": [[10**4, 3, 1, 6, 320]]},
    ],
)
def test_build_refuses_configs_that_would_allocate_gigabytes(config: dict) -> None:
    with pytest.raises(ValueError, match="the limit is 50 million"):
        build(config)


@pytest.mark.parametrize("config", [HOTDOG_CNN, {"type": "efficientnet_lite", "num_classes": 2}])
def test_parameter_estimate_is_never_below_the_truth(config: dict) -> None:
    true = build(config).num_parameters()
    assert true <= parameter_estimate(config) <= 2 * true


def test_lite2_stages_build_the_imported_network_shape() -> None:
    net = build({"type": "efficientnet_lite", "num_classes": 2, "stages": LITE2_STAGES})
    assert len(net.blocks) == 21
    with no_grad():
        assert net.features(Tensor(np.zeros((1, 3, 64, 64)))).shape == (1, 1280, 2, 2)
