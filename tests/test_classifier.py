"""``models.classifier``: warnings about a photo, read from the photo itself."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from models.architectures import build
from models.classifier import Classifier
from models.preprocess import PreprocessConfig, load_image

MLP = {"type": "mlp", "in_features": 32 * 32, "hidden": [8], "num_classes": 2}


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def smooth(width: int, height: int) -> Image.Image:
    """A colourful image with detail (not blank, not gray)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = [127 + 120 * np.sin(x / (7 + 5 * c) + c) * np.cos(y / 9) for c in range(3)]
    return Image.fromarray(np.stack(rgb, axis=-1).astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def colour_model() -> Classifier:
    cnn = {"type": "resnet", "stem": 4, "channels": [4], "num_classes": 2}
    return Classifier(build(cnn), PreprocessConfig(size=32))


@pytest.fixture(scope="module")
def gray_model() -> Classifier:
    return Classifier(build(MLP), PreprocessConfig(size=32, grayscale=True))


def warnings_for(model: Classifier, data: bytes) -> tuple[str, ...]:
    image = load_image(data, draft_size=model.preprocess.size)  # as the app decodes uploads
    return model.photo_warnings(image, model.explain(image, samples=2))


def test_size_is_the_photos_own_not_the_reduced_decode(gray_model: Classifier) -> None:
    data = jpeg(smooth(256, 192))
    assert load_image(data, draft_size=32).size == (64, 48)  # what the check used to read
    assert warnings_for(gray_model, data) == ()
    (warning,) = warnings_for(gray_model, jpeg(smooth(60, 45)))
    assert "only 60×45 pixels" in warning


def test_a_turned_photo_reports_its_upright_size(colour_model: Classifier) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways
    buf = io.BytesIO()
    smooth(50, 30).save(buf, "PNG", exif=exif.tobytes())
    (warning,) = warnings_for(colour_model, buf.getvalue())
    assert "only 30×50 pixels" in warning


def test_black_and_white_is_named_for_a_colour_model(
    colour_model: Classifier, gray_model: Classifier
) -> None:
    gray = jpeg(smooth(120, 90).convert("L"))
    (warning,) = warnings_for(colour_model, gray)
    assert "black and white" in warning
    assert warnings_for(colour_model, jpeg(smooth(120, 90))) == ()
    assert warnings_for(gray_model, gray) == ()  # a gray model sees no colour anyway


def test_a_blank_photo_is_blank_not_gray(colour_model: Classifier) -> None:
    (warning,) = warnings_for(colour_model, jpeg(Image.new("RGB", (100, 80), (128, 128, 128))))
    assert "nearly blank" in warning


def test_score_decodes_a_run_and_scores_what_decodes(colour_model: Classifier) -> None:
    photos = [jpeg(smooth(80, 60)), b"", b"not a photo", jpeg(smooth(40, 90))]
    scored = colour_model.score(photos)
    assert scored.errors == ((1, "empty file"), (2, "not an image (or an unsupported format)"))
    expected = colour_model.logits_uint8(colour_model.uint8_batch([photos[0], photos[3]]))
    assert np.array_equal(scored.logits, expected)
    nothing = colour_model.score([b""])
    assert nothing.logits.shape == (0, 2) and nothing.errors == ((0, "empty file"),)
