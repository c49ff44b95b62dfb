"""`job doctor`: the report on this machine, and the artifact-store check for a directory and
a bucket (a real GCS server on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import keras
import keras_tuner
import pytest
import tensorflow as tf

from job import doctor
from job.errors import ExitCode
from tests.conftest import free_port, run_job


def test_the_report_describes_this_machine(tmp_path: Path) -> None:
    report = doctor.collect(str(tmp_path))

    assert report.versions["tensorflow"] == tf.__version__
    assert report.versions["keras"] == keras.__version__
    assert report.versions["keras-tuner"] == keras_tuner.__version__
    visible = tf.config.list_physical_devices("GPU")
    assert [gpu.name for gpu in report.gpus] == [d.name.removeprefix("/physical_device:") for d in visible]
    if len(report.gpus) < 2:  # auto means mirrored only over two GPUs or more
        assert report.strategy == "_DefaultDistributionStrategy with 1 replica(s)"
    assert report.ok and report.store.detail.startswith("local directory, writable")


def test_render_gives_one_line_per_fact(tmp_path: Path) -> None:
    lines = doctor.render(doctor.collect(str(tmp_path))).splitlines()

    assert [line.split()[0] for line in lines] == [
        "python", "tensorflow", "keras", "keras-tuner", "cuda", "gpus", "strategy", "artifacts"]
    assert lines[-1].startswith(f"artifacts    ok: {tmp_path}: local directory")


def test_a_missing_directory_is_checked_where_it_would_be_created(tmp_path: Path) -> None:
    check = doctor.check_store(str(tmp_path / "runs" / "mnist"))

    assert check.ok and f"will be created in {tmp_path}" in check.detail
    assert list(tmp_path.iterdir()) == []  # the probe file is gone, nothing was created


def test_a_path_through_a_file_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a directory")

    check = doctor.check_store(str(tmp_path / "notes.txt" / "runs"))

    assert not check.ok
    assert check.detail == f"{tmp_path / 'notes.txt'} is not a directory; pass --artifacts a directory"


def test_other_url_schemes_are_refused() -> None:
    check = doctor.check_store("s3://bucket/runs")

    assert not check.ok and "gs://BUCKET/PREFIX" in check.detail


def test_a_reachable_bucket(bucket: str, gcs_emulator: str) -> None:
    check = doctor.check_store(f"gs://{bucket}/mnist")

    assert check.ok
    assert check.detail == f"bucket reachable at {gcs_emulator}, nothing under the prefix yet"


def test_a_missing_bucket(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)

    check = doctor.check_store("gs://no-such-bucket-here/mnist")

    assert not check.ok
    assert check.detail == f"bucket 'no-such-bucket-here' not found at {gcs_emulator}; check the name"


def test_an_unreachable_endpoint_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)

    check = doctor.check_store("gs://runs/mnist")

    assert not check.ok
    assert check.detail.startswith(f"cannot reach {endpoint} (ConnectionError)")


def test_the_command_exits_3_when_the_store_is_unusable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")

    good = run_job("doctor", "--artifacts", str(tmp_path / "runs"), timeout=120)
    bad = run_job("doctor", env={"JOB_ARTIFACTS": str(tmp_path / "file" / "runs")}, timeout=120)

    assert good.returncode == 0, good.stderr[-2000:]
    assert "strategy     auto -> " in good.stdout and "artifacts    ok: " in good.stdout
    assert bad.returncode == ExitCode.STORAGE
    assert "artifacts    FAILED: " in bad.stdout and "Traceback" not in bad.stderr
