"""Snapshots of a run directory in a store: uploaded once, consistent after any kill."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from job.rundir import RunDir
from job.storage import LocalStore
from job.sync import RunSync


def _run(tmp_path: Path, name: str) -> RunDir:
    run = RunDir(tmp_path / name)
    run.root.mkdir(parents=True)
    return run


class _DiesAfter(LocalStore):
    """A real store whose process 'dies' (raises) after a number of writes."""

    def __init__(self, root: Path, writes: int):
        super().__init__(root)
        self.writes_left = writes

    def upload(self, path: Path, key: str) -> None:
        self._tick()
        super().upload(path, key)

    def write(self, key: str, data: bytes, if_generation_match: int | None = None) -> int:
        if not key.endswith("lease.json"):
            self._tick()
        return super().write(key, data, if_generation_match)

    def _tick(self) -> None:
        if self.writes_left == 0:
            raise KeyboardInterrupt("killed")
        self.writes_left -= 1


def test_a_snapshot_restores_into_another_directory(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "bucket")
    run = _run(tmp_path, "pod-1")
    run.write_text("tuner/oracle.json", "{}")
    run.write_text("trial_0/backup/latest.weights.h5", "w0")
    writer = RunSync(store, "exp", run)
    writer.open()
    writer.snapshot()
    writer.close()

    fresh = _run(tmp_path, "pod-2")
    fresh.write_text("leftover.txt", "from an older attempt")
    reader = RunSync(store, "exp", fresh)
    assert reader.open() is True
    reader.close()

    assert fresh.files() == ["trial_0/backup/latest.weights.h5", "tuner/oracle.json"]
    assert fresh.path("trial_0/backup/latest.weights.h5").read_text() == "w0"


def test_unchanged_files_are_uploaded_once_and_old_blobs_dropped(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "bucket")
    run = _run(tmp_path, "pod")
    run.write_text("big.bin", "x" * 1000)
    run.write_text("epoch.json", "1")
    sync = RunSync(store, "exp", run)
    sync.open()
    sync.snapshot()
    run.write_text("epoch.json", "2")
    sync.snapshot()
    sync.close()

    blobs = [o.key for o in store.list("exp/state/main/blobs/")]
    assert len(blobs) == 2  # big.bin once, and only the newest epoch.json


def test_a_kill_during_a_snapshot_leaves_the_previous_one(tmp_path: Path) -> None:
    run = _run(tmp_path, "pod")
    run.write_text("a.txt", "version 1")
    RunSync(LocalStore(tmp_path / "bucket"), "exp", run).snapshot()
    run.write_text("a.txt", "version 2")
    run.write_text("b.txt", "new file")

    dying = RunSync(_DiesAfter(tmp_path / "bucket", writes=1), "exp", run)
    with pytest.raises(KeyboardInterrupt):
        dying.snapshot()  # one blob uploaded, then killed before the index

    restored = _run(tmp_path, "next-pod")
    RunSync(LocalStore(tmp_path / "bucket"), "exp", restored).open()
    assert restored.files() == ["a.txt"] and restored.path("a.txt").read_text() == "version 1"


def test_publish_uploads_changed_files_and_the_manifest_last(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "bucket")
    run = _run(tmp_path, "pod")
    run.write_text("metrics.json", "{}")
    run.write_json("manifest.json", {"files": {"metrics.json": {}}})
    sync = RunSync(store, "exp", run)
    sync.open()
    sync.snapshot()

    assert sync.publish() == 2
    assert sync.publish() == 1  # only the manifest again
    assert {o.key for o in store.list("exp/")} >= {"exp/metrics.json", "exp/manifest.json"}
    assert not store.list("exp/state/main/blobs/")
    assert json.loads(store.read("exp/state/main/lease.json")[0])["released"] is True
