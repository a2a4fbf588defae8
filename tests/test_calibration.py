"""training.calibration: temperature scaling recovers a known temperature and helps honestly."""

from __future__ import annotations

import numpy as np
import pytest

from training.calibration import cross_fitted, fit_temperature, p_hotdog
from training.metrics import calibration_error


def _overconfident(n: int, t: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Margins ``t`` times too large for labels drawn from ``sigmoid(margin / t)``."""
    rng = np.random.default_rng(seed)
    true_margin = rng.normal(0.0, 2.0, n)
    labels = (rng.uniform(size=n) < p_hotdog(true_margin)).astype(np.int64)
    return true_margin * t, labels


def test_p_hotdog_is_the_two_class_softmax() -> None:
    logits = np.array([[0.3, 2.0], [5.0, -1.0], [800.0, -800.0]])
    e = np.exp(logits[:2] - logits[:2].max(axis=1, keepdims=True))
    margins = logits[:, 1] - logits[:, 0]
    assert p_hotdog(margins[:2]) == pytest.approx(e[:, 1] / e.sum(axis=1))
    assert p_hotdog(margins[2:]) == pytest.approx([0.0])  # no overflow warning, no NaN
    assert p_hotdog(np.array([2.0]), 2.0) == pytest.approx(p_hotdog(np.array([1.0])))


@pytest.mark.parametrize("t", [0.5, 1.0, 3.0])
def test_fit_temperature_recovers_the_true_one(t: float) -> None:
    margins, labels = _overconfident(40_000, t)
    assert fit_temperature(margins, labels) == pytest.approx(t, rel=0.05)


def test_cross_fitted_calibration_beats_the_raw_probabilities() -> None:
    margins, labels = _overconfident(2_000, 3.0, seed=1)
    before = calibration_error(labels, p_hotdog(margins))
    after = calibration_error(labels, cross_fitted(margins, labels))
    assert before > 0.08 and after < 0.04 < before


def test_temperature_never_changes_a_verdict() -> None:
    margins, labels = _overconfident(500, 2.0)
    t = fit_temperature(margins, labels)
    assert ((p_hotdog(margins, t) >= 0.5) == (margins >= 0)).all()


def test_fit_temperature_refuses_mismatched_input() -> None:
    with pytest.raises(ValueError, match="equal-length"):
        fit_temperature(np.zeros(3), np.zeros(4))


def test_cross_fitted_with_too_few_photos_to_halve() -> None:
    p = cross_fitted(np.array([2.0]), np.array([1]))
    assert p.shape == (1,) and 0.5 < p[0] <= 1.0
