"""The hyperparameter search: KerasTuner, with resumable trials and one line of progress each.

What we add to KerasTuner, and why:
- an atomic epoch backup inside each trial's folder, so a trial interrupted by
  a kill resumes from its last epoch instead of epoch 0 (KerasTuner reruns an
  interrupted trial under the same id, so the backup is found again);
- a stop check before each new trial and at every batch (SIGTERM);
- its per-trial console display replaced by one progress line, plus the
  seconds each trial took, kept in `timings.json` in the tuner's folder.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import tensorflow as tf
from keras_tuner.src.engine.oracle import Display
from tensorflow.python.framework import ops as tf_ops

from job import rundir
from job.callbacks import AfterEpoch, EpochBackup, EpochLog, NanGuard, fit_verbosity
from job.config import JobConfig, TunerKind
from job.errors import BadInputError, JobError
from job.model import CnnHyperModel, params_from_hp
from job.preemption import StopSignal
from job.results import OBJECTIVE, SearchResults, from_oracle
from job.rundir import RunDir

# Reporting every epoch to the oracle (on_epoch_end) makes KerasTuner warn that it
# then skips the final report of the trial: that is what we want.
warnings.filterwarnings("ignore", message="The use case of calling", category=DeprecationWarning)

PROJECT = "search"  # KerasTuner's project folder: tuner/search/
TIMINGS = "timings.json"
BACKUP = "backup"  # each trial's epoch backup, in its folder


def project_dir(run: RunDir) -> Path:
    return run.path(rundir.TUNER) / PROJECT


def make_tuner(config: JobConfig, run: RunDir, strategy: tf.distribute.Strategy,
               stop: StopSignal, after_epoch: Callable[[], None] = lambda: None,
               after_trial: Callable[[dict], None] = lambda summary: None) -> keras_tuner.Tuner:
    """A tuner for `config.tuner`, resuming the search already in `run` if there is one.

    `after_epoch` runs after each epoch's backup, `after_trial` after each trial
    with a summary (trials done, best score): the places to sync state.
    """
    _refuse_other_space(config, run)
    hypermodel = CnnHyperModel(config.profile, config.batch_size * strategy.num_replicas_in_sync,
                               config.jit_compile)
    common: dict[str, Any] = dict(
        hypermodel=hypermodel, objective=OBJECTIVE, seed=config.seed,
        executions_per_trial=config.executions_per_trial, directory=str(run.path(rundir.TUNER)),
        project_name=PROJECT, overwrite=False, distribution_strategy=strategy)
    if config.tuner == TunerKind.HYPERBAND:
        tuner = HyperbandTuner(max_epochs=config.epochs, factor=3, **common)
    elif config.tuner == TunerKind.BAYESIAN:
        tuner = BayesianTuner(max_trials=config.max_trials, **common)
    else:
        tuner = RandomSearchTuner(max_trials=config.max_trials, **common)
    tuner.stop, tuner.after_epoch, tuner.job_seed = stop, after_epoch, config.seed
    if isinstance(tuner.oracle, keras_tuner.Oracle):  # not on a worker: the chief has the oracle
        forget_ended(tuner.oracle)
        total = None if config.tuner == TunerKind.HYPERBAND else config.max_trials
        tuner.oracle._display = TrialReporter(tuner.oracle, project_dir(run) / TIMINGS, total,
                                              max(1, config.workers), after_trial)
    return tuner


def search(tuner: keras_tuner.Tuner, config: JobConfig, train: tf.data.Dataset,
           validation: tf.data.Dataset) -> None:
    """Runs trials until the oracle says stop (finishing an interrupted search)."""
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                          patience=max(1, config.patience - 1)),
        NanGuard(),
    ]
    try:
        tuner.search(train, validation_data=validation, epochs=config.epochs,
                     callbacks=callbacks, verbose=fit_verbosity(),
                     shuffle=False)  # the dataset reshuffles itself every epoch
    except RuntimeError as error:  # KerasTuner gives up after 3 consecutive failed trials
        first_line = str(error).strip().splitlines()[0]
        raise JobError(f"search stopped: {first_line}; see trials.csv for each error") from None


def drop_ongoing(oracle: keras_tuner.Oracle, trial_id: str) -> None:
    """Removes `trial_id` from the oracle's running trials, whichever tuner had it."""
    for tuner_id in [t for t, trial in oracle.ongoing_trials.items() if trial.trial_id == trial_id]:
        del oracle.ongoing_trials[tuner_id]


def forget_ended(oracle: keras_tuner.Oracle) -> None:
    """A reloaded oracle neither retries nor runs a trial that has already ended.

    KerasTuner's reload sends every trial saved as running to the retry queue,
    including one saved by `end_trial` between its save and its removal from the
    running trials (a kill just after a trial ended): it would be trained again.
    """
    ended = set(oracle.end_order)
    oracle._retry_queue = [t for t in oracle._retry_queue if t not in ended]
    for trial_id in ended:
        drop_ongoing(oracle, trial_id)


def results_of(tuner: keras_tuner.Tuner) -> SearchResults:
    return from_oracle(tuner.oracle, tuner.oracle._display.seconds)


class TrialReporter(Display):
    """Replaces KerasTuner's console display: one progress line per trial, and timings.

    It runs wherever the oracle runs (the chief, in a distributed search), so it
    sees every trial, whichever worker ran it.
    """

    def __init__(self, oracle: Any, timings_file: Path, total: int | None, workers: int,
                 after_trial: Callable[[dict], None]):
        super().__init__(oracle, verbose=0)
        self.timings_file = timings_file
        self.total = total
        self.workers = workers
        self.after_trial = after_trial
        self.seconds: dict[str, float] = (json.loads(timings_file.read_text())
                                          if timings_file.exists() else {})
        self._started: dict[str, float] = {}

    def on_trial_begin(self, trial: Any) -> None:
        self._started[trial.trial_id] = time.monotonic()
        self.after_trial(self.summary())  # a new trial is oracle state worth syncing

    def on_trial_end(self, trial: Any) -> None:
        started = self._started.pop(trial.trial_id, time.monotonic())
        elapsed = time.monotonic() - started
        self.seconds[trial.trial_id] = self.seconds.get(trial.trial_id, 0.0) + elapsed
        temp = self.timings_file.with_suffix(".partial")
        temp.write_text(json.dumps(self.seconds))
        os.replace(temp, self.timings_file)
        print(self.progress_line(trial, elapsed), flush=True)
        # KerasTuner saves oracle.json before it drops the ended trial from its ongoing
        # trials, and never takes an ended trial (one reassigned from a worker presumed
        # lost) out of its retry queue: either would run that trial again.
        drop_ongoing(self.oracle, trial.trial_id)
        forget_ended(self.oracle)
        self.oracle.save()
        self.after_trial(self.summary())

    def summary(self) -> dict[str, Any]:
        best = self.oracle.get_best_trials(1)
        return {"trials_done": len(self.oracle.end_order), "max_trials": self.total,
                "best_val_accuracy": best[0].score if best else None}

    def progress_line(self, trial: Any, elapsed: float) -> str:
        number = f"{int(trial.trial_id) + 1}" + (f"/{self.total}" if self.total else "")
        if trial.status != keras_tuner.engine.trial.TrialStatus.COMPLETED:
            reason = (trial.message or "").strip().splitlines() or [str(trial.status).lower()]
            return f"trial {number} failed after {elapsed:.0f} s: {reason[-1]}"
        best = self.oracle.get_best_trials(1)[0]
        line = (f"trial {number} done in {elapsed:.0f} s: {OBJECTIVE} {trial.score:.4f} "
                f"(best {best.score:.4f}, trial {int(best.trial_id) + 1})")
        done = len(self.oracle.end_order)
        if self.total and done < self.total:
            mean = sum(self.seconds.values()) / max(1, len(self.seconds))
            eta = mean * (self.total - done) / self.workers
            line += f" — ETA {_duration(eta)}"
        return line


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


class _JobTunerMixin:
    """Adds the per-trial epoch backup, stop checks and memory release to a KerasTuner tuner."""

    stop: StopSignal
    after_epoch: Callable[[], None]
    job_seed: int

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
        """KerasTuner's trial, plus a backup and a log of every epoch in the trial's folder.

        The result is taken from the log, not from Keras' History, which after a
        restart only holds the epochs since the restart.
        """
        folder = self.get_trial_dir(trial.trial_id)
        log = EpochLog(os.path.join(folder, "epochs.json"))
        # Kept after fit (with one execution): a kill before the oracle has the result
        # must find the finished backup, not retrain. on_trial_end removes it.
        backup = EpochBackup(os.path.join(folder, BACKUP), self.stop,
                             delete_at_end=self.executions_per_trial > 1)
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), log, backup,
                               AfterEpoch(self.after_epoch)]
        with _forgetting_gradient_functions():
            histories = super().run_trial(trial, *args, **kwargs)
        if self.executions_per_trial > 1:  # averaged by KerasTuner; a restart redoes them all
            return [{**_best_epoch(h.history), "epochs": len(h.epoch)} for h in histories]
        epochs = log.read()
        self._report_missing(trial, epochs)
        by_name = {name: [logs[name] for logs in epochs.values()] for name in epochs[min(epochs)]}
        return {**_best_epoch(by_name), "epochs": len(epochs)}

    def on_epoch_end(self, trial: Any, model: Any, epoch: int, logs: dict | None = None) -> None:
        """Reports every epoch to the oracle: the trial's record then holds all its epochs
        (also those before a restart), and a distributed chief hears from this worker."""
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        if OBJECTIVE not in metrics:
            return
        try:
            self.oracle.update_trial(trial.trial_id, {**metrics, "epochs": epoch + 1}, step=epoch)
        except Exception as error:  # noqa: BLE001 - a chief restarting: the trial goes on
            print(f"could not report epoch {epoch + 1} to the oracle: {error}", flush=True)

    def _report_missing(self, trial: Any, epochs: dict[int, dict[str, float]]) -> None:
        """Reports the logged epochs the oracle has not recorded: a chief restarted from
        its last snapshot can lack reports it had, and a trial resumed from a finished
        backup trains (and reports) no epoch again."""
        metrics = self.oracle.get_trial(trial.trial_id).metrics
        known = ({observation.step for observation in metrics.get_history("epochs")}
                 if metrics.exists("epochs") else set())
        for epoch, logs in sorted(epochs.items()):
            if epoch not in known:
                self.on_epoch_end(trial, None, epoch, logs)

    def pre_create_trial(self) -> None:
        self.stop.raise_if_set()

    def on_search_begin(self) -> None:
        super().on_search_begin()
        self.oracle.verbose = 0  # search() copied fit's verbosity here; our reporter prints

    def on_trial_begin(self, trial: Any) -> None:
        super().on_trial_begin(trial)
        # Each trial's weights and dropout from its own seed: the same trial gets the same
        # start whatever ran before it in this process (a resume, a bucket sync, a worker).
        keras.utils.set_random_seed(self.job_seed + int(trial.trial_id))
        if not isinstance(self.oracle, keras_tuner.Oracle):  # a worker: the chief prints results
            print(f"trial {int(trial.trial_id) + 1}: training it for the chief", flush=True)

    def on_trial_end(self, trial: Any) -> None:
        super().on_trial_end(trial)  # the oracle has the result now
        shutil.rmtree(os.path.join(self.get_trial_dir(trial.trial_id), BACKUP), ignore_errors=True)
        if not isinstance(self.oracle, keras_tuner.Oracle):
            print(f"trial {int(trial.trial_id) + 1}: reported to the chief", flush=True)
        gc.collect()  # the trial's model is gone; keep peak memory flat across trials


class RandomSearchTuner(_JobTunerMixin, keras_tuner.RandomSearch):
    pass


class HyperbandTuner(_JobTunerMixin, keras_tuner.Hyperband):
    pass


class BayesianTuner(_JobTunerMixin, keras_tuner.BayesianOptimization):
    pass


@contextlib.contextmanager
def _forgetting_gradient_functions() -> Iterator[None]:
    """Drops the gradient functions TensorFlow registered globally while a trial traced.

    Keras all-reduces gradients even under the default strategy, and TensorFlow's
    all-reduce is a `custom_gradient`: each trace registers a gradient function
    that keeps the trial's whole traced step alive, about 11 MB a trial for good
    (bench/memory.py). After the trial nothing differentiates those graphs again.
    """
    registry = getattr(getattr(tf_ops, "_gradient_registry", None), "_registry", None)
    before = set(registry or ())
    try:
        yield
    finally:
        for name in set(registry or ()) - before:
            if name.startswith("CustomGradient-"):
                del registry[name]


def _best_epoch(history: dict[str, list[float]]) -> dict[str, float]:
    """The metrics of the epoch with the best objective."""
    best = max(range(len(history[OBJECTIVE])), key=history[OBJECTIVE].__getitem__)
    return {name: values[best] for name, values in history.items()}


def _refuse_other_space(config: JobConfig, run: RunDir) -> None:
    """A resumed search must explore the same space; KerasTuner would silently merge them."""
    oracle_file = project_dir(run) / "oracle.json"
    if not oracle_file.exists():
        return
    stored = json.loads(oracle_file.read_text())["hyperparameters"]["space"]
    stored_space = {hp["config"]["name"]: hp for hp in stored}
    current = keras_tuner.HyperParameters()
    params_from_hp(current, config.profile)
    current_space = {hp["config"]["name"]: hp for hp in current.get_config()["space"]}
    changed = sorted(name for name in stored_space.keys() | current_space.keys()
                     if stored_space.get(name) != current_space.get(name))
    if changed:
        raise BadInputError(
            f"run {config.run_id!r} was searched over a different space (changed: "
            f"{', '.join(changed)}); use a new --run-id, or --overwrite to start over")
