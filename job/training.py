"""Retraining the best hyperparameters from scratch: best_model.keras, saved_model/, history.json.

The checkpoint lives in the run directory's own `checkpoints/` folder, never in
the tuner's: the original script handed one ModelCheckpoint file to every trial,
so its "best model" ended up holding the last trial.
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from job import rundir
from job.callbacks import AfterEpoch, EpochBackup, EpochLog, fit_verbosity
from job.config import JobConfig, LrSchedule
from job.errors import JobError
from job.model import REFERENCE_BATCH, build_network, compile_network, params_from_values
from job.preemption import StopSignal
from job.results import SearchResults
from job.rundir import RunDir

MONITOR = "val_accuracy"
CHECKPOINT_PATTERN = "best-epoch{epoch:03d}.keras"  # one file per improvement: no in-place rewrite
EPOCH_LOG = "epochs.json"
BACKUP = "backup"
DONE = "trained.json"  # written when fit returns: a rerun then only publishes


@dataclass(frozen=True)
class TrainingHistory:
    metrics: dict[str, list[float]]  # name -> one value per epoch
    best_epoch: int  # 1-based
    best_val_accuracy: float
    hyperparameters: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainingHistory:
        return cls(**data)


def retrain_best(config: JobConfig, run: RunDir, results: SearchResults,
                 train: tf.data.Dataset, validation: tf.data.Dataset,
                 strategy: tf.distribute.Strategy, stop: StopSignal,
                 after_epoch: Callable[[], None] = lambda: None) -> TrainingHistory:
    """Trains the best trial's network for `config.final_epochs`, resuming a killed run.

    `after_epoch` runs after each epoch's backup (where the bucket sync goes)."""
    best = results.best
    if best is None:
        raise JobError("no search trial completed, so there is nothing to retrain; "
                       "see trials.csv for each trial's error")
    params = params_from_values(best.hyperparameters, config.profile)
    checkpoints = run.path(rundir.CHECKPOINTS)
    checkpoints.mkdir(parents=True, exist_ok=True)
    log = EpochLog(str(checkpoints / EPOCH_LOG))
    if not (checkpoints / DONE).exists():
        keras.utils.set_random_seed(config.seed)  # the same start whatever ran before
        global_batch = config.batch_size * strategy.num_replicas_in_sync
        rate = params.learning_rate * global_batch / REFERENCE_BATCH
        with strategy.scope():
            model = compile_network(build_network(params), rate, config.jit_compile)
        callbacks = [*_callbacks(config, checkpoints, log, stop, rate), AfterEpoch(after_epoch)]
        model.fit(train, validation_data=validation, epochs=config.final_epochs,
                  callbacks=callbacks, verbose=fit_verbosity(),
                  shuffle=False)  # the dataset reshuffles itself every epoch
        run.write_json(f"{rundir.CHECKPOINTS}/{DONE}", {"epochs": len(log.read())})
    run.clear_entry(f"{rundir.CHECKPOINTS}/{BACKUP}")
    history = _history(log.read(), best.hyperparameters)
    _publish(run, _best_checkpoint(checkpoints))
    run.write_json(rundir.HISTORY, history.to_json())
    return history


def _callbacks(config: JobConfig, checkpoints: Path, log: EpochLog, stop: StopSignal,
               rate: float) -> list[keras.callbacks.Callback]:
    previous = [logs[MONITOR] for logs in log.read().values() if MONITOR in logs]
    return [
        # Resumed runs only save what beats the best epoch before the restart.
        keras.callbacks.ModelCheckpoint(str(checkpoints / CHECKPOINT_PATTERN), monitor=MONITOR,
                                        save_best_only=True, mode="max",
                                        initial_value_threshold=max(previous, default=None)),
        *_schedule(config, rate),
        log,
        # Kept when fit ends: a kill before DONE is written then resumes at the last
        # epoch instead of training again from scratch.
        EpochBackup(str(checkpoints / BACKUP), stop, delete_at_end=False),
    ]


def _schedule(config: JobConfig, rate: float) -> list[keras.callbacks.Callback]:
    """The learning rate's callbacks; `rate` is the tuned rate at this global batch."""
    if config.lr_schedule == LrSchedule.COSINE:
        # Per epoch, from the epoch's index: a resumed fit picks up the same curve. No
        # early stopping: the low rates at the end are where this schedule gains.
        return [keras.callbacks.LearningRateScheduler(
            lambda epoch: cosine_rate(rate, epoch, config.final_epochs))]
    return [
        keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", patience=config.patience,
                                      restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                          patience=max(1, config.patience - 1)),
    ]


def cosine_rate(rate: float, epoch: int, epochs: int, floor: float = 0.01) -> float:
    """Half a cosine from `rate` at epoch 0 down to `floor` × `rate` at the last epoch."""
    progress = epoch / max(1, epochs - 1)
    return rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def _history(epochs: dict[int, dict[str, float]], hyperparameters: dict[str, Any]) -> TrainingHistory:
    names = sorted({name for logs in epochs.values() for name in logs})
    ordered = [epochs[e] for e in sorted(epochs)]
    metrics = {name: [logs.get(name, float("nan")) for logs in ordered] for name in names}
    scores = metrics.get(MONITOR, [])
    best_index = max(range(len(scores)), key=scores.__getitem__) if scores else 0
    return TrainingHistory(metrics=metrics, best_epoch=best_index + 1,
                           best_val_accuracy=scores[best_index] if scores else float("nan"),
                           hyperparameters=hyperparameters)


def _best_checkpoint(checkpoints: Path) -> Path:
    """The newest checkpoint that loads: ModelCheckpoint only writes on improvement."""
    found = sorted(checkpoints.glob("best-epoch*.keras"),
                   key=lambda p: int(re.findall(r"\d+", p.name)[0]), reverse=True)
    for path in found:
        try:
            keras.saving.load_model(path, compile=False)
        except Exception:  # noqa: BLE001 - torn by a kill during its write: take the previous one
            continue
        for older in found[found.index(path) + 1:]:
            older.unlink()
        return path
    raise JobError(f"{checkpoints}: no checkpoint was saved; "
                   "did validation accuracy never improve? rerun `job train`")


def _publish(run: RunDir, checkpoint: Path) -> None:
    """best_model.keras (a copy of the best checkpoint) and a SavedModel export for serving."""
    with run.atomic(rundir.BEST_MODEL) as temp:
        shutil.copyfile(checkpoint, temp)
    model = keras.saving.load_model(run.path(rundir.BEST_MODEL))
    with run.atomic(rundir.SAVED_MODEL) as temp:
        model.export(str(temp), format="tf_saved_model", verbose=False)
