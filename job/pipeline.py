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
from job.config import JobConfig, Role
from job.data import ImageData
from job.distributed import Placement
from job.errors import BadInputError
from job.inputs import Splits, make_splits, training_batches, validation_batches
from job.preemption import StopSignal
from job.rundir import RunDir

DATA_INFO = "data.json"  # where the data came from and its checksums, for the manifest
STANDALONE = Placement(Role.STANDALONE, 0, "tuner0")
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
        self.run.write_json(DATA_INFO, {"source": loaded.source, "checksums": loaded.checksums})
        print(f"data: {len(loaded.y_train)} training and {len(loaded.y_test)} test images "
              f"from {loaded.source}, verified", flush=True)
        return loaded

    @functools.cached_property
    def splits(self) -> Splits:
        return make_splits(self.data.y_train, self.config)

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
    """Prepares `run` for `config`: a new run, or the resumption of the same one."""
    if config.overwrite:
        run.clear()
    elif run.exists(rundir.CONFIG):
        previous = JobConfig.from_json(run.read_json(rundir.CONFIG))
        differences = config.search_differences(previous)
        if differences:
            raise BadInputError(
                f"run {config.run_id!r} was started with other settings ({'; '.join(differences)}); "
                "use a new --run-id, or --overwrite to start over")
    run.root.mkdir(parents=True, exist_ok=True)
    run.write_json(rundir.CONFIG, config.to_json())
    keras.utils.set_random_seed(config.seed)
    return Context(config=config, run=run, stop=stop or StopSignal(), placement=placement)


def reopen(run: RunDir, **overrides: object) -> Context:
    """The context of an existing run, for rerunning one of its steps."""
    run.require(rundir.CONFIG, made_by="run")
    config = JobConfig.from_json(run.read_json(rundir.CONFIG), **overrides)
    run.clear_entry(rundir.MANIFEST)  # the step changes artifacts: the old manifest is stale
    keras.utils.set_random_seed(config.seed)
    return Context(config=config, run=run)


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
    print(f"search: {config.tuner.value}, {config.max_trials} trials x {config.epochs} epochs "
          f"on {len(splits.search_train)} images (validation {len(splits.validation)})", flush=True)
    tuning.search(tuner, config, train_set, validation)


def train(context: Context, fresh: bool = True) -> training.TrainingHistory:
    """Retrains the best trial; `fresh` discards an earlier final training first."""
    run, config = context.run, context.config
    run.require(rundir.RESULTS, made_by="search")
    if fresh:
        run.clear_entry(rundir.CHECKPOINTS)
    found = results.read(run)
    print(f"train: best trial {found.best.trial if found.best else '-'} for up to "
          f"{config.final_epochs} epochs on {len(context.splits.train)} images", flush=True)
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
