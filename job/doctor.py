"""`job doctor`: what this machine gives the job — versions, GPUs, the strategy, the store.

The first command to run on a new cluster. `collect` gathers the facts into a `Report`
(plain data); `render` turns it into lines. Nothing here trains or leaves a file behind.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

STORE_TIMEOUT = (5.0, 10.0)  # seconds (connect, read): a doctor answers quickly or says why


@dataclass(frozen=True)
class Gpu:
    name: str  # TensorFlow's name, e.g. "GPU:0"
    model: str  # e.g. "NVIDIA L4 (compute 8.9)"; "" when the driver does not say


@dataclass(frozen=True)
class StoreCheck:
    url: str
    ok: bool
    detail: str  # one line: what was found, or what is wrong and what to do


@dataclass(frozen=True)
class Report:
    versions: dict[str, str]  # python, tensorflow, keras, keras-tuner
    cuda: str  # what TensorFlow was built with, e.g. "CUDA 12.5.1, cuDNN 9"
    gpus: list[Gpu]
    strategy: str  # what `--strategy auto` chooses on this machine
    store: StoreCheck

    @property
    def ok(self) -> bool:
        return self.store.ok


def collect(artifacts: str) -> Report:
    """Every check, in the order a user would read them."""
    from job import strategy
    from job.config import StrategyKind

    chosen = strategy.make_strategy(StrategyKind.AUTO)  # the job's own choice, not a copy of it
    return Report(versions=versions(), cuda=cuda_build(), gpus=gpus(),
                  strategy=strategy.describe(chosen), store=check_store(artifacts))


def versions() -> dict[str, str]:
    import keras
    import keras_tuner
    import tensorflow as tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "keras-tuner": keras_tuner.__version__}


def cuda_build() -> str:
    import tensorflow as tf

    info = tf.sysconfig.get_build_info()
    if not info.get("is_cuda_build"):
        return "none: a CPU-only TensorFlow build"
    return f"CUDA {info.get('cuda_version', '?')}, cuDNN {info.get('cudnn_version', '?')}"


def gpus() -> list[Gpu]:
    """The GPUs TensorFlow sees (after CUDA_VISIBLE_DEVICES and the container runtime)."""
    import tensorflow as tf

    found = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        model = details.get("device_name", "")
        if details.get("compute_capability"):
            model += " (compute {}.{})".format(*details["compute_capability"])
        found.append(Gpu(device.name.removeprefix("/physical_device:"), model.strip()))
    return found


def check_store(url: str) -> StoreCheck:
    """Whether the job could use `url` (its --artifacts) right now."""
    if url.startswith("gs://"):
        return _check_bucket(url)
    if "://" in url:
        return StoreCheck(url, False, "only local paths and gs://BUCKET/PREFIX are supported")
    return _check_directory(url)


def render(report: Report) -> str:
    lines = [f"{name:<12} {version}" for name, version in report.versions.items()]
    lines.append(f"{'cuda':<12} {report.cuda}")
    lines.append(f"{'gpus':<12} {_gpu_line(report)}")
    lines.append(f"{'strategy':<12} auto -> {report.strategy}")
    status = "ok" if report.store.ok else "FAILED"
    lines.append(f"{'artifacts':<12} {status}: {report.store.url}: {report.store.detail}")
    return "\n".join(lines)


def _gpu_line(report: Report) -> str:
    if report.gpus:
        return f"{len(report.gpus)}: " + "; ".join(f"{g.name} {g.model}".strip() for g in report.gpus)
    if report.cuda.startswith("none"):
        return "none (a CPU-only TensorFlow: use the GPU image, or install the gpu extra)"
    return ("none visible to TensorFlow; check `nvidia-smi`, `docker run --gpus all` or the "
            "pod's nvidia.com/gpu limit, and the NVIDIA container toolkit")


def _check_directory(url: str) -> StoreCheck:
    path = Path(url).absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the job creates the rest
    if not existing.is_dir():
        return StoreCheck(url, False, f"{existing} is not a directory; pass --artifacts a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".job-doctor-"):
            pass
    except OSError as error:
        return StoreCheck(url, False, f"cannot write in {existing} ({error.strerror}); mount a "
                                      "writable volume there or pass another --artifacts")
    free = shutil.disk_usage(existing).free / 1e9
    where = "writable" if existing == path else f"will be created in {existing}, writable"
    return StoreCheck(url, True, f"local directory, {where}, {free:.1f} GB free")


def _check_bucket(url: str) -> StoreCheck:
    """Lists at most one object under the prefix, once, with short timeouts."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth
    from google.cloud import storage

    bucket, _, prefix = url.removeprefix("gs://").partition("/")
    if not bucket:
        return StoreCheck(url, False, "expected gs://BUCKET/PREFIX")
    endpoint = os.environ.get("STORAGE_EMULATOR_HOST") or "storage.googleapis.com"
    try:
        listed = list(storage.Client().list_blobs(bucket, prefix=prefix.strip("/"), max_results=1,
                                                  timeout=STORE_TIMEOUT, retry=None))
    except auth.DefaultCredentialsError:
        return StoreCheck(url, False, "no Google credentials; set GOOGLE_APPLICATION_CREDENTIALS "
                                      "or use Workload Identity on GKE")
    except api.NotFound:
        return StoreCheck(url, False, f"bucket {bucket!r} not found at {endpoint}; check the name")
    except api.Forbidden as error:
        return StoreCheck(url, False, f"permission denied ({_first_line(error)}); grant this "
                                      "identity roles/storage.objectUser on the bucket")
    except requests.RequestException as error:  # refused, timed out: its text is a URL dump
        return StoreCheck(url, False, f"cannot reach {endpoint} ({type(error).__name__}); "
                                      "check the network, the proxy and STORAGE_EMULATOR_HOST")
    except (api.GoogleAPIError, auth.GoogleAuthError) as error:
        return StoreCheck(url, False, f"{endpoint} answered {type(error).__name__}: "
                                      f"{_first_line(error)}")
    contents = "objects under the prefix" if listed else "nothing under the prefix yet"
    return StoreCheck(url, True, f"bucket reachable at {endpoint}, {contents}")


def _first_line(error: Exception) -> str:
    text = str(getattr(error, "message", "") or error).strip().splitlines()
    return text[0][:160] if text else "no details"
