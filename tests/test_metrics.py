"""training.metrics against cases worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from training.metrics import (
    accuracy,
    accuracy_by_group,
    balanced_accuracy,
    calibration_error,
    confusion_matrix,
    roc_auc,
    summarize,
)

# 3 hotdogs, 5 others. Predictions: 2 of 3 hotdogs found, 1 false alarm.
LABELS = [1, 1, 1, 0, 0, 0, 0, 0]
PREDS = [1, 1, 0, 1, 0, 0, 0, 0]


def test_confusion_matrix_layout() -> None:
    # tn = 4 (the last four), fp = 1, fn = 1, tp = 2
    assert confusion_matrix(LABELS, PREDS) == [[4, 1], [1, 2]]
    cm = confusion_matrix(np.array(LABELS), np.array(PREDS, dtype=bool))
    assert all(type(v) is int for row in cm for v in row)


def test_accuracy_and_balanced_accuracy() -> None:
    assert accuracy(LABELS, PREDS) == pytest.approx(6 / 8)
    # recall(not hotdog) = 4/5, recall(hotdog) = 2/3
    assert balanced_accuracy(LABELS, PREDS) == pytest.approx((4 / 5 + 2 / 3) / 2)


def test_balanced_accuracy_punishes_the_majority_answer() -> None:
    labels = [1] * 10 + [0] * 90
    always_no = [0] * 100
    assert accuracy(labels, always_no) == pytest.approx(0.9)
    assert balanced_accuracy(labels, always_no) == pytest.approx(0.5)


def test_balanced_accuracy_with_one_class_is_its_recall() -> None:
    assert balanced_accuracy([1, 1, 1, 1], [1, 1, 0, 1]) == pytest.approx(0.75)


def test_roc_auc_by_hand() -> None:
    # hotdog scores 0.9, 0.4; other scores 0.5, 0.1, 0.3.
    # Pairs (pos, neg) ranked correctly: 0.9 beats all 3; 0.4 beats 0.1 and 0.3 -> 5 of 6.
    assert roc_auc([1, 1, 0, 0, 0], [0.9, 0.4, 0.5, 0.1, 0.3]) == pytest.approx(5 / 6)


def test_roc_auc_ties_count_half() -> None:
    # Every pair tied -> 0.5; one tie out of four pairs -> (3 + 0.5) / 4.
    assert roc_auc([1, 0, 1, 0], [0.7, 0.7, 0.7, 0.7]) == pytest.approx(0.5)
    assert roc_auc([1, 1, 0, 0], [0.8, 0.5, 0.5, 0.2]) == pytest.approx(3.5 / 4)


def test_roc_auc_extremes_and_undefined() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc([1, 1, 1], [0.2, 0.5, 0.9]) is None
    assert roc_auc([0, 0], [0.2, 0.5]) is None
    assert roc_auc([0, 1], [0.2, float("nan")]) is None


def test_roc_auc_matches_the_pair_count_on_random_data() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300), 1)  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(labels, scores) == pytest.approx(wins / (len(pos) * len(neg)))


def test_summarize_is_json_ready() -> None:
    p = [0.9, 0.6, 0.4, 0.5, 0.1, 0.2, 0.3, 0.0]
    s = summarize(LABELS, p)
    assert s["n"] == 8
    assert s["confusion"] == [[4, 1], [1, 2]]  # 0.5 counts as hotdog
    assert s["accuracy"] == pytest.approx(6 / 8)
    assert s["balanced_accuracy"] == pytest.approx((4 / 5 + 2 / 3) / 2)
    # pos 0.9, 0.6, 0.4 vs neg 0.5, 0.1, 0.2, 0.3, 0.0: 5 + 5 + 4 = 14 of 15 pairs
    assert s["roc_auc"] == pytest.approx(14 / 15)
    json.dumps(s, allow_nan=False)
    stricter = summarize(LABELS, p, threshold=0.55)
    assert stricter["confusion"] == [[5, 0], [1, 2]]


def test_summarize_one_class_has_no_auc() -> None:
    s = summarize([1, 1], [0.9, 0.2])
    assert s["roc_auc"] is None
    assert s["balanced_accuracy"] == pytest.approx(0.5)
    assert not any(isinstance(v, float) and math.isnan(v) for v in s.values())


def test_accuracy_by_group() -> None:
    groups = ["a", "a", "b", "b", "b", "a", "b", "b"]
    p = [0.9, 0.6, 0.4, 0.5, 0.1, 0.2, 0.3, 0.0]
    out = accuracy_by_group(LABELS, p, groups)
    assert list(out) == ["a", "b"]
    assert out["a"] == {
        "n": 3, "accuracy": 1.0, "balanced_accuracy": 1.0, "hotdog": 2, "not_hotdog": 1
    }  # fmt: skip
    assert out["b"]["n"] == 5 and out["b"]["accuracy"] == pytest.approx(3 / 5)
    # b: its one hotdog missed, 3 of 4 others right
    assert out["b"]["balanced_accuracy"] == pytest.approx((0 + 3 / 4) / 2)


@pytest.mark.parametrize(
    ("labels", "other"),
    [([], []), ([0, 1], [0]), ([0, 2], [0, 1])],
)
def test_bad_input_is_refused(labels: list[int], other: list[int]) -> None:
    with pytest.raises(ValueError):
        accuracy(labels, other)


def test_calibration_error_by_hand() -> None:
    # bin [0.8, 0.9): two photos shown 85%, one is a hotdog -> gap 0.35, weight 2/4;
    # bin [0.1, 0.2): two photos shown 10%, none a hotdog -> gap 0.1, weight 2/4
    p = [0.85, 0.85, 0.1, 0.1]
    assert calibration_error([1, 0, 0, 0], p) == pytest.approx(0.5 * 0.35 + 0.5 * 0.1)
    # the right frequency in every bin: no error; p = 1 counts in the top bin
    assert calibration_error([1, 0, 1, 1], [0.5, 0.5, 1.0, 1.0]) == pytest.approx(0.0)


def test_calibration_error_of_a_sure_model_is_its_error_rate() -> None:
    labels = np.array([1] * 30 + [0] * 70)
    p = np.where(np.arange(100) % 10 == 0, 1 - labels, labels).astype(float)  # 10 wrong
    assert calibration_error(labels, p) == pytest.approx(0.10)


def test_calibration_error_of_sampled_labels_is_small() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200_000)
    labels = (rng.uniform(size=p.size) < p).astype(int)
    assert calibration_error(labels, p) < 0.01
    assert calibration_error(labels, np.sqrt(p)) > 0.1  # an overconfident "hotdog" everywhere
