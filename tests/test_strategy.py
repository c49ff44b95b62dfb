"""MirroredStrategy for real, on two logical CPU devices, through the whole job."""

from __future__ import annotations

from pathlib import Path

import keras

from job.config import StrategyKind
from job.strategy import make_strategy
from tests.conftest import run_job


def test_mirrored_on_two_logical_cpus_trains_and_saves(tmp_path: Path, mnist_dir: Path) -> None:
    result = run_job("run", "--data", str(mnist_dir), "--artifacts", str(tmp_path),
                     "--run-id", "mirrored", "--strategy", "mirrored", "--logical-cpus", "2",
                     "--subset", "2000", "--max-trials", "1", "--epochs", "1",
                     "--final-epochs", "2", "--batch-size", "64")

    assert result.returncode == 0, result.stderr[-3000:]
    assert "strategy: MirroredStrategy with 2 replica(s)" in result.stdout
    model = keras.saving.load_model(tmp_path / "mirrored" / "best_model.keras")
    assert model.output_shape == (None, 10)
    assert (tmp_path / "mirrored" / "manifest.json").is_file()


def test_auto_without_two_gpus_is_the_default_strategy() -> None:
    assert make_strategy(StrategyKind.AUTO).num_replicas_in_sync == 1
