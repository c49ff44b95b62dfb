"""Test-set evaluation of best_model.keras: loss, accuracy, per-class scores, confusion matrix."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import keras
import numpy as np

from job import rundir
from job.data import ImageData
from job.inputs import test_batches
from job.rundir import RunDir


@dataclass(frozen=True)
class ClassScores:
    label: str
    precision: float
    recall: float
    f1: float
    support: int  # test images of this class


@dataclass(frozen=True)
class Evaluation:
    test_loss: float
    test_accuracy: float
    test_images: int
    classes: list[ClassScores]
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted class

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evaluation:
        classes = [ClassScores(**c) for c in data["classes"]]
        return cls(**{**data, "classes": classes})


def evaluate(run: RunDir, data: ImageData, class_names: list[str], batch_size: int,
             callbacks: list[keras.callbacks.Callback] | None = None) -> Evaluation:
    """Scores `best_model.keras` on the test set, which neither search nor training saw."""
    model = keras.saving.load_model(run.require(rundir.BEST_MODEL, made_by="train"))
    test = test_batches(data, batch_size)
    loss, accuracy = model.evaluate(test, verbose=0, callbacks=callbacks)
    predicted = np.argmax(model.predict(test, verbose=0, callbacks=callbacks), axis=1)
    matrix = confusion_matrix(data.y_test, predicted, len(class_names))
    evaluation = Evaluation(test_loss=float(loss), test_accuracy=float(accuracy),
                            test_images=int(len(data.y_test)),
                            classes=class_scores(matrix, class_names),
                            confusion_matrix=matrix.tolist())
    run.write_json(rundir.METRICS, evaluation.to_json())
    return evaluation


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix


def class_scores(matrix: np.ndarray, class_names: list[str]) -> list[ClassScores]:
    hits = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
    return [ClassScores(name, round(float(p), 6), round(float(r), 6), round(float(f), 6), int(n))
            for name, p, r, f, n in zip(class_names, precision, recall, f1, actual)]


def summary(evaluation: Evaluation) -> str:
    worst = min(evaluation.classes, key=lambda c: c.f1)
    return (f"test accuracy {evaluation.test_accuracy:.4f} (loss {evaluation.test_loss:.4f}) "
            f"on {evaluation.test_images} images; weakest class {worst.label!r}: "
            f"precision {worst.precision:.4f}, recall {worst.recall:.4f}, F1 {worst.f1:.4f}")
