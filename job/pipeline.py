"""The job's steps as plain functions: search -> train -> evaluate -> visualize -> manifest.

Each step reads and writes named files in the run directory, so any step can
be rerun alone (`job train`, ...) and `run` can resume after a kill.
"""

from __future__ import annotations

import functools
from contextlib import ExitStack
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import tensorflow as tf

from job import data as data_module
from job import distributed
from job import evaluation, manifest, results, rundir, storage, strategy, training, tuning, visualize
from job.callbacks import StopCheck
from job.config import JobConfig, LrSchedule, Role, TunerKind
from job.data import ImageData
from job.distributed import Placement
from job.errors import BadInputError
from job.inputs import Splits, make_splits, training_batches, validation_batches
from job.preemption import StopSignal
from job.rundir import RunDir

DATA_INFO = "data.json"  # where the data came from and its checksums, for the manifest
STANDALONE = Placement(Role.STANDALONE, 0, "tuner0")
# What each step writes, in order: rerunning a step alone removes what later steps made
# from the old outputs, so that no manifest certifies a mix.
STEP_OUTPUTS = {
    "search": (rundir.RESULTS, rundir.TRIALS_CSV),
    "train": (rundir.CHECKPOINTS, rundir.BEST_MODEL, rundir.SAVED_MODEL, rundir.HISTORY),
    "evaluate": (rundir.METRICS,),
    "visualize": (rundir.FILTERS_PNG, rundir.HISTORY_PNG, rundir.CONFUSION_PNG),
}
FINAL_ARTIFACTS = (rundir.RESULTS, rundir.TRIALS_CSV, rundir.BEST_MODEL, rundir.HISTORY,
                   rundir.METRICS, rundir.FILTERS_PNG, rundir.HISTORY_PNG, rundir.CONFUSION_PNG)


@dataclass
class Context:
    """What the steps of one run share; data and devices are set up on first use."""

    config: JobConfig
    run: RunDir
    stop: StopSignal = field(default_factory=StopSignal)
    placement: Placement = STANDALONE
    resources: ExitStack = field(default_factory=ExitStack)  # closed when the run ends
    # Where a session syncs state: after every epoch's backup, after every trial.
    after_epoch: Callable[[], None] = lambda: None
    after_trial: Callable[[dict], None] = lambda summary: None
    on_step: Callable[[str], None] = lambda step: None  # before each step of run_all

    @functools.cached_property
    def data(self) -> ImageData:
        source = self.config.data
        if source is not None and storage.is_remote(source):
            source = str(storage.mirror(source, self.config.work_root / "data"))
        loaded = data_module.load(source, self.config.dataset.value)
        if self.run.exists(DATA_INFO) and not self.config.overwrite:
            stored = self.run.read_json(DATA_INFO)["checksums"]
            if stored != loaded.checksums:
                raise BadInputError(f"{loaded.source}: expected the data that run "
                                    f"{self.config.run_id!r} started with, found files with other "
                                    "checksums; use a new --run-id, or --overwrite to start over")
        print(f"data: {len(loaded.y_train)} training and {len(loaded.y_test)} test images "
              f"from {loaded.source}, verified", flush=True)
        return loaded

    @functools.cached_property
    def splits(self) -> Splits:
        found = make_splits(self.data.y_train, self.config)
        if self.global_batch > len(found.search_train):
            raise BadInputError(f"--batch-size {self.config.batch_size}: the global batch of "
                                f"{self.global_batch} is more than the {len(found.search_train)} "
                                "training images; use a smaller batch")
        return found

    @functools.cached_property
    def strategy(self) -> tf.distribute.Strategy:
        strategy.configure_devices(self.config.logical_cpus, self.config.mixed_precision)
        chosen = strategy.make_strategy(self.config.strategy)
        print(f"strategy: {strategy.describe(chosen)}", flush=True)
        return chosen

    @property
    def global_batch(self) -> int:
        return self.config.batch_size * self.strategy.num_replicas_in_sync

    @property
    def class_names(self) -> list[str]:
        return data_module.CLASS_NAMES[self.config.dataset.value]


def start(config: JobConfig, run: RunDir, stop: StopSignal | None = None,
          placement: Placement = STANDALONE) -> Context:
    """Prepares `run` for `config`: a new run, or the resumption of the same one.

    The data is checked before anything is written: bad data leaves no run behind."""
    if run.exists(rundir.CONFIG) and not config.overwrite:
        previous = JobConfig.from_json(run.read_json(rundir.CONFIG))
        differences = config.search_differences(previous)
        if differences:
            raise BadInputError(
                f"run {config.run_id!r} was started with other settings ({'; '.join(differences)}); "
                "use a new --run-id, or --overwrite to start over")
    context = Context(config=config, run=run, stop=stop or StopSignal(), placement=placement)
    loaded = context.data
    if config.overwrite:
        run.clear()
    run.root.mkdir(parents=True, exist_ok=True)
    run.write_json(rundir.CONFIG, config.to_json())
    run.write_json(DATA_INFO, {"source": loaded.source, "checksums": loaded.checksums})
    keras.utils.set_random_seed(config.seed)
    return context


def reopen(run: RunDir, **overrides: object) -> Context:
    """The context of an existing run, for rerunning one of its steps."""
    run.require(rundir.CONFIG, made_by="run")
    stored = run.read_json(rundir.CONFIG)
    config = JobConfig.from_json(stored, **overrides)
    run.clear_entry(rundir.MANIFEST)  # the step changes artifacts: the old manifest is stale
    if config.to_json() != stored:  # e.g. `job train --final-epochs`: record what is used
        run.write_json(rundir.CONFIG, config.to_json())
    keras.utils.set_random_seed(config.seed)
    return Context(config=config, run=run)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def invalidate_after(run: RunDir, step: str) -> None:
    """Removes the outputs of the steps after `step` (which are about to be stale)."""
    later = list(STEP_OUTPUTS)[list(STEP_OUTPUTS).index(step) + 1:]
    stale = [s for s in later if any(run.exists(name) for name in STEP_OUTPUTS[s])]
    for name in (name for s in stale for name in STEP_OUTPUTS[s]):
        run.clear_entry(name)
    if stale:
        print(f"{step}: removed the old outputs of {', '.join(stale)}; rerun "
              f"{' and '.join(f'`job {s}`' for s in stale)} afterwards", flush=True)


def is_complete(run: RunDir) -> bool:
    return run.exists(rundir.MANIFEST)


def run_all(context: Context) -> evaluation.Evaluation:
    """Every step, skipping those a previous (killed) attempt already finished."""
    context.on_step("search")
    search(context)
    context.on_step("train")
    if not (context.run.exists(rundir.BEST_MODEL) and context.run.exists(rundir.HISTORY)):
        train(context, fresh=False)
    context.on_step("evaluate")
    result = evaluate(context)
    context.on_step("visualize")
    draw(context)
    return result


def search(context: Context) -> results.SearchResults | None:
    """Runs or finishes the search; a distributed worker returns None (the chief has the
    results), the chief serves the oracle to the workers instead of training."""
    config, placement = context.config, context.placement
    distributed.export_for_keras_tuner(placement, config)
    if placement.role == Role.WORKER:
        distributed.wait_for_chief(config, context.stop)
    tuner = tuning.make_tuner(config, context.run, context.strategy, context.stop,
                              context.after_epoch, context.after_trial)
    if placement.role == Role.CHIEF:
        print(f"search: serving the oracle on {config.oracle_bind}:{config.oracle_port} to "
              f"{config.workers} workers, {config.max_trials} trials", flush=True)
        server = distributed.OracleServer(tuner.oracle, config.oracle_bind, config.oracle_port,
                                          config.worker_timeout)
        context.resources.enter_context(server).wait_for_search(context.stop)
    else:
        _run_trials(context, tuner)
        if placement.role == Role.WORKER:
            return None
    found = tuning.results_of(tuner)
    results.write(context.run, found)
    print(results.format_table(found), flush=True)
    return found


def _run_trials(context: Context, tuner: object) -> None:
    config, splits = context.config, context.splits
    train_set = training_batches(context.data, splits.search_train, context.global_batch, config.seed)
    validation = validation_batches(context.data, splits.validation, context.global_batch)
    budget = (f"up to {_count(config.epochs, 'epoch')} per model, trials from its brackets"
              if config.tuner == TunerKind.HYPERBAND else
              f"{_count(config.max_trials, 'trial')} x {_count(config.epochs, 'epoch')}")
    print(f"search: {config.tuner.value}, {budget} on {len(splits.search_train)} images "
          f"(validation {len(splits.validation)})", flush=True)
    tuning.search(tuner, config, train_set, validation)


def train(context: Context, fresh: bool = True) -> training.TrainingHistory:
    """Retrains the best trial; `fresh` discards an earlier final training first."""
    run, config = context.run, context.config
    run.require(rundir.RESULTS, made_by="search")
    if fresh:
        run.clear_entry(rundir.CHECKPOINTS)
    found = results.read(run)
    length = ("for" if config.lr_schedule == LrSchedule.COSINE else "for up to")
    print(f"train: best trial {found.best.trial if found.best else '-'} {length} "
          f"{_count(config.final_epochs, 'epoch')} on {len(context.splits.train)} images, "
          f"{config.lr_schedule.value} learning rate", flush=True)
    train_set = training_batches(context.data, context.splits.train, context.global_batch, config.seed)
    validation = validation_batches(context.data, context.splits.validation, context.global_batch)
    history = training.retrain_best(config, run, found, train_set, validation,
                                    context.strategy, context.stop, context.after_epoch)
    print(f"train: best epoch {history.best_epoch}, val_accuracy "
          f"{history.best_val_accuracy:.4f}", flush=True)
    return history


def evaluate(context: Context) -> evaluation.Evaluation:
    result = evaluation.evaluate(context.run, context.data, context.class_names,
                                 context.config.batch_size, callbacks=[StopCheck(context.stop)])
    print(f"evaluate: {evaluation.summary(result)}", flush=True)
    return result


def draw(context: Context) -> list[str]:
    names = visualize.visualize(context.run)
    print(f"visualize: {', '.join(names)}", flush=True)
    return names


def finish(context: Context) -> bool:
    """Writes manifest.json, last, when every artifact is in place; True if it did."""
    run = context.run
    if not all(run.exists(name) for name in FINAL_ARTIFACTS):
        return False
    checksums = run.read_json(DATA_INFO)["checksums"] if run.exists(DATA_INFO) else {}
    written = manifest.write(run, checksums)
    print(f"manifest: {len(written['files'])} files in {run.root}", flush=True)
    return True
