"""Plot data first, then pictures: the filters grid is each filter scaled to [0, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from job.evaluation import Evaluation, class_scores
from job.model import NetworkParams, build_network
from job.training import TrainingHistory
from job.visualize import first_conv_filters, render_confusion, render_filters, render_history

PNG = b"\x89PNG"


def test_first_conv_filters_are_each_normalised() -> None:
    grid = first_conv_filters(build_network(NetworkParams(conv1_filters=16)))
    assert grid.layer == "conv1" and grid.filters.shape == (16, 3, 3)
    assert np.allclose(grid.filters.min(axis=(1, 2)), 0) and np.allclose(grid.filters.max(axis=(1, 2)), 1)


def test_figures_render_to_png(tmp_path: Path) -> None:
    history = TrainingHistory({"loss": [0.5, 0.3], "val_loss": [0.4, 0.35], "accuracy": [0.9, 0.95],
                               "val_accuracy": [0.92, 0.94]}, 2, 0.94, {})
    matrix = np.array([[9, 1], [2, 8]])
    evaluation = Evaluation(0.3, 0.85, 20, class_scores(matrix, ["a", "b"]), matrix.tolist())
    grid = first_conv_filters(build_network(NetworkParams(conv1_filters=16)))
    for name, figure in {"f": render_filters(grid), "h": render_history(history),
                         "c": render_confusion(evaluation)}.items():
        figure.savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == PNG
