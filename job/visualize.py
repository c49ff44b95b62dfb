"""PNGs of what the model learned and how it trained; data is computed first, then drawn.

Uses matplotlib's object API (no pyplot): no global figure state, no display needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from job import rundir
from job.evaluation import Evaluation
from job.rundir import RunDir
from job.training import TrainingHistory


@dataclass(frozen=True)
class FilterGrid:
    layer: str
    filters: np.ndarray  # (count, height, width), each scaled to [0, 1] on its own


def first_conv_filters(model: keras.Model) -> FilterGrid:
    """The first Conv2D layer's kernels (one input channel), each normalised for display."""
    conv = next((layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)), None)
    if conv is None:
        raise ValueError(f"model {model.name!r} has no Conv2D layer")
    kernel = np.asarray(conv.get_weights()[0])  # (height, width, in_channels, filters)
    filters = np.transpose(kernel.mean(axis=2), (2, 0, 1))
    low = filters.min(axis=(1, 2), keepdims=True)
    span = filters.max(axis=(1, 2), keepdims=True) - low
    scaled = np.divide(filters - low, span, out=np.full_like(filters, 0.5), where=span > 0)
    return FilterGrid(layer=conv.name, filters=scaled)


def render_filters(grid: FilterGrid) -> Figure:
    count = len(grid.filters)
    columns = min(8, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(columns * 1.1, rows * 1.25 + 0.6))
    figure.suptitle(f"{grid.layer}: {count} filters (3x3, each scaled to its own range)")
    for index in range(rows * columns):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.set_axis_off()
        if index < count:
            axes.imshow(grid.filters[index], cmap="gray", vmin=0, vmax=1)
            axes.set_title(f"#{index}", fontsize=8)
    return figure


def render_history(history: TrainingHistory) -> Figure:
    figure = Figure(figsize=(10, 4))
    for position, metric in enumerate(("loss", "accuracy"), start=1):
        axes = figure.add_subplot(1, 2, position)
        for name, style in ((metric, "-"), (f"val_{metric}", "--")):
            values = history.metrics.get(name)
            if values:
                axes.plot(range(1, len(values) + 1), values, style, marker="o", label=name)
        axes.axvline(history.best_epoch, color="grey", linewidth=0.8, label="best epoch")
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(metric)
        axes.legend()
    figure.suptitle("Final training of the best hyperparameters")
    figure.tight_layout()
    return figure


def render_confusion(evaluation: Evaluation) -> Figure:
    matrix = np.array(evaluation.confusion_matrix)
    labels = [c.label for c in evaluation.classes]
    figure = Figure(figsize=(7, 6))
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(np.log1p(matrix), cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        if count:
            color = "white" if row == column else "black"
            axes.text(column, row, str(count), ha="center", va="center", fontsize=7, color=color)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(f"Test set confusion matrix (accuracy {evaluation.test_accuracy:.4f})")
    figure.colorbar(image, ax=axes, label="log(1 + count)")
    figure.tight_layout()
    return figure


def visualize(run: RunDir) -> list[str]:
    """Writes filters.png, history.png and confusion_matrix.png; returns their names."""
    model = keras.saving.load_model(run.require(rundir.BEST_MODEL, made_by="train"), compile=False)
    run.require(rundir.HISTORY, made_by="train")
    run.require(rundir.METRICS, made_by="evaluate")
    history = TrainingHistory.from_json(run.read_json(rundir.HISTORY))
    evaluation = Evaluation.from_json(run.read_json(rundir.METRICS))
    figures = {
        rundir.FILTERS_PNG: render_filters(first_conv_filters(model)),
        rundir.HISTORY_PNG: render_history(history),
        rundir.CONFUSION_PNG: render_confusion(evaluation),
    }
    for name, figure in figures.items():
        with run.atomic(name) as temp:
            figure.savefig(temp, dpi=100)
    return list(figures)

