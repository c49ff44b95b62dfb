"""Retraining the best trial: the learning-rate schedules of `job train`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from job.training import cosine_rate
from tests.conftest import run_job


def test_the_cosine_rate_falls_from_the_tuned_rate_to_one_percent() -> None:
    rates = [cosine_rate(1e-3, epoch, 5) for epoch in range(5)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5)
    assert rates == sorted(rates, reverse=True)
    assert rates[2] == pytest.approx(0.5 * (1e-3 + 1e-5))  # halfway: the mean of both ends


def test_a_run_retrained_with_either_schedule(tmp_path: Path, mnist_dir: Path) -> None:
    common = ["--artifacts", str(tmp_path), "--run-id", "sched"]
    done = run_job("run", "--data", str(mnist_dir), *common, "--subset", "3000",
                   "--max-trials", "1", "--epochs", "1", "--final-epochs", "1", "--batch-size", "64")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "test_accuracy" in _status(tmp_path)

    cosine = run_job("train", *common, "--lr-schedule", "cosine", "--final-epochs", "4")

    assert cosine.returncode == 0, cosine.stderr[-2000:]
    assert "for 4 epochs on 2400 images, cosine learning rate" in cosine.stdout
    config = json.loads((tmp_path / "sched" / "config.json").read_text())
    assert (config["lr_schedule"], config["final_epochs"]) == ("cosine", 4)  # what was used
    assert "test_accuracy" not in _status(tmp_path)  # that model is gone until `job evaluate`
    history = json.loads((tmp_path / "sched" / "history.json").read_text())
    tuned = history["hyperparameters"]["learning_rate"] * 64 / 128  # scaled to the batch
    # every epoch runs, each on its point of the curve (float32 in the optimizer)
    assert history["metrics"]["learning_rate"] == pytest.approx(
        [cosine_rate(tuned, epoch, 4) for epoch in range(4)], rel=1e-5)
    assert history["best_val_accuracy"] > 0.8  # it learns on the real digits

    plateau = run_job("train", *common, "--lr-schedule", "plateau", "--final-epochs", "2")
    assert plateau.returncode == 0, plateau.stderr[-2000:]
    assert "for up to 2 epochs on 2400 images, plateau learning rate" in plateau.stdout


def _status(artifacts: Path) -> dict:
    return json.loads((artifacts / "sched" / "status.json").read_text())
