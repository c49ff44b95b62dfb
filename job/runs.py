"""Reading runs from a store: `job runs` lists them, `job pull` fetches one, verified."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from job import rundir
from job.errors import BadInputError, StorageError
from job.manifest import sha256_file
from job.storage import LocalStore, Store, open_store

SCOPES = ("main", "chief")  # whose snapshot a partial pull takes


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    state: str  # running, preempted, failed, searched, complete
    step: str
    trials_done: int | None
    max_trials: int | None
    best_val_accuracy: float | None
    test_accuracy: float | None
    updated: str


def split_run_url(url: str) -> tuple[Store, str]:
    """`gs://bucket/prefix/run-id` (or a local path) -> (store of the prefix, run id)."""
    parent, _, run_id = url.rstrip("/").rpartition("/")
    if not run_id or not parent or parent.endswith(":/"):
        raise BadInputError(f"{url}: expected ARTIFACTS/RUN_ID, e.g. gs://bucket/mnist/exp-42")
    return open_store(parent), run_id


def list_runs(store: Store) -> list[RunInfo]:
    runs = []
    for run_id in store.children():
        stored = store.read(f"{run_id}/{rundir.STATUS}")
        complete = store.exists(f"{run_id}/{rundir.MANIFEST}")
        if stored is None and not complete:
            continue  # not a run of ours
        status: dict[str, Any] = json.loads(stored[0]) if stored else {}
        state = "complete" if complete else status.get("state", "unknown")
        runs.append(RunInfo(run_id, state, status.get("step", ""), status.get("trials_done"),
                            status.get("max_trials"), status.get("best_val_accuracy"),
                            status.get("test_accuracy"), status.get("updated", "")))
    return runs


def format_runs(runs: list[RunInfo]) -> str:
    rows = [["run", "state", "step", "trials", "best val_acc", "test_acc", "updated"]]
    for r in runs:
        trials = "-" if r.trials_done is None else f"{r.trials_done}/{r.max_trials or '?'}"
        rows.append([r.run_id, r.state, r.step or "-", trials, _score(r.best_val_accuracy),
                     _score(r.test_accuracy), r.updated or "-"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def pull(store: Store, run_id: str, dest: Path, partial: bool = False) -> int:
    """Downloads a run into `dest`, every file checked against its SHA-256; returns the count.

    A complete run comes from its manifest (written into `dest` last); an
    incomplete one only with `partial`, from its latest snapshot."""
    if dest.exists() and not dest.is_dir():
        raise BadInputError(f"{dest}: expected a directory to pull into, found a file")
    stored = store.read(f"{run_id}/{rundir.MANIFEST}")
    if stored is not None:
        manifest = json.loads(stored[0])
        files = {name: f"{run_id}/{name}" for name in manifest["files"]}
        expected = {name: entry["sha256"] for name, entry in manifest["files"].items()}
    elif partial:
        files, expected = _snapshot_files(store, run_id)
    else:
        state = next((r.state for r in list_runs(store) if r.run_id == run_id), None)
        if state is None:
            raise BadInputError(f"{store.url}/{run_id}: no such run")
        raise BadInputError(f"{store.url}/{run_id}: the run is not complete (state: {state}); "
                            "pass --partial to fetch its latest snapshot")
    for name, key in files.items():
        _fetch_verified(store, key, dest / name, expected[name])
    if stored is not None:
        _write_atomic(dest / rundir.MANIFEST, stored[0])
    return len(files) + (stored is not None)


def _snapshot_files(store: Store, run_id: str) -> tuple[dict[str, str], dict[str, str | None]]:
    """An unfinished run's files: its latest snapshot (bucket runs), else the files as
    they are (a local run works in place; there is nothing to check them against)."""
    for scope in SCOPES:
        index = store.read(f"{run_id}/state/{scope}/index.json")
        if index is not None:
            entries = json.loads(index[0])["files"]
            files = {n: f"{run_id}/state/{scope}/blobs/{e['sha256']}" for n, e in entries.items()}
            return files, {n: e["sha256"] for n, e in entries.items()}
    if isinstance(store, LocalStore):
        names = [o.key[len(run_id) + 1:] for o in store.list(f"{run_id}/")]
        if names:
            return {n: f"{run_id}/{n}" for n in names}, dict.fromkeys(names)
    raise BadInputError(f"{store.url}/{run_id}: nothing to pull; the run has no saved state")


def _fetch_verified(store: Store, key: str, path: Path, sha256: str | None) -> None:
    for _ in range(2):  # a second download, in case the first one raced a rewrite
        store.download(key, path)
        if sha256 is None or sha256_file(path) == sha256:
            return
    path.unlink(missing_ok=True)
    raise StorageError(f"{store.url}/{key}: content does not match the manifest's SHA-256")


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + rundir.TEMP_MARK)
    temp.write_bytes(data)
    os.replace(temp, path)


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
