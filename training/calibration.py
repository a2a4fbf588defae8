"""Temperature scaling (Guo et al., 2017): make "chance it is a hotdog: N%" mean N%.

A network trained with cross-entropy on a few thousand photos is usually overconfident on
photos it has not seen: it says 95% where it is right 85% of the time. Dividing its logits by
one number ``T`` before the softmax fixes most of that, and never changes a verdict (the sign
of the logit margin stays), so accuracy and ROC AUC are untouched.

``T`` is fitted on held-out photos by minimising their cross-entropy. The calibration error
quoted for a fitted ``T`` must come from photos that did not choose it: ``cross_fitted``
fits on one half of the held-out photos and scores the other, both ways round.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from training.data import stratified_split

#: The temperatures searched, on a log scale; the classifier accepts [0.01, 100].
T_RANGE = (0.05, 20.0)


def p_hotdog(margins: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``(N,)`` logit margins (hotdog logit minus the other) -> ``(N,)`` probability of hotdog
    after dividing by ``temperature`` (the 2-class softmax is the sigmoid of the margin)."""
    z = np.asarray(margins, dtype=np.float64) / temperature
    return np.exp(-np.logaddexp(0.0, -z))


def fit_temperature(margins: np.ndarray, labels: np.ndarray) -> float:
    """The ``T`` in ``T_RANGE`` that minimises the mean cross-entropy of ``labels`` (N,) in
    {0, 1} under ``p_hotdog(margins, T)``."""
    z = np.asarray(margins, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if z.shape != y.shape or z.ndim != 1 or len(z) == 0:
        raise ValueError(f"need equal-length 1-D margins and labels, not {z.shape}, {y.shape}")

    def loss(log_t: float) -> float:
        s = z / np.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, s) - y * s))  # -log p(label)

    lo, hi = np.log(T_RANGE)
    return float(np.exp(minimize_scalar(loss, bounds=(lo, hi), method="bounded").x))


def cross_fitted(
    margins: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """``(N,)`` probabilities of hotdog, each from a temperature fitted on the other half of
    the photos (halves stratified by label and ``groups``): an honest estimate of how
    calibrated a temperature fitted on all of them is on new photos."""
    z, y = np.asarray(margins, dtype=np.float64), np.asarray(labels)
    a, b = stratified_split(y, 0.5, seed, groups=groups)
    if len(a) == 0 or len(b) == 0:  # too few photos to halve: the in-sample fit is all there is
        return p_hotdog(z, fit_temperature(z, y))
    out = np.empty(len(z))
    for fit_on, score in ((a, b), (b, a)):
        out[score] = p_hotdog(z[score], fit_temperature(z[fit_on], y[fit_on]))
    return out
