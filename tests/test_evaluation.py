"""Per-class scores and the confusion matrix, computed from labels."""

from __future__ import annotations

import numpy as np
import pytest

from job.evaluation import Evaluation, class_scores, confusion_matrix, summary


def test_confusion_matrix_counts_true_rows_and_predicted_columns() -> None:
    true = np.array([0, 0, 1, 2, 2, 2])
    predicted = np.array([0, 1, 1, 2, 2, 0])
    assert confusion_matrix(true, predicted, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_precision_recall_f1_per_class() -> None:
    matrix = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    scores = class_scores(matrix, ["a", "b", "c"])

    assert scores[0].precision == pytest.approx(0.5) and scores[0].recall == pytest.approx(0.5)
    assert scores[1].precision == pytest.approx(0.5) and scores[1].recall == 1.0
    assert scores[1].f1 == pytest.approx(2 / 3, abs=1e-6)
    assert scores[2].precision == 1.0 and scores[2].recall == pytest.approx(2 / 3, abs=1e-6)
    assert [s.support for s in scores] == [2, 1, 3]


def test_a_class_never_predicted_scores_zero_not_nan() -> None:
    scores = class_scores(np.array([[2, 0], [1, 0]]), ["x", "y"])
    assert scores[1].precision == 0.0 and scores[1].f1 == 0.0


def test_summary_names_the_weakest_class() -> None:
    matrix = np.array([[5, 0], [2, 3]])
    evaluation = Evaluation(0.3, 0.8, 10, class_scores(matrix, ["cat", "dog"]), matrix.tolist())
    assert "test accuracy 0.8000" in summary(evaluation) and "'dog'" in summary(evaluation)
    assert Evaluation.from_json(evaluation.to_json()) == evaluation
