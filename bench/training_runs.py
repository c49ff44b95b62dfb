"""One timed training of the same network, the reference's way or ours.

Both train the search space's default point (32/64 filters, 128 units,
dropouts 0.25/0.25/0.5, Adam 1e-3 at batch 128) for the same epochs on the
same number of images (48,000 of MNIST's 60,000; 12,000 validate each epoch),
and are scored on the test set after those epochs, whatever the weights then
are. Only the way of training differs.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Any

import keras
import keras_tuner
import numpy as np

from bench import machine, reference
from job.config import JobConfig
from job.data import ImageData
from job.inputs import make_splits, test_batches, training_batches, validation_batches
from job.model import REFERENCE_BATCH, NetworkParams, build_network, compile_network


def job_run_defaults() -> dict[str, Any]:
    """The defaults a user of `job run` gets (the CLI's, which the benchmarks follow)."""
    from job import cli

    return {name: p.default for name, p in inspect.signature(cli.run).parameters.items()}


@dataclass(frozen=True)
class Measurement:
    arm: str
    epochs: int
    train_images: int
    seconds: float  # wall time inside fit, validation included
    cpu_seconds: float  # process CPU time inside fit, all threads
    test_accuracy: float
    load: float  # 1-minute load average when the training ended

    @property
    def images_per_s(self) -> float:
        return self.train_images * self.epochs / self.seconds

    @property
    def images_per_cpu_s(self) -> float:
        return self.train_images * self.epochs / self.cpu_seconds

    def row(self, **extra: Any) -> dict[str, Any]:
        return {**extra, "arm": self.arm, "epochs": self.epochs, "train_images": self.train_images,
                "seconds": round(self.seconds, 1), "images_per_s": round(self.images_per_s),
                "images_per_cpu_s": round(self.images_per_cpu_s),
                "test_accuracy": round(self.test_accuracy, 4), "load": self.load}


class ReferenceTrainer:
    """The original script's training: numpy arrays, batch 32, validation_split=0.2."""

    arm = "reference"

    def __init__(self, data_dir: str, subset: int | None = None, seed: int = 42):
        (x_train, y_train), (x_test, y_test) = reference.load_data(data_dir, subset)
        self.x_train, self.y_train = reference.preprocess(x_train, y_train)
        self.x_test, self.y_test = reference.preprocess(x_test, y_test)
        self.seed = seed

    def train(self, epochs: int) -> Measurement:
        keras.utils.set_random_seed(self.seed)
        model = reference.build_model(keras_tuner.HyperParameters())  # the defaults
        seconds, cpu = _timed(lambda: model.fit(
            self.x_train, self.y_train, epochs=epochs, batch_size=reference.BATCH_SIZE,
            validation_split=reference.VALIDATION_SPLIT, verbose=0))
        accuracy = model.evaluate(self.x_test, self.y_test, verbose=0)[1]
        trained = len(self.x_train) - int(len(self.x_train) * reference.VALIDATION_SPLIT)
        return Measurement(self.arm, epochs, trained, seconds, cpu, float(accuracy),
                           machine.load_average())


class JobTrainer:
    """Ours: job.inputs' tf.data pipeline and job.model's network, as `job run` trains."""

    def __init__(self, data: ImageData, arm: str = "ours", subset: int | None = None,
                 fused_batch_norm: bool = True, **options: Any):
        defaults = job_run_defaults()
        chosen = {name: options.get(name, defaults[name])
                  for name in ("batch_size", "jit_compile", "validation_split", "seed")}
        self.config = JobConfig(run_id="bench", subset=subset, search_subset=None, **chosen)
        self.data, self.arm, self.fused = data, arm, fused_batch_norm
        self.splits = make_splits(data.y_train, self.config)

    def train(self, epochs: int) -> Measurement:
        config, splits = self.config, self.splits
        # Built per measurement, so each one pays for filling the cache, as a run does once.
        train = training_batches(self.data, splits.train, config.batch_size, config.seed)
        validation = validation_batches(self.data, splits.validation, config.batch_size)
        keras.utils.set_random_seed(config.seed)
        params = NetworkParams()
        model = build_network(params)
        if not self.fused:
            _unfuse(model)
        compile_network(model, params.learning_rate * config.batch_size / REFERENCE_BATCH,
                        config.jit_compile)
        seconds, cpu = _timed(lambda: model.fit(train, validation_data=validation, epochs=epochs,
                                                verbose=0))
        accuracy = model.evaluate(test_batches(self.data, config.batch_size), verbose=0)[1]
        return Measurement(self.arm, epochs, len(splits.train), seconds, cpu, float(accuracy),
                           machine.load_average())


def median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def _timed(action: Any) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def _unfuse(model: keras.Model) -> None:
    """Back to Keras' own batch-norm ops, to show what `job.model.fused` is worth."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            vars(layer).pop("call", None)
