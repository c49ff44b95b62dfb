"""`job`: the command line. It only builds the config and calls the pipeline.

Every option can also be set through the environment variable shown in --help
(JOB_<NAME>), which is how containers and Kubernetes configure the job.
Heavy imports (TensorFlow) happen inside the commands, so --help stays fast.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from types import SimpleNamespace
from pathlib import Path
from typing import Annotated, Optional

import typer

from job.config import Dataset, JobConfig, LrSchedule, Profile, Role, StrategyKind, TunerKind, new_run_id
from job.errors import BadInputError, ExitCode, JobError, Preempted
from job.preemption import StopSignal

D = SimpleNamespace(**{f.name: f.default for f in dataclasses.fields(JobConfig)})  # the defaults

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Find, train, evaluate and explain the best CNN for an image dataset.")


def _opt(name: str, help: str, **kwargs: object) -> typer.models.OptionInfo:
    return typer.Option(f"--{name}", envvar=f"JOB_{name.upper().replace('-', '_')}",
                        show_envvar=True, help=help, **kwargs)


Data = Annotated[Optional[str], _opt("data", "Directory with the 4 IDX files (.gz or raw), a Keras "
                                     ".npz file, or a folder holding <dataset>/. Default: Keras' download.")]
DatasetOpt = Annotated[Dataset, _opt("dataset", "Which dataset (class names, Keras download).")]
Artifacts = Annotated[str, _opt("artifacts", "Where runs are stored: a local directory or "
                                "gs://BUCKET/PREFIX (synced from --work-dir).")]
RunId = Annotated[Optional[str], _opt("run-id", "Name of the run; reuse it to resume. "
                                      "Default: run-<date>-<time> (a new run).")]
ExistingRunId = Annotated[Optional[str], _opt("run-id", "The run to work on. Default: the newest run.")]
Tuner = Annotated[TunerKind, _opt("tuner", "Search algorithm.")]
ProfileOpt = Annotated[Profile, _opt("profile", "Search space: quick (the original) or full "
                                     "(adds augmentation, double convolutions, wider layers).")]
MaxTrials = Annotated[int, _opt("max-trials", "Trials to run (random, bayesian).")]
Epochs = Annotated[int, _opt("epochs", "Epochs per trial (hyperband: the most per model).")]
FinalEpochs = Annotated[int, _opt("final-epochs", "Epochs when retraining the best.")]
Executions = Annotated[int, _opt("executions-per-trial", "Trainings averaged per trial.")]
Seed = Annotated[int, _opt("seed", "Seed for splits, trial choices and weights.")]
Subset = Annotated[Optional[int], _opt("subset", "Use only N stratified training images (smoke runs).")]
SearchSubset = Annotated[int, _opt("search-subset", "Search trials train on N stratified images "
                                   "(ranking is cheap; the retrain uses all). 0 = all.")]
ValidationSplit = Annotated[float, _opt("validation-split", "Stratified share of training "
                                        "images held out for validation.")]
BatchSize = Annotated[int, _opt("batch-size", "Per-replica batch; the learning rate scales with "
                                "the global batch.")]
Patience = Annotated[int, _opt("patience", "Epochs without improvement before early stopping.")]
Schedule = Annotated[LrSchedule, _opt("lr-schedule", "Final training's learning rate: plateau "
                                      "(halved when val_loss stalls, early stopping) or cosine "
                                      "(decays to 1% over --final-epochs, runs them all).")]
Strategy = Annotated[StrategyKind, _opt("strategy", "tf.distribute strategy; auto = mirrored "
                                        "over 2+ GPUs, else default.")]
LogicalCpus = Annotated[int, _opt("logical-cpus", "Split the CPU into N devices (to try "
                                  "mirrored without GPUs). 0 = off.")]
JitCompile = Annotated[bool, _opt("jit-compile", "XLA-compile training steps (GPU; slower on CPU).")]
MixedPrecision = Annotated[bool, _opt("mixed-precision", "float16 compute on GPUs.")]
Overwrite = Annotated[bool, _opt("overwrite", "Delete the run and start over.")]
WorkDir = Annotated[Optional[str], _opt("work-dir", "Local working directory of runs synced to "
                                        "a bucket, and the cache of gs:// data. Default: a "
                                        "folder in the system temp dir.")]
LeaseSeconds = Annotated[float, _opt("lease-seconds", "A writer of a bucket run silent this long "
                                     "is presumed dead and its run taken over.")]
RoleOpt = Annotated[Role, _opt("role", "Distributed search: auto takes it from "
                              "JOB_COMPLETION_INDEX (0 = chief, 1..N = workers), else standalone.")]
Workers = Annotated[int, _opt("workers", "Distributed search: the number of worker processes.")]
OracleHost = Annotated[Optional[str], _opt("oracle-host", "Distributed search: the chief's "
                                           "address that workers dial, e.g. <job>-0.<service>.")]
OraclePort = Annotated[int, _opt("oracle-port", "Distributed search: the oracle's TCP port.")]
OracleBind = Annotated[str, _opt("oracle-bind", "Distributed search: the address the chief "
                                 "listens on.")]
WorkerTimeout = Annotated[float, _opt("worker-timeout", "Distributed search: seconds without news "
                                      "from a worker before its trial goes to another.")]
GraceSeconds = Annotated[float, _opt("grace-seconds", "After SIGTERM, save state and exit "
                                     f"{ExitCode.PREEMPTED.value} within this many seconds.")]


@app.command()
def run(data: Data = None, dataset: DatasetOpt = D.dataset, artifacts: Artifacts = D.artifacts,
        run_id: RunId = None, tuner: Tuner = D.tuner, profile: ProfileOpt = D.profile,
        max_trials: MaxTrials = D.max_trials, epochs: Epochs = D.epochs,
        final_epochs: FinalEpochs = D.final_epochs,
        executions_per_trial: Executions = D.executions_per_trial, seed: Seed = D.seed,
        subset: Subset = None, search_subset: SearchSubset = D.search_subset,
        validation_split: ValidationSplit = D.validation_split,
        batch_size: BatchSize = D.batch_size, patience: Patience = D.patience,
        lr_schedule: Schedule = D.lr_schedule,
        strategy: Strategy = D.strategy, logical_cpus: LogicalCpus = D.logical_cpus,
        jit_compile: JitCompile = D.jit_compile,
        mixed_precision: MixedPrecision = D.mixed_precision, overwrite: Overwrite = D.overwrite,
        grace_seconds: GraceSeconds = D.grace_seconds, work_dir: WorkDir = None,
        lease_seconds: LeaseSeconds = D.lease_seconds, role: RoleOpt = D.role,
        workers: Workers = D.workers, oracle_host: OracleHost = None,
        oracle_port: OraclePort = D.oracle_port, oracle_bind: OracleBind = D.oracle_bind,
        worker_timeout: WorkerTimeout = D.worker_timeout) -> None:
    """Search, retrain the best, evaluate and visualize: the whole job."""
    options = locals()
    _guarded(lambda: _execute(_config(options), only_search=False))


@app.command()
def search(data: Data = None, dataset: DatasetOpt = D.dataset, artifacts: Artifacts = D.artifacts,
           run_id: RunId = None, tuner: Tuner = D.tuner, profile: ProfileOpt = D.profile,
           max_trials: MaxTrials = D.max_trials, epochs: Epochs = D.epochs,
           executions_per_trial: Executions = D.executions_per_trial, seed: Seed = D.seed,
           subset: Subset = None, search_subset: SearchSubset = D.search_subset,
           validation_split: ValidationSplit = D.validation_split,
           batch_size: BatchSize = D.batch_size, patience: Patience = D.patience,
           strategy: Strategy = D.strategy, logical_cpus: LogicalCpus = D.logical_cpus,
           jit_compile: JitCompile = D.jit_compile,
           mixed_precision: MixedPrecision = D.mixed_precision, overwrite: Overwrite = D.overwrite,
           grace_seconds: GraceSeconds = D.grace_seconds, work_dir: WorkDir = None,
           lease_seconds: LeaseSeconds = D.lease_seconds, role: RoleOpt = D.role,
           workers: Workers = D.workers, oracle_host: OracleHost = None,
           oracle_port: OraclePort = D.oracle_port, oracle_bind: OracleBind = D.oracle_bind,
           worker_timeout: WorkerTimeout = D.worker_timeout) -> None:
    """Only the search (creates or resumes the run): trials.csv, results.json."""
    options = locals()
    _guarded(lambda: _execute(_config(options), only_search=True))


@app.command()
def train(artifacts: Artifacts = "artifacts", run_id: ExistingRunId = None, data: Data = None,
          final_epochs: Annotated[Optional[int], _opt("final-epochs", "Override the run's.")] = None,
          lr_schedule: Annotated[Optional[LrSchedule], _opt("lr-schedule", "Override the run's.")] = None,
          work_dir: WorkDir = None) -> None:
    """Retrain the best trial of an existing run: best_model.keras, saved_model/, history.json."""
    _guarded(lambda: _step(artifacts, run_id, "train", work_dir, data=data,
                           final_epochs=final_epochs, lr_schedule=lr_schedule))


@app.command()
def evaluate(artifacts: Artifacts = "artifacts", run_id: ExistingRunId = None, data: Data = None,
             work_dir: WorkDir = None) -> None:
    """Evaluate an existing run's best_model.keras on the test set: metrics.json."""
    _guarded(lambda: _step(artifacts, run_id, "evaluate", work_dir, data=data))


@app.command()
def visualize(artifacts: Artifacts = "artifacts", run_id: ExistingRunId = None,
              work_dir: WorkDir = None) -> None:
    """Draw an existing run's filters.png, history.png and confusion_matrix.png."""
    _guarded(lambda: _step(artifacts, run_id, "visualize", work_dir))


@app.command()
def pull(run_url: Annotated[str, typer.Argument(metavar="RUN_URL",
                                                help="ARTIFACTS/RUN_ID, e.g. gs://bucket/mnist/exp-42")],
         dest: Annotated[Path, typer.Argument(metavar="DEST", help="Local directory to fill.")],
         partial: Annotated[bool, _opt("partial", "Fetch an unfinished run's latest snapshot.")] = False) -> None:
    """Download a run, every file verified against its manifest (manifest.json last)."""
    def fetch() -> None:
        from job import runs

        store, run_id = runs.split_run_url(run_url)
        count = runs.pull(store, run_id, dest, partial)
        print(f"pulled {count} files of {run_url} into {dest}, verified")

    _guarded(fetch)


@app.command()
def runs(artifacts: Annotated[str, typer.Argument(envvar="JOB_ARTIFACTS", show_envvar=True,
                                                  help="A local directory or gs://BUCKET/PREFIX.")]
         = "artifacts") -> None:
    """List the runs in a store: state, trials done, best and test accuracy."""
    def show() -> None:
        from job import runs as runs_module
        from job.storage import open_store

        if not artifacts.startswith("gs://") and not Path(artifacts).is_dir():
            raise BadInputError(f"{artifacts}: no such directory; pass a folder or gs:// prefix of runs")
        found = runs_module.list_runs(open_store(artifacts))
        print(runs_module.format_runs(found) if found else f"no runs in {artifacts}")

    _guarded(show)


@app.command()
def doctor(artifacts: Artifacts = "artifacts") -> None:
    """Check this machine first: versions, GPUs, the strategy auto picks, the artifact store."""
    from job import doctor as checks

    report = checks.collect(artifacts)
    print(checks.render(report))
    if not report.ok:
        raise typer.Exit(ExitCode.STORAGE)


def _config(options: dict[str, object]) -> JobConfig:
    values = dict(options)
    values["run_id"] = values.get("run_id") or new_run_id()
    if values.get("search_subset") == 0:
        values["search_subset"] = None
    return JobConfig(**values)


def _execute(config: JobConfig, only_search: bool) -> None:
    from job import session

    session.execute(config, _stop_on_sigterm(config.grace_seconds), only_search)


def _step(artifacts: str, run_id: str | None, step: str, work_dir: str | None,
          **overrides: object) -> None:
    from job import session

    stop = _stop_on_sigterm(grace_seconds=10.0)
    session.execute_step(artifacts, run_id or _newest_run(artifacts), step, stop, work_dir,
                         **overrides)


def _stop_on_sigterm(grace_seconds: float) -> StopSignal:
    from job.preemption import install_sigterm_handler

    stop = StopSignal()
    install_sigterm_handler(stop, grace_seconds)
    return stop


def _newest_run(artifacts: str) -> str:
    from job.runs import list_runs
    from job.storage import open_store

    found = sorted(list_runs(open_store(artifacts)), key=lambda run: run.updated)
    if not found:
        raise BadInputError(f"{artifacts}: no runs found; pass --artifacts and --run-id of an "
                            "existing run")
    print(f"using the newest run, {found[-1].run_id!r}", flush=True)
    return found[-1].run_id


def _guarded(action: object) -> None:
    """Runs `action`; a JobError becomes one line on stderr and its exit code."""
    try:
        action()  # type: ignore[operator]
    except JobError as error:
        print(f"error: {error}", file=sys.stderr)
        raise typer.Exit(error.exit_code) from None
    except Preempted:
        print("preempted: the state is saved; run the same command to resume", file=sys.stderr)
        raise typer.Exit(ExitCode.PREEMPTED) from None
    except KeyboardInterrupt:
        print("interrupted: the state is saved; run the same command to resume", file=sys.stderr)
        raise typer.Exit(ExitCode.INTERRUPTED) from None


def main() -> None:
    """Console entry point: usage errors also become one line and exit code 2."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ logs quiet
    # Until a command installs its own handler: nothing is written yet, so a SIGTERM
    # (e.g. a pod deleted while TensorFlow loads) is a clean "preempted, retry".
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(ExitCode.PREEMPTED))
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        code = ExitCode.INTERRUPTED
    except Exception as error:
        # Typer vendors Click's usage errors (bad option, bad choice); they carry
        # format_message and exit_code. Anything else is a bug: keep its traceback.
        if not (hasattr(error, "format_message") and hasattr(error, "exit_code")):
            raise
        context = getattr(error, "ctx", None)
        where = f" (see `{context.command_path} --help`)" if context else ""
        message = error.format_message().replace("Value error, ", "")  # Typer's validator wording
        print(f"error: {message}{where}", file=sys.stderr)
        code = ExitCode.BAD_INPUT
    sys.exit(code or 0)
