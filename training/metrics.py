"""Binary classification metrics for hotdog (label 1) vs not hotdog (label 0).

Every function takes 1-D arrays (or sequences) of equal length ``N``: ``labels`` in {0, 1},
``preds`` in {0, 1}, ``scores`` any real number (higher means "more hotdog"). Results are plain
Python numbers and lists, ready for JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

ArrayLike = np.ndarray | Sequence[float] | Sequence[int]


def _pair(labels: ArrayLike, other: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y, o = np.asarray(labels).reshape(-1), np.asarray(other).reshape(-1)
    if len(y) != len(o):
        raise ValueError(f"labels and predictions differ in length: {len(y)} vs {len(o)}")
    if len(y) == 0:
        raise ValueError("metrics need at least one sample")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return y.astype(np.int64), o


def confusion_matrix(labels: ArrayLike, preds: ArrayLike) -> list[list[int]]:
    """``[[tn, fp], [fn, tp]]``: rows are the true label, columns the prediction (as
    scikit-learn's ``confusion_matrix`` with labels ``[0, 1]``)."""
    y, p = _pair(labels, preds)
    p = p.astype(np.int64)
    counts = np.bincount(2 * y + p, minlength=4)
    return [[int(counts[0]), int(counts[1])], [int(counts[2]), int(counts[3])]]


def accuracy(labels: ArrayLike, preds: ArrayLike) -> float:
    """Fraction of predictions equal to the label."""
    y, p = _pair(labels, preds)
    return float(np.mean(y == p))


def balanced_accuracy(labels: ArrayLike, preds: ArrayLike) -> float:
    """Mean of the recall of each class present in ``labels``.

    On a set with 10 hotdogs and 90 others, always answering "not hotdog" scores 0.9 accuracy
    but 0.5 balanced accuracy. With only one class present it is that class's recall
    (scikit-learn's convention).
    """
    (tn, fp), (fn, tp) = confusion_matrix(labels, preds)
    recalls = [hit / (hit + miss) for hit, miss in ((tn, fp), (tp, fn)) if hit + miss]
    return float(np.mean(recalls))


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float | None:
    """Area under the ROC curve: the probability that a random hotdog scores higher than a
    random non-hotdog, ties counting one half (the Mann-Whitney U statistic over n1 * n0).

    Computed from ranks with tied scores given their average rank, in O(N log N). Returns
    ``None`` when it is undefined: one class absent, or a score that is NaN.
    """
    y, s = _pair(labels, scores)
    s = s.astype(np.float64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0 or np.isnan(s).any():
        return None
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # 1-based average rank of each distinct score: a run of c ties at ranks k+1..k+c gets
    # k + (c + 1) / 2 = (last rank of the run) - (c - 1) / 2.
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    rank_sum = float(average_rank[inverse][y == 1].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def calibration_error(labels: ArrayLike, p_hotdog: ArrayLike, bins: int = 10) -> float:
    """Expected calibration error of the shown number, "chance it is a hotdog: N%".

    The probabilities ``p_hotdog`` (N,) are put into ``bins`` equal-width bins over [0, 1];
    in each bin the mean probability is compared with the fraction of hotdogs actually in it,
    and the gaps are averaged, weighted by the bin's share of the photos. 0 means that among
    photos shown "70%", seven in ten are hotdogs; a model that always says 100% or 0% scores
    its error rate.
    """
    y, p = _pair(labels, p_hotdog)
    p = np.clip(p.astype(np.float64), 0.0, 1.0)
    which = np.minimum((p * bins).astype(np.int64), bins - 1)  # p = 1 falls in the top bin
    gap = np.abs(np.bincount(which, p, bins) - np.bincount(which, y, bins))
    return float(gap.sum() / len(y))


def summarize(labels: ArrayLike, p_hotdog: ArrayLike, threshold: float = 0.5) -> dict[str, Any]:
    """All metrics for probabilities ``p_hotdog`` (N,), "hotdog" meaning ``p >= threshold``.

    Returns ``{"n", "accuracy", "balanced_accuracy", "confusion": [[tn, fp], [fn, tp]],
    "roc_auc"}`` (``roc_auc`` is None when undefined, see ``roc_auc``).
    """
    y, p = _pair(labels, p_hotdog)
    preds = (p.astype(np.float64) >= threshold).astype(np.int64)
    return {
        "n": len(y),
        "accuracy": accuracy(y, preds),
        "balanced_accuracy": balanced_accuracy(y, preds),
        "confusion": confusion_matrix(y, preds),
        "roc_auc": roc_auc(y, p),
    }


def accuracy_by_group(
    labels: ArrayLike, p_hotdog: ArrayLike, groups: ArrayLike, threshold: float = 0.5
) -> dict[str, dict[str, Any]]:
    """Accuracy within each group (e.g. each dataset source): ``{group: {"n", "accuracy",
    "balanced_accuracy", "hotdog", "not_hotdog"}}``, where the last two count the group's
    images of each class, in sorted group order."""
    y, p = _pair(labels, p_hotdog)
    g = np.asarray(groups).astype(str).reshape(-1)
    if len(g) != len(y):
        raise ValueError(f"groups and labels differ in length: {len(g)} vs {len(y)}")
    preds = (p.astype(np.float64) >= threshold).astype(np.int64)
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(g.tolist())):
        mask = g == name
        out[name] = {
            "n": int(mask.sum()),
            "accuracy": float(np.mean(preds[mask] == y[mask])),
            "balanced_accuracy": balanced_accuracy(y[mask], preds[mask]),
            "hotdog": int(y[mask].sum()),
            "not_hotdog": int((y[mask] == 0).sum()),
        }
    return out
