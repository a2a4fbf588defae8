"""Tensor layers: the Module protocol, initialisation, and small networks that must learn."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import micrograd.functional as F
from micrograd import Tensor, nn, no_grad
from micrograd.optim import Adam
from models.architectures import HOTDOG_CNN, build
from tests.conftest import optional_import


@pytest.fixture(scope="module")
def torch() -> Any:
    return optional_import("torch")


def small_cnn(seed: int = 0) -> nn.Sequential:
    """Conv-BN-ReLU-Pool twice, global pooling, linear head: ``(N, 3, H, W)`` -> ``(N, 2)``."""
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, rng=rng),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1, bias=False, rng=rng),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.GlobalAvgPool2d(),
        nn.Dropout(0.1, rng=rng),
        nn.Linear(16, 2, rng=rng),
    )


def torch_small_cnn(torch: Any) -> Any:
    tnn = torch.nn
    return tnn.Sequential(
        tnn.Conv2d(3, 8, 3, padding=1),
        tnn.BatchNorm2d(8),
        tnn.ReLU(),
        tnn.MaxPool2d(2),
        tnn.Conv2d(8, 16, 3, padding=1, bias=False),
        tnn.BatchNorm2d(16),
        tnn.ReLU(),
        tnn.AdaptiveAvgPool2d(1),
        tnn.Flatten(),
        tnn.Dropout(0.1),
        tnn.Linear(16, 2),
    )


# ---------------------------------------------------------------------- Module protocol
def test_parameter_names_and_order() -> None:
    model = small_cnn()
    names = [name for name, _ in model.named_parameters()]
    assert names == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "4.weight",
        "5.weight",
        "5.bias",
        "9.weight",
        "9.bias",
    ]
    assert [id(p) for p in model.parameters()] == [id(p) for _, p in model.named_parameters()]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in model.parameters())
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())


def test_names_and_outputs_match_torch(torch: Any) -> None:
    ours, theirs = small_cnn(), torch_small_cnn(torch)
    # torch's Sequential here has an extra Flatten, so its head is "10" where ours is "9"
    rename = {"9.weight": "10.weight", "9.bias": "10.bias"}
    state = {rename.get(k, k): torch.tensor(v) for k, v in ours.state_dict().items()}
    torch_keys = {k for k in theirs.state_dict() if not k.endswith("num_batches_tracked")}
    assert set(state) == torch_keys
    theirs.load_state_dict(state, strict=False)
    x = np.random.default_rng(3).standard_normal((4, 3, 8, 6)).astype(np.float32)
    ours.eval(), theirs.eval()
    with no_grad():
        out = ours(Tensor(x)).data
    np.testing.assert_allclose(out, theirs(torch.tensor(x)).detach().numpy(), atol=1e-5)
    # one training step, without dropout, gives the same gradients and running statistics
    ours.train(), theirs.train()
    ours[8].p = theirs[9].p = 0.0
    F.cross_entropy(ours(Tensor(x)), [0, 1, 1, 0]).backward()
    target = torch.tensor([0, 1, 1, 0])
    torch.nn.functional.cross_entropy(theirs(torch.tensor(x)), target).backward()
    torch_state = theirs.state_dict()
    for name, value in ours.state_dict().items():
        np.testing.assert_allclose(value, torch_state[rename.get(name, name)], atol=1e-6)
    torch_grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(
            p.grad, torch_grads[rename.get(name, name)].grad.numpy(), atol=1e-5, err_msg=name
        )


def test_buffers_are_state_but_not_parameters() -> None:
    bn = nn.BatchNorm2d(4)
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in bn.named_buffers()] == ["running_mean", "running_var"]
    assert set(bn.state_dict()) == {"weight", "bias", "running_mean", "running_var"}
    model = small_cnn()
    assert "1.running_mean" in model.state_dict()
    assert all("running" not in n for n, _ in model.named_parameters())


def test_train_and_eval_propagate() -> None:
    model = build(HOTDOG_CNN)
    assert model.eval() is model
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_eval_mode_freezes_batch_norm_and_dropout() -> None:
    model = small_cnn()
    x = Tensor(np.random.default_rng(0).standard_normal((4, 3, 6, 6)))
    model.eval()
    state = model.state_dict()
    with no_grad():
        a, b = model(x).data, model(x).data
    np.testing.assert_array_equal(a, b)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, state[name])
    model.train()
    model(x)
    assert not np.array_equal(model.state_dict()["1.running_mean"], state["1.running_mean"])


def test_zero_grad() -> None:
    model = small_cnn()
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, 4, 4)))
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_state_dict_round_trip_through_npz(tmp_path: Path) -> None:
    source, target = small_cnn(seed=0), small_cnn(seed=1)
    x = Tensor(np.random.default_rng(0).standard_normal((3, 3, 8, 8)))
    source(x)  # move the running statistics away from their initial values
    path = tmp_path / "weights.npz"
    np.savez(path, **source.state_dict())
    with np.load(path, allow_pickle=False) as saved:
        target.load_state_dict(dict(saved))
    for name, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[name], value, err_msg=name)
    source.eval(), target.eval()
    with no_grad():
        np.testing.assert_array_equal(source(x).data, target(x).data)


def test_state_dict_holds_copies() -> None:
    model = nn.Linear(3, 2, rng=0)
    state = model.state_dict()
    state["weight"][...] = 0.0
    assert np.abs(model.weight.data).sum() > 0
    assert state["weight"].dtype == np.float32


def test_load_state_dict_loads_in_place() -> None:
    model = nn.Linear(3, 2, rng=0)
    weight = model.weight
    model.load_state_dict({"weight": np.ones((2, 3)), "bias": np.zeros(2)})
    assert model.weight is weight and model.weight.dtype == np.float32
    np.testing.assert_array_equal(model.weight.data, np.ones((2, 3)))


def test_load_state_dict_rejects_mismatches() -> None:
    model = small_cnn()
    state = model.state_dict()
    with pytest.raises(ValueError, match=r"0\.weight"):
        model.load_state_dict({**state, "0.weight": np.zeros((8, 3, 5, 5))})
    missing = {k: v for k, v in state.items() if k != "9.bias"}
    with pytest.raises(KeyError, match=r"9\.bias"):
        model.load_state_dict(missing)
    with pytest.raises(KeyError, match="extra"):
        model.load_state_dict({**state, "extra": np.zeros(1)})
    model.load_state_dict(missing, strict=False)  # partial loads are allowed when asked for


def test_kaiming_init_statistics() -> None:
    conv = nn.Conv2d(64, 128, 3, rng=0)
    fan_in = 64 * 9
    w = conv.weight.data
    assert w.shape == (128, 64, 3, 3) and w.dtype == np.float32
    assert abs(w.mean()) < 0.01 * math.sqrt(2 / fan_in) * 10
    assert w.std() == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)
    assert conv.bias is not None and not conv.bias.data.any()
    linear = nn.Linear(1000, 300, rng=1)
    assert linear.weight.data.std() == pytest.approx(math.sqrt(2 / 1000), rel=0.02)
    # ReLU activations keep their scale through a Kaiming-initialised layer
    x = np.random.default_rng(2).standard_normal((512, 1000)).astype(np.float32)
    with no_grad():
        h = linear(Tensor(x)).relu().data
    assert (h**2).mean() == pytest.approx((x**2).mean(), rel=0.1)


def test_init_is_seeded() -> None:
    np.testing.assert_array_equal(
        nn.Conv2d(3, 4, 3, rng=7).weight.data, nn.Conv2d(3, 4, 3, rng=7).weight.data
    )
    assert not np.array_equal(
        nn.Linear(5, 5, rng=1).weight.data, nn.Linear(5, 5, rng=2).weight.data
    )


def test_sequential_container() -> None:
    model = small_cnn()
    assert len(model) == 10
    assert isinstance(model[0], nn.Conv2d) and isinstance(model[-1], nn.Linear)
    assert [type(m) for m in model][2] is nn.ReLU
    assert "Conv2d(3, 8, kernel_size=3" in repr(model)


def test_small_cnn_overfits_one_batch() -> None:
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((16, 3, 12, 12)))
    y = np.array([0, 1] * 8)
    rng.shuffle(y)
    model = small_cnn()
    optimizer = Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with no_grad():
        logits = model(x)
    assert (logits.argmax(axis=1) == y).mean() == 1.0
    assert F.cross_entropy(logits, y).item() < 0.2


# ---------------------------------------------------------------------- fine-tuning controls
def mobile_block(rng: np.random.Generator) -> nn.Sequential:
    """Depthwise 5x5 (stride 2) -> BN (eps 1e-3) -> ReLU6 -> 1x1 -> BN, as in MobileNets."""
    return nn.Sequential(
        nn.Conv2d(4, 4, 5, stride=2, padding=2, bias=False, rng=rng, groups=4),
        nn.BatchNorm2d(4, eps=1e-3),
        nn.ReLU6(),
        nn.Conv2d(4, 3, 1, bias=False, rng=rng),
        nn.BatchNorm2d(3, eps=1e-3),
    )


def torch_mobile_block(torch: Any) -> Any:
    tnn = torch.nn
    return tnn.Sequential(
        tnn.Conv2d(4, 4, 5, stride=2, padding=2, bias=False, groups=4),
        tnn.BatchNorm2d(4, eps=1e-3),
        tnn.ReLU6(),
        tnn.Conv2d(4, 3, 1, bias=False),
        tnn.BatchNorm2d(3, eps=1e-3),
    )


def assert_same_gradients_and_buffers(
    ours: nn.Module, theirs: Any, x: Tensor, x_torch: Any, buffer_rtol: float
) -> None:
    """After a backward in both: the same input and parameter gradients (float64, 1e-9), and
    the same buffers (running statistics)."""
    np.testing.assert_allclose(x.grad, x_torch.grad.numpy(), atol=1e-9)
    torch_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, torch_params[name].grad.numpy(), atol=1e-9)
    torch_buffers = dict(theirs.named_buffers())
    for name, value in ours.named_buffers():
        np.testing.assert_allclose(
            value, torch_buffers[name].numpy(), rtol=buffer_rtol, err_msg=name
        )


@pytest.mark.parametrize("frozen_bn", [False, True])
def test_mobile_block_matches_torch_with_frozen_batch_norm(frozen_bn: bool, torch: Any) -> None:
    rng = np.random.default_rng(3)
    ours, theirs = mobile_block(rng), torch_mobile_block(torch).double()
    state = ours.state_dict()
    for name in state:
        if "running" in name:  # non-trivial statistics, so eval mode differs from training
            state[name] = rng.uniform(0.5, 1.5, state[name].shape).astype(np.float32)
    ours.load_state_dict(state)
    theirs.load_state_dict({k: torch.tensor(v, dtype=torch.float64) for k, v in state.items()})
    ours.train()
    theirs.train()
    if frozen_bn:
        ours[1].lock_eval()
        ours.train()  # a locked module stays in eval mode
        assert not ours[1].training and ours[4].training
        theirs[1].eval()
    x = rng.standard_normal((2, 4, 9, 7))
    weights = rng.standard_normal((2, 3, 5, 4))
    xt = Tensor(x, requires_grad=True, dtype=None)
    for p in ours.parameters():  # float64 throughout, so the comparison can be tight
        p.data = p.data.astype(np.float64)
    for i in (1, 4):
        for name in ("running_mean", "running_var"):
            ours[i].register_buffer(name, state[f"{i}.{name}"].astype(np.float64))
    (ours(xt) * Tensor(weights, dtype=None)).sum().backward()
    xt_torch = torch.tensor(x, requires_grad=True)
    (theirs(xt_torch) * torch.tensor(weights)).sum().backward()
    assert_same_gradients_and_buffers(ours, theirs, xt, xt_torch, buffer_rtol=1e-6)
    assert np.array_equal(ours[1].running_mean, state["1.running_mean"]) == frozen_bn


def test_requires_grad_false_freezes_parameters() -> None:
    model = small_cnn()
    model[0].requires_grad_(False)
    frozen = model[0].weight.data.copy()
    optimizer = Adam(model.parameters(), lr=0.1)
    x = Tensor(np.random.default_rng(0).standard_normal((4, 3, 6, 6)))
    F.cross_entropy(model(x), np.array([0, 1, 0, 1])).backward()
    assert model[0].weight.grad is None and model[0].bias.grad is None
    assert model[4].weight.grad is not None
    optimizer.step()
    np.testing.assert_array_equal(model[0].weight.data, frozen)
    model.requires_grad_(True)
    assert all(p.requires_grad for p in model.parameters())


def test_buffers_read_as_attributes() -> None:
    bn = nn.BatchNorm2d(3)
    np.testing.assert_array_equal(bn.running_var, np.ones(3))
    with pytest.raises(AttributeError, match="no attribute"):
        _ = bn.running_median


def test_grouped_conv_module_repr_and_shapes() -> None:
    conv = nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False)
    assert conv.weight.shape == (6, 1, 3, 3)
    assert "groups=6" in repr(conv)
    assert conv(Tensor(np.zeros((1, 6, 5, 5)))).shape == (1, 6, 5, 5)
    with pytest.raises(ValueError, match="groups"):
        nn.Conv2d(6, 4, 3, groups=4)


def test_batch_norm_module_with_its_activation_is_the_two_modules_in_a_row() -> None:
    x = Tensor(np.random.default_rng(0).standard_normal((4, 3, 5, 5)) * 4)
    fused, plain = nn.BatchNorm2d(3, activation="relu6"), nn.BatchNorm2d(3)
    np.testing.assert_allclose(fused(x).data, nn.ReLU6()(plain(x)).data, atol=1e-6)
    assert "activation='relu6'" in repr(fused)
    with pytest.raises(ValueError, match="activation"):
        nn.BatchNorm2d(3, activation="tanh")


CONV_BN_CASES = [
    # conv: in, out, kernel, stride, groups, bias; BatchNorm activation; folded in eval
    pytest.param((2, 5, 3, 2, 1, True), "relu", True, id="3x3-stride2-bias-relu"),
    pytest.param((4, 4, 5, 1, 4, False), "relu6", True, id="depthwise-5x5-relu6"),
    pytest.param((4, 3, 1, 1, 1, False), None, True, id="1x1-linear"),
    # 144 weights per output channel, 20 output pixels per image: scaling the kernels costs more
    pytest.param((16, 3, 3, 2, 1, False), "relu6", False, id="3x3-more-weights-than-pixels"),
]


@pytest.mark.parametrize("mode", ["train", "eval", "frozen"])
@pytest.mark.parametrize(("conv", "activation", "folds"), CONV_BN_CASES)
def test_conv_bn_is_the_two_layers_in_a_row(
    conv: tuple[int, ...], activation: str | None, folds: bool, mode: str, torch: Any
) -> None:
    """``ConvBN`` (folded into one op in eval mode) against PyTorch's conv, BatchNorm and
    activation in a row: outputs, the input's and every parameter's gradient, and the running
    statistics, in training, in eval and in training with the statistics frozen."""
    cin, cout, k, stride, groups, bias = conv
    rng = np.random.default_rng(5)
    ours = nn.ConvBN(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=bias, rng=rng, groups=groups),
        nn.BatchNorm2d(cout, eps=1e-3, activation=activation),
    )
    tnn = torch.nn
    act = {"relu": tnn.ReLU(), "relu6": tnn.ReLU6(), None: tnn.Identity()}[activation]
    theirs = tnn.Sequential(
        tnn.Conv2d(cin, cout, k, stride, k // 2, bias=bias, groups=groups),
        tnn.BatchNorm2d(cout, eps=1e-3),
        act,
    ).double()
    state = ours.state_dict()
    for name in ("1.weight", "1.bias", "1.running_mean"):
        state[name] = rng.standard_normal(cout).astype(np.float32)
    state["1.running_var"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
    ours.load_state_dict(state)
    theirs.load_state_dict({k: torch.tensor(v, dtype=torch.float64) for k, v in state.items()})
    for p in ours.parameters():  # float64 throughout, so the comparison can be tight
        p.data = p.data.astype(np.float64)
    for name in ("running_mean", "running_var"):
        ours[1].register_buffer(name, state[f"1.{name}"].astype(np.float64))
    ours.train(mode != "eval")
    theirs.train(mode != "eval")
    if mode == "frozen":
        ours[1].lock_eval()
        theirs[1].eval()
    x = rng.standard_normal((2, cin, 9, 7)) * 2
    xt, xt_torch = Tensor(x, requires_grad=True, dtype=None), torch.tensor(x, requires_grad=True)
    out, out_torch = ours(xt), theirs(xt_torch)
    np.testing.assert_allclose(out.data, out_torch.detach().numpy(), atol=1e-9)
    last_op = type(out._ctx).__name__  # one conv op where folded, the BatchNorm after otherwise
    assert (last_op != "BatchNormOp") == (folds and mode != "train")
    if activation is not None:  # the activation clipped somewhere, so its mask is exercised
        assert (out.data == 0).any()
    weights = rng.standard_normal(out.shape)
    (out * Tensor(weights, dtype=None)).sum().backward()
    (out_torch * torch.tensor(weights)).sum().backward()
    assert_same_gradients_and_buffers(ours, theirs, xt, xt_torch, buffer_rtol=1e-9)
    moved = not np.array_equal(ours[1].running_mean, state["1.running_mean"])
    assert moved == (mode == "train")


def test_conv_bn_keeps_the_names_of_its_two_layers() -> None:
    layer = nn.ConvBN(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4, activation="relu"))
    assert sorted(layer.state_dict()) == [
        "0.weight", "1.bias", "1.running_mean", "1.running_var", "1.weight"
    ]  # fmt: skip
    with no_grad():  # an eval forward under no_grad: one op, no graph
        out = layer.eval()(Tensor(np.ones((1, 3, 5, 5))))
    assert out.shape == (1, 4, 3, 3) and out._ctx is None and (out.data >= 0).all()
