"""Shared fixtures: the real MNIST files, small real copies of them, and running `job`."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = Path(os.environ.get("JOB_TEST_DATA", ROOT.parent / "shared" / "data" / "mnist"))
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"real MNIST not found in {MNIST_DIR}; set JOB_TEST_DATA to its folder")
    return MNIST_DIR


@pytest.fixture(scope="session")
def mnist_arrays(mnist_dir: Path) -> dict[str, np.ndarray]:
    """The raw uint8 arrays of the real MNIST files."""
    from job.data import IDX_FILES, IMAGE_MAGIC, LABEL_MAGIC, _parse_idx

    arrays = {}
    for key, name in IDX_FILES.items():
        raw = gzip.decompress((mnist_dir / f"{name}.gz").read_bytes())
        arrays[key] = _parse_idx(raw, IMAGE_MAGIC if key.startswith("x") else LABEL_MAGIC, Path(name))
    return arrays


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(folder: Path, arrays: dict[str, np.ndarray], sums: bool = True) -> Path:
    """Writes arrays as the four gzip IDX files (and SHA256SUMS.raw) into `folder`."""
    from job.data import IDX_FILES, IMAGE_MAGIC, LABEL_MAGIC, SUMS_FILE

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for key, name in IDX_FILES.items():
        raw = idx_bytes(arrays[key], IMAGE_MAGIC if key.startswith("x") else LABEL_MAGIC)
        (folder / f"{name}.gz").write_bytes(gzip.compress(raw, compresslevel=1))
        lines.append(f"{hashlib.sha256(raw).hexdigest()}  {name}")
    if sums:
        (folder / SUMS_FILE).write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def mini_mnist(tmp_path: Path, mnist_arrays: dict[str, np.ndarray]) -> Path:
    """A small real MNIST: the first 2,000 training and 500 test images, as gzip IDX files."""
    small = {k: v[:2000] if "train" in k else v[:500] for k, v in mnist_arrays.items()}
    return write_mnist(tmp_path / "mini-mnist", small)


def run_job(*args: str, env: dict[str, str] | None = None, timeout: float = 600,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m job ARGS` as a separate process, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "job", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT, env={**os.environ, **QUIET_TF, **(env or {})})


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 30) -> None:
    """Bounded wait until something listens on 127.0.0.1:port."""
    import socket
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with code {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


@pytest.fixture(scope="session")
def gcs_emulator():
    """A real GCS-compatible server (gcp-storage-emulator) on 127.0.0.1, stopped by PID."""
    port = free_port()
    executable = Path(sys.executable).with_name("gcp-storage-emulator")
    process = subprocess.Popen([str(executable), "start", "--host=127.0.0.1", f"--port={port}",
                                "--in-memory"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def bucket(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, empty bucket in the emulator; its name. STORAGE_EMULATOR_HOST is set."""
    import uuid

    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    name = f"test-{uuid.uuid4().hex[:12]}"
    storage.Client().create_bucket(name)
    return name
