"""The search: resuming after a stop, failed trials, and refusing a changed search."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from job.config import JobConfig, Profile
from job.data import load
from job.errors import BadInputError, ExitCode
from job.inputs import make_splits, training_batches, validation_batches
from job.model import CnnHyperModel
from job.preemption import StopSignal
from job.rundir import RunDir
from job import strategy as strategy_module, tuning
from tests.conftest import QUIET_TF, ROOT, run_job

SEARCH = ["--subset", "2500", "--max-trials", "3", "--epochs", "1", "--run-id", "resume"]


def _trial_json(root: Path, trial_id: str) -> dict:
    return json.loads((root / "tuner" / "search" / f"trial_{trial_id}" / "trial.json").read_text())


def test_a_search_stopped_after_trial_1_resumes_without_retraining_it(tmp_path: Path,
                                                                       mnist_dir: Path) -> None:
    args = ["search", "--data", str(mnist_dir), "--artifacts", str(tmp_path), *SEARCH]
    process = subprocess.Popen([sys.executable, "-m", "job", *args], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, **QUIET_TF})
    try:
        deadline = time.monotonic() + 300
        for line in process.stdout:  # bounded: the process ends, or the deadline fails the test
            if line.startswith("trial 1/3 done") or time.monotonic() > deadline:
                break
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == ExitCode.PREEMPTED
    finally:
        process.kill()
        process.wait()
    first = _trial_json(tmp_path / "resume", "0")
    assert first["status"] == "COMPLETED"

    resumed = run_job(*args)

    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "trial 1/3 done" not in resumed.stdout
    assert "trial 3/3 done" in resumed.stdout
    assert _trial_json(tmp_path / "resume", "0") == first  # trial 1 was not trained again
    results = json.loads((tmp_path / "resume" / "results.json").read_text())
    assert [t["status"] for t in results["trials"]] == ["completed"] * 3


def test_a_changed_search_or_other_data_is_refused(tmp_path: Path, mnist_dir: Path,
                                                   mini_mnist: Path) -> None:
    from job import pipeline

    run = RunDir(tmp_path / "r")
    data = str(mnist_dir)
    pipeline.start(JobConfig(run_id="r", tuner="random", data=data), run)

    with pytest.raises(BadInputError, match=r"\(--tuner: random -> bayesian\); use a new --run-id"):
        pipeline.start(JobConfig(run_id="r", tuner="bayesian", data=data), run)
    with pytest.raises(BadInputError, match="expected the data that run 'r' started with"):
        pipeline.start(JobConfig(run_id="r", data=str(mini_mnist)), run)
    pipeline.start(JobConfig(run_id="r", tuner="random", max_trials=9, data=data), run)  # growing
    pipeline.start(JobConfig(run_id="r", tuner="bayesian", overwrite=True, data=data), run)


class _DivergingFirstTrial(CnnHyperModel):
    """Trial 1 gets a NaN learning rate, so its loss is certain to become NaN (a huge finite
    rate is not: BatchNorm and the clipped cross-entropy can keep the loss finite)."""

    def build(self, hp):
        model = super().build(hp)
        if not getattr(self, "diverged", False):
            self.diverged = True
            model.optimizer.learning_rate.assign(float("nan"))
        return model


def test_a_nan_trial_is_recorded_as_failed_and_the_search_goes_on(tmp_path: Path,
                                                                   mnist_dir: Path) -> None:
    config = JobConfig(run_id="nan", subset=1500, max_trials=2, epochs=1, search_subset=None)
    data = load(mnist_dir)
    splits = make_splits(data.y_train, config)
    run = RunDir(tmp_path / "nan")
    strategy = strategy_module.make_strategy(config.strategy)
    tuner = tuning.make_tuner(config, run, strategy, StopSignal())
    tuner.hypermodel = _DivergingFirstTrial(Profile.QUICK, config.batch_size)

    tuning.search(tuner, config, training_batches(data, splits.search_train, 256, 1),
                  validation_batches(data, splits.validation, 256))

    found = tuning.results_of(tuner)

    assert [t.status for t in found.trials] == ["failed", "completed"]
    assert "loss became nan" in found.trials[0].message
    assert found.best.trial == 2 and np.isfinite(found.best.val_accuracy)


def test_the_state_synced_at_a_trial_end_never_runs_that_trial_again(tmp_path: Path,
                                                                    mnist_dir: Path) -> None:
    """KerasTuner's end_trial saves oracle.json while the ended trial is still listed as
    running; its reload then retries it. Neither what we sync nor what we reload may."""
    config = JobConfig(run_id="ends", subset=600, max_trials=1, epochs=1, search_subset=None)
    data = load(mnist_dir)
    splits = make_splits(data.y_train, config)
    run = RunDir(tmp_path / "ends")
    oracle_file = tuning.project_dir(run) / "oracle.json"
    synced: list[dict] = []  # oracle.json as each trial's end would sync it to the bucket
    tuner = tuning.make_tuner(config, run, strategy_module.make_strategy(config.strategy),
                              StopSignal(), after_trial=lambda summary: synced.append(
                                  json.loads(oracle_file.read_text())))
    tuning.search(tuner, config, training_batches(data, splits.search_train, 128, 1),
                  validation_batches(data, splits.validation, 128))
    assert synced[-1]["end_order"] == ["0"] and synced[-1]["ongoing_trials"] == {}

    # A kill inside end_trial, after its own save: trial 1 both ended and running.
    state = json.loads(oracle_file.read_text())
    oracle_file.write_text(json.dumps({**state, "ongoing_trials": {"tuner0": "0"}}))
    grown = dataclasses.replace(config, max_trials=2)
    resumed = tuning.make_tuner(grown, run, strategy_module.make_strategy(config.strategy),
                                StopSignal())
    assert resumed.oracle._retry_queue == []
    assert resumed.oracle.create_trial("tuner0").trial_id == "1"


def test_same_seed_same_trial_hyperparameters(tmp_path: Path) -> None:
    def first_values(seed: int, name: str) -> list[dict]:
        config = JobConfig(run_id=name, seed=seed, max_trials=3)
        tuner = tuning.make_tuner(config, RunDir(tmp_path / name),
                                  strategy_module.make_strategy(config.strategy), StopSignal())
        return [tuner.oracle.populate_space(str(i))["values"] for i in range(3)]

    assert first_values(7, "a") == first_values(7, "b")
    assert first_values(7, "a") != first_values(8, "c")


def test_finished_trials_leave_no_traced_graphs_behind(tmp_path: Path, mnist_dir: Path) -> None:
    """Each trace of Keras' gradient all-reduce registers a global gradient function that
    would keep the trial's traced step (~11 MB) alive for good; bench/memory.py measures it."""
    from tensorflow.python.framework import ops

    def custom_gradients() -> set[str]:
        return {name for name in ops._gradient_registry._registry if name.startswith("CustomGradient-")}

    config = JobConfig(run_id="graphs", subset=600, max_trials=2, epochs=1, search_subset=None)
    data = load(mnist_dir)
    splits = make_splits(data.y_train, config)
    tuner = tuning.make_tuner(config, RunDir(tmp_path / "graphs"),
                              strategy_module.make_strategy(config.strategy), StopSignal())
    before = custom_gradients()

    tuning.search(tuner, config, training_batches(data, splits.search_train, 128, 1),
                  validation_batches(data, splits.validation, 128))

    assert [t.status for t in tuning.results_of(tuner).trials] == ["completed", "completed"]
    assert custom_gradients() == before


@pytest.mark.parametrize("kind", ["hyperband", "bayesian"])
def test_the_other_tuners_search_real_data(kind: str, tmp_path: Path, mnist_dir: Path) -> None:
    config = JobConfig(run_id=kind, tuner=kind, subset=800, max_trials=2, epochs=2,
                       search_subset=None, batch_size=32)
    data = load(mnist_dir)
    splits = make_splits(data.y_train, config)
    tuner = tuning.make_tuner(config, RunDir(tmp_path / kind),
                              strategy_module.make_strategy(config.strategy), StopSignal())

    tuning.search(tuner, config, training_batches(data, splits.search_train, 32, 1),
                  validation_batches(data, splits.validation, 32))

    found = tuning.results_of(tuner)
    assert found.completed and found.best.val_accuracy > 0.1
    assert all(t.epochs >= 1 for t in found.completed)
