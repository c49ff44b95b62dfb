"""manifest.json: every artifact with its size and SHA-256, the versions, the data checksums."""

from __future__ import annotations

import hashlib
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from job import rundir
from job.rundir import RunDir

PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "keras-tuner", "numpy", "image-recognition-job")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build(run: RunDir, data_checksums: dict[str, str]) -> dict[str, Any]:
    files = {name: {"size": run.path(name).stat().st_size, "sha256": sha256_file(run.path(name))}
             for name in run.files() if name not in (rundir.MANIFEST, rundir.STATUS)}
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "versions": _versions(),
        "data_checksums": data_checksums,
        "files": files,
    }


def write(run: RunDir, data_checksums: dict[str, str]) -> dict[str, Any]:
    """Writes manifest.json; call it last, after every other artifact is in place."""
    manifest = build(run, data_checksums)
    run.write_json(rundir.MANIFEST, manifest)
    return manifest


def mismatches(root: Path, manifest: dict[str, Any]) -> list[str]:
    """Files under `root` that are missing or differ from `manifest`, one line each."""
    problems = []
    for name, expected in manifest["files"].items():
        path = root / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif path.stat().st_size != expected["size"] or sha256_file(path) != expected["sha256"]:
            problems.append(f"{name}: content differs from the manifest")
    return problems


def _versions() -> dict[str, str]:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found
