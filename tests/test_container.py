"""The container image, run the way users and Kubernetes run it: as UID 10001 with a read-only
root filesystem and a tmpfs on /tmp, MNIST mounted read-only, artifacts in a bucket (a real GCS
server on the host's 127.0.0.1, reached with --network host).

Needs a Docker daemon and the image that `make local-image` builds (JOB_TEST_IMAGE names it;
`make test` and `make image-test` build it first); skips when no daemon answers.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from job import manifest
from job.errors import ExitCode
from tests.conftest import run_job

pytestmark = pytest.mark.docker

IMAGE = os.environ.get("JOB_TEST_IMAGE", "image-recognition-job:test")
GRACE = 10  # the job's --grace-seconds; docker stop allows 5 s more before SIGKILL (exit 137)
SMOKE = ["--subset", "1500", "--max-trials", "1", "--epochs", "1", "--final-epochs", "1",
         "--batch-size", "64"]
ARTIFACTS = {"config.json", "data.json", "trials.csv", "results.json", "best_model.keras",
             "saved_model/saved_model.pb", "history.json", "metrics.json", "filters.png",
             "history.png", "confusion_matrix.png", "tuner/search/oracle.json"}
EPOCH_LINE = r"^\s*\d+/\d+ - \d+s - "  # Keras' line at the end of each epoch (verbose=2)


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> str:
    if shutil.which("docker") is None:
        pytest.skip("no docker command on this machine")
    try:
        info = _docker("info", "--format", "{{.ServerVersion}}", timeout=20)
    except subprocess.TimeoutExpired:
        pytest.skip("the Docker daemon does not answer within 20 s")
    if info.returncode != 0:
        said = info.stderr.strip().splitlines() or [f"docker info exited {info.returncode}"]
        pytest.skip(f"no Docker daemon answers: {said[-1]}")
    if _docker("image", "inspect", IMAGE).returncode != 0:
        if "JOB_TEST_IMAGE" in os.environ:
            pytest.fail(f"image {IMAGE} (JOB_TEST_IMAGE) not found; build it with `make local-image`")
        pytest.skip(f"image {IMAGE} not built; `make image-test` builds it and runs these checks")
    return IMAGE


class Container:
    """`docker run IMAGE ARGS` in the foreground, as a user runs it; output read line by line."""

    def __init__(self, image: str, *args: str, docker_args: list[str]):
        self.name = f"irj-test-{uuid.uuid4().hex[:10]}"
        self.process = subprocess.Popen(
            ["docker", "run", "--rm", "--name", self.name, *docker_args, image, *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line)
        self._queue.put(None)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 240) -> None:
        """Blocks until an output line matches `pattern`; fails on exit or timeout."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"container exited before {pattern!r}:\n{self.output[-3000:]}")
            if re.search(pattern, line):
                return
        raise AssertionError(f"no line matching {pattern!r} in {timeout} s:\n{self.output[-3000:]}")

    def wait(self, timeout: float = 300) -> int:
        return self.process.wait(timeout=timeout)

    def remove(self) -> None:
        """Always called: the container and the docker client go, whatever happened."""
        _docker("rm", "--force", self.name, timeout=60)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def _locked_down(mnist_dir: Path, *extra: str) -> list[str]:
    """How a hardened pod runs it: UID 10001, read-only root, a tmpfs for /tmp, data read-only."""
    return ["--read-only", "--user", "10001", "--tmpfs", "/tmp", "--network", "host",
            "--volume", f"{mnist_dir}:/data:ro", *extra]


def _run(image: str, *args: str, docker_args: list[str], timeout: float = 300) -> Container:
    container = Container(image, *args, docker_args=docker_args)
    try:
        container.wait(timeout)
    finally:
        container.remove()
    return container


def test_help_lists_the_commands(image: str) -> None:
    shown = _docker("run", "--rm", image, "--help")
    default = _docker("run", "--rm", image)  # no arguments: the image's CMD is --help

    assert shown.returncode == 0, shown.stderr
    commands = re.findall(r"^  (\w+) ", shown.stdout, flags=re.MULTILINE)
    assert {"run", "search", "train", "evaluate", "visualize", "doctor"} <= set(commands)
    assert default.returncode == 0 and default.stdout == shown.stdout


def test_the_image_runs_as_uid_10001_under_tini_with_no_build_certificates(image: str) -> None:
    config = json.loads(_docker("image", "inspect", image).stdout)[0]["Config"]
    extra_ca = _docker("run", "--rm", "--entrypoint", "/bin/sh", image, "-c",
                       "ls /usr/local/share/ca-certificates; id -u")

    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["/usr/bin/tini", "--", "/opt/venv/bin/job"]
    labels = {"org.opencontainers.image.version", "org.opencontainers.image.revision"}
    assert labels <= set(config["Labels"])
    assert extra_ca.stdout.split() == ["10001"]  # docker/ca/ reached only the build stage


def test_doctor_says_when_the_store_is_not_writable(image: str, mnist_dir: Path) -> None:
    readonly = _run(image, "doctor", docker_args=_locked_down(mnist_dir))

    assert readonly.process.returncode == ExitCode.STORAGE, readonly.output[-2000:]
    assert "artifacts    FAILED: /artifacts: cannot write in /artifacts (Read-only file system)" \
        in readonly.output
    assert re.search(r"^gpus +none", readonly.output, flags=re.MULTILINE)


def test_a_smoke_run_lands_whole_in_a_mounted_directory(image: str, mnist_dir: Path,
                                                       tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    if os.geteuid() == 0:
        os.chown(artifacts, 10001, 10001)  # as a volume prepared for the pod's UID
    else:
        artifacts.chmod(0o777)

    done = _run(image, "run", "--data", "/data", "--run-id", "smoke", *SMOKE,
                docker_args=_locked_down(mnist_dir, "--volume", f"{artifacts}:/artifacts"))

    assert done.process.returncode == 0, done.output[-3000:]
    run = artifacts / "smoke"
    written = json.loads((run / "manifest.json").read_text())
    assert ARTIFACTS <= set(written["files"]) and manifest.mismatches(run, written) == []


def test_a_smoke_run_lands_whole_in_the_bucket(image: str, mnist_dir: Path, bucket: str,
                                               gcs_emulator: str, tmp_path: Path) -> None:
    done = _run(image, "run", "--data", "/data", "--artifacts", f"gs://{bucket}/mnist",
                "--run-id", "smoke", *SMOKE,
                docker_args=_locked_down(mnist_dir, "--env", f"STORAGE_EMULATOR_HOST={gcs_emulator}"))

    assert done.process.returncode == 0, done.output[-3000:]
    pulled = run_job("pull", f"gs://{bucket}/mnist/smoke", str(tmp_path / "pulled"), timeout=120)
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    written = json.loads((tmp_path / "pulled" / "manifest.json").read_text())
    assert ARTIFACTS <= set(written["files"])
    assert manifest.mismatches(tmp_path / "pulled", written) == []


def test_docker_stop_mid_search_saves_the_state_and_a_new_container_resumes(
        image: str, mnist_dir: Path, bucket: str, gcs_emulator: str, tmp_path: Path) -> None:
    url = f"gs://{bucket}/mnist/stopped"
    args = ["run", "--data", "/data", "--artifacts", f"gs://{bucket}/mnist", "--run-id", "stopped",
            "--subset", "1500", "--max-trials", "3", "--epochs", "2", "--final-epochs", "1",
            "--batch-size", "32", "--grace-seconds", str(GRACE)]
    docker_args = _locked_down(mnist_dir, "--env", f"STORAGE_EMULATOR_HOST={gcs_emulator}")
    first = Container(image, *args, docker_args=docker_args)
    try:
        first.wait_for(r"^trial 1/3 done")
        first.wait_for(EPOCH_LINE)  # inside trial 2
        # SIGTERM to PID 1; SIGKILL (exit 137) if the job is still alive after GRACE + 5 s.
        sent = time.monotonic()
        stopped = _docker("stop", "--time", str(GRACE + 5), first.name, timeout=GRACE + 60)
        code = first.wait(timeout=30)
        print(f"docker stop mid-search: exit {code} after {time.monotonic() - sent:.1f} s")
    finally:
        first.remove()

    assert stopped.returncode == 0, stopped.stderr
    assert code == ExitCode.PREEMPTED, first.output[-3000:]
    assert "trial 3/3 done" not in first.output
    partial = run_job("pull", "--partial", url, str(tmp_path / "partial"), timeout=120)
    assert partial.returncode == 0, partial.stderr[-2000:]
    assert (tmp_path / "partial" / "tuner" / "search" / "oracle.json").is_file()

    second = _run(image, *args, docker_args=docker_args, timeout=600)

    assert second.process.returncode == 0, second.output[-3000:]
    assert "trial 1/3 done" not in second.output  # the finished trial came from the bucket
    epochs = [line for c in (first, second) for line in c.lines if re.match(EPOCH_LINE, line)]
    assert len(epochs) <= 3 * 2 + 1 + 1  # 3 trials x 2 epochs, 1 final; one epoch redone at most
    pulled = run_job("pull", url, str(tmp_path / "pulled"), timeout=120)
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    results = json.loads((tmp_path / "pulled" / "results.json").read_text())
    assert [trial["status"] for trial in results["trials"]] == ["completed"] * 3
