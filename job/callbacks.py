"""Keras callbacks the job adds to every fit: crash-safe epoch backups, NaN and stop checks."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable

import keras
from keras_tuner.errors import FailedTrialError

from job.preemption import StopSignal


def fit_verbosity() -> int:
    """Keras progress bars on a terminal, one line per epoch in a log file."""
    return 1 if sys.stdout.isatty() else 2


class EpochBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore with atomic writes, which also stops on request.

    Keras writes the backup in place, so a kill during a save leaves a torn file;
    here each file is written under a temporary name and renamed. When `stop` is
    set, the current weights are saved at the next batch boundary and `Preempted`
    is raised: the epoch in progress is redone from those weights on resume.
    """

    def __init__(self, backup_dir: str, stop: StopSignal, delete_at_end: bool = True):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=delete_at_end)
        self.stop = stop

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._stop_if_asked()

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._stop_if_asked()

    def _stop_if_asked(self) -> None:
        if self.stop.is_set():
            self._save_model()
            self.stop.raise_if_set()

    def _save_model(self) -> None:
        os.makedirs(self.backup_dir, exist_ok=True)
        partial = self._weights_path.removesuffix(".weights.h5") + ".partial.weights.h5"
        self.model.save_weights(partial, overwrite=True)
        os.replace(partial, self._weights_path)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        with open(self._training_metadata_path + ".partial", "w") as stream:
            json.dump(metadata, stream)
        os.replace(self._training_metadata_path + ".partial", self._training_metadata_path)


class NanGuard(keras.callbacks.Callback):
    """Fails the trial when the loss is no longer a number.

    Raising `FailedTrialError` makes KerasTuner record the trial as failed and
    go on with the next one, instead of scoring a diverged model.
    """

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise FailedTrialError(f"loss became {float(loss)} at epoch {epoch + 1}")


class StopCheck(keras.callbacks.Callback):
    """Raises `Preempted` at the next batch of evaluate/predict once `stop` is set."""

    def __init__(self, stop: StopSignal):
        super().__init__()
        self.stop = stop

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.stop.raise_if_set()

    def on_predict_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.stop.raise_if_set()


class AfterEpoch(keras.callbacks.Callback):
    """Calls `action()` after every epoch; put it after EpochBackup, so the backup is written."""

    def __init__(self, action: Callable[[], None]):
        super().__init__()
        self.action = action

    def __deepcopy__(self, memo: dict) -> AfterEpoch:
        return self  # holds a shared service (the bucket sync); KerasTuner deep-copies callbacks

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.action()


class EpochLog(keras.callbacks.Callback):
    """Every finished epoch's logs, kept in a JSON file that survives a restart.

    Keras' History only holds the epochs of the current `fit`; after a resume
    this file still has the ones before it. Keyed by epoch, so a redone epoch
    replaces its earlier entry.
    """

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def read(self) -> dict[int, dict[str, float]]:
        if not os.path.exists(self.path):
            return {}
        with open(self.path) as stream:
            return {int(epoch): logs for epoch, logs in json.load(stream).items()}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        epochs = self.read()
        epochs[epoch] = {name: float(value) for name, value in (logs or {}).items()}
        with open(self.path + ".partial", "w") as stream:
            json.dump({str(k): v for k, v in sorted(epochs.items())}, stream)
        os.replace(self.path + ".partial", self.path)
