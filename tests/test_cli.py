"""`job` end to end on a real MNIST subset, its options, env vars and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import pytest
from typer.testing import CliRunner

from job import manifest, rundir
from job.cli import app
from tests.conftest import run_job

ARTIFACT_SET = {"config.json", "trials.csv", "results.json", "best_model.keras", "history.json",
                "metrics.json", "filters.png", "history.png", "confusion_matrix.png",
                "manifest.json", "data.json"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> tuple[Path, str]:
    """One real `job run`: 2 trials x 1 epoch, then 4 final epochs, on 6,000 MNIST images, batch 64."""
    artifacts = tmp_path_factory.mktemp("artifacts")
    result = run_job("run", "--data", str(mnist_dir), "--artifacts", str(artifacts),
                     "--run-id", "e2e", "--subset", "6000", "--max-trials", "2", "--epochs", "1",
                     "--final-epochs", "4", "--batch-size", "64")
    assert result.returncode == 0, result.stderr[-3000:]
    return artifacts / "e2e", result.stdout


def test_run_writes_the_whole_artifact_set(finished_run: tuple[Path, str]) -> None:
    root, _ = finished_run
    names = {p.name for p in root.iterdir()}
    assert ARTIFACT_SET <= names
    assert (root / "saved_model" / "saved_model.pb").is_file()
    assert (root / "tuner" / "search" / "oracle.json").is_file()
    assert not [p for p in root.rglob("*") if rundir.TEMP_MARK in p.name]


def test_manifest_checksums_match_the_files(finished_run: tuple[Path, str]) -> None:
    root, _ = finished_run
    written = json.loads((root / "manifest.json").read_text())
    assert manifest.mismatches(root, written) == []
    assert "best_model.keras" in written["files"] and "tuner/search/oracle.json" in written["files"]
    assert set(written["data_checksums"]) == {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}
    assert {"tensorflow-cpu", "keras", "keras-tuner"} <= set(written["versions"])


def test_the_tuned_model_learns(finished_run: tuple[Path, str]) -> None:
    root, stdout = finished_run
    metrics = json.loads((root / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.90
    assert metrics["test_images"] == 10000 and len(metrics["classes"]) == 10
    results = json.loads((root / "results.json").read_text())
    assert results["completed_trials"] == 2 and results["best_hyperparameters"]
    assert "trial 1/2 done in" in stdout and "trial 2/2 done in" in stdout
    assert "test accuracy" in stdout


def test_best_model_is_the_retrained_checkpoint(finished_run: tuple[Path, str]) -> None:
    root, _ = finished_run
    history = json.loads((root / "history.json").read_text())
    model = keras.saving.load_model(root / "best_model.keras")
    assert len(history["metrics"]["val_accuracy"]) == 4
    results = json.loads((root / "results.json").read_text())
    conv1 = results["best_hyperparameters"]["conv1_filters"]
    assert model.get_layer("conv1").kernel.shape[-1] == conv1


def test_a_complete_run_is_not_redone(finished_run: tuple[Path, str], mnist_dir: Path) -> None:
    root, _ = finished_run
    result = CliRunner().invoke(app, ["run", "--artifacts", str(root.parent), "--run-id", "e2e"])
    assert result.exit_code == 0 and "already complete" in result.output


def test_steps_rerun_alone_and_refresh_the_manifest(finished_run: tuple[Path, str],
                                                    mnist_dir: Path) -> None:
    root, _ = finished_run
    (root / "filters.png").unlink()
    before = json.loads((root / "metrics.json").read_text())

    evaluated = CliRunner().invoke(app, ["evaluate", "--artifacts", str(root.parent),
                                         "--run-id", "e2e"])
    assert evaluated.exit_code == 0, evaluated.output
    assert not (root / "manifest.json").exists()  # the run is incomplete until visualize
    drawn = CliRunner().invoke(app, ["visualize", "--artifacts", str(root.parent)])

    assert drawn.exit_code == 0, drawn.output
    assert "newest run, 'e2e'" in drawn.output
    assert (root / "filters.png").is_file()
    assert json.loads((root / "metrics.json").read_text())["test_accuracy"] == before["test_accuracy"]
    assert manifest.mismatches(root, json.loads((root / "manifest.json").read_text())) == []


def test_help_shows_env_vars_and_defaults() -> None:
    result = CliRunner().invoke(app, ["run", "--help"])
    for expected in ("JOB_DATA", "JOB_MAX_TRIALS", "JOB_RUN_ID", "default: 4", "default: random"):
        assert expected in result.output


def test_options_come_from_the_environment(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run"], env={"JOB_MAX_TRIALS": "0",
                                                   "JOB_ARTIFACTS": str(tmp_path)})
    assert result.exit_code == 2
    assert result.output.strip() == "error: --max-trials must be at least 1, got 0"


def test_usage_errors_are_one_line_with_exit_code_2() -> None:
    result = run_job("run", "--tuner", "grid", timeout=60)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "'grid' is not one of 'random', 'hyperband', 'bayesian'" in result.stderr


def test_a_step_on_a_missing_run_says_what_to_do(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--artifacts", str(tmp_path), "--run-id", "nope"])
    assert result.exit_code == 2
    assert "config.json: not found; run `job run` for this run first" in result.output
