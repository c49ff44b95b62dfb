"""Runs whose artifacts live in a bucket (a real GCS server on 127.0.0.1): complete, pulled
byte for byte, through injected faults, and after SIGTERM or SIGKILL at many moments."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest

from job.errors import ExitCode
from job.gcs import GcsStore
from tests.conftest import run_job
from tests.faultproxy import FaultProxy
from tests.processes import JobProcess

GRACE = 10.0
TINY = ["--subset", "1500", "--max-trials", "3", "--epochs", "2", "--final-epochs", "3",
        "--batch-size", "32", "--lease-seconds", "3", "--grace-seconds", str(GRACE)]
FLAKY = ["--subset", "1500", "--max-trials", "2", "--epochs", "1", "--final-epochs", "1",
         "--batch-size", "64"]
EPOCH_LINE = re.compile(r"^\s*\d+/\d+ - \d+s - ")  # Keras' one line per epoch (verbose=2)


def _args(bucket: str, data: str, work: Path, run_id: str) -> list[str]:
    return ["run", "--data", data, "--artifacts", f"gs://{bucket}/mnist", "--run-id", run_id,
            "--work-dir", str(work), *TINY]


def _pull_and_check(bucket: str, run_id: str, dest: Path, env: dict[str, str]) -> dict:
    pulled = run_job("pull", f"gs://{bucket}/mnist/{run_id}", str(dest), env=env, timeout=120)
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    results = json.loads((dest / "results.json").read_text())
    assert [t["status"] for t in results["trials"]] == ["completed"] * results["completed_trials"]
    assert [t["trial_id"] for t in results["trials"]] == [str(i) for i in range(len(results["trials"]))]
    return results


def test_a_bucket_run_lands_whole_and_pulls_byte_for_byte(bucket: str, gcs_emulator: str,
                                                          mini_mnist: Path, tmp_path: Path) -> None:
    data = GcsStore(f"gs://{bucket}/data/mnist")
    for file in mini_mnist.iterdir():
        data.upload(file, file.name)
    env = {"STORAGE_EMULATOR_HOST": gcs_emulator}
    work = tmp_path / "work"

    result = run_job("run", "--data", f"gs://{bucket}/data/mnist", "--artifacts",
                     f"gs://{bucket}/mnist", "--run-id", "exp-1", "--work-dir", str(work),
                     "--max-trials", "2", "--epochs", "1", "--final-epochs", "1",
                     "--batch-size", "64", env=env)

    assert result.returncode == 0, result.stderr[-3000:]
    pulled = run_job("pull", f"gs://{bucket}/mnist/exp-1", str(tmp_path / "pulled"), env=env)
    assert pulled.returncode == 0, pulled.stderr
    manifest = json.loads((tmp_path / "pulled" / "manifest.json").read_text())
    assert {"best_model.keras", "metrics.json", "filters.png", "trials.csv"} <= set(manifest["files"])
    [local] = work.glob("*/exp-1")  # WORK_DIR/<store key>/<run id>
    for name in manifest["files"]:
        assert (tmp_path / "pulled" / name).read_bytes() == (local / name).read_bytes()
    listed = run_job("runs", f"gs://{bucket}/mnist", env=env)
    assert re.search(r"exp-1\s+complete\s+done\s+2/2", listed.stdout), listed.stdout
    again = run_job(*_args(bucket, "unused", work, "exp-1"), env=env, timeout=120)
    assert again.returncode == 0 and "already complete" in again.stdout


def test_a_run_survives_a_flaky_bucket(bucket: str, gcs_emulator: str, mnist_dir: Path,
                                       tmp_path: Path) -> None:
    with FaultProxy(gcs_emulator, rate=0.15, seed=3, slow_seconds=0.5) as proxy:
        env = {"STORAGE_EMULATOR_HOST": proxy.url}
        args = _args(bucket, str(mnist_dir), tmp_path / "work", "flaky")
        result = run_job(*args[:-len(TINY)], *FLAKY, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        assert _pull_and_check(bucket, "flaky", tmp_path / "pulled", env)["completed_trials"] == 2
    faults = sum(proxy.counts[f] for f in ("503", "429", "reset", "slow"))
    print(f"fault proxy: {dict(proxy.counts)}")
    assert proxy.counts["requests"] > 100 and faults / proxy.counts["requests"] >= 0.10
    assert all(proxy.counts[f] > 0 for f in ("503", "429", "reset", "slow"))


# Moments to stop a run at: (name, the output line that starts the moment, extra delay in s).
MOMENTS = [
    ("during a trial", r"^Epoch 1/2|^\s*\d+/\d+ - ", 0.3),
    ("between trials", r"^trial 1/3 done", 0.0),
    ("during the final training", r"^train: best trial", 2.0),
    ("during evaluation", r"^train: best epoch", 0.5),
    ("during the upload", r"^manifest: ", 0.0),
]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_run_stopped_at_five_moments_completes_without_losing_work(
        sig: signal.Signals, bucket: str, gcs_emulator: str, mnist_dir: Path, tmp_path: Path) -> None:
    # Slow the bucket a little, so that "during the upload" is a real window.
    with FaultProxy(gcs_emulator, rate=0.0) as quiet, FaultProxy(quiet.url, rate=0.3, seed=1,
                                                                  slow_seconds=0.3) as slow:
        env = {"STORAGE_EMULATOR_HOST": slow.url}
        run_id = sig.name.lower()
        args = _args(bucket, str(mnist_dir), tmp_path / "work", run_id)
        attempts, stops = [], []
        for name, pattern, delay in MOMENTS:
            process = JobProcess(*args, env=env)
            attempts.append(process)
            try:
                process.wait_for(pattern)
                time.sleep(delay)
                sent = process.send(sig)
                code = process.wait(timeout=60)
            finally:
                process.stop()
            stops.append((name, code, time.monotonic() - sent))
            if sig == signal.SIGTERM and code != ExitCode.OK:
                assert code == ExitCode.PREEMPTED, f"{name}: exit {code}\n{process.output[-2000:]}"
                assert stops[-1][2] <= GRACE, f"{name}: took {stops[-1][2]:.1f} s"
                listed = run_job("runs", f"gs://{bucket}/mnist", env=env, timeout=60).stdout
                assert re.search(rf"{run_id}\s+preempted", listed), listed
        final = JobProcess(*args, env=env)
        assert final.wait(timeout=600) == 0, final.output[-3000:]
        attempts.append(final)
        print("\n".join(f"{sig.name} {name}: exit {code} after {secs:.1f} s"
                        for name, code, secs in stops))

        results = _pull_and_check(bucket, run_id, tmp_path / "pulled", env)
    assert results["completed_trials"] == 3
    done = {line.split()[1] for p in attempts for line in p.lines if re.match(r"^trial \d/3 done", line)}
    assert done == {"1/3", "2/3", "3/3"}
    trained = sum(1 for p in attempts for line in p.lines if EPOCH_LINE.match(line))
    # 3 trials x 2 epochs + 3 final epochs; each stop inside a fit redoes at most one epoch.
    assert trained <= 3 * 2 + 3 + len(MOMENTS), "a trial or the training restarted from scratch"
