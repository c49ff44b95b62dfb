"""Keeping a local run directory and its copy in an artifact store in step.

Bucket layout under `<artifacts>/<run-id>/`:
  status.json                  state (running, preempted, failed, complete), trials, best score
  state/<scope>/index.json     the latest consistent snapshot: every file's SHA-256
  state/<scope>/blobs/<sha>    file contents, by hash: uploaded once, never rewritten
  state/<scope>/lease.json     who may write this run now
  <the artifacts>, manifest.json last   at the end, as plain files

A snapshot's blobs are uploaded before its index, and the index is one object,
replaced in one write: a kill at any moment leaves the previous snapshot whole.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from job import rundir
from job.errors import RunConflictError, StorageError
from job.lease import Lease
from job.manifest import sha256_file
from job.rundir import STATUS, RunDir
from job.storage import Store, md5_file



HASH_CACHE_MIN_BYTES = 1 << 20


class RunSync:
    """Syncs one run directory with `store/<run_id>/`; `scope` names this writer's state."""

    def __init__(self, store: Store, run_id: str, run: RunDir, scope: str = "main",
                 lease_seconds: float = 60.0):
        self.store, self.run, self.scope = store, run, scope
        self.base = f"{run_id}/"
        self.state = f"{self.base}state/{scope}/"
        self.lease = Lease(store, f"{self.state}lease.json", lease_seconds)
        self._hashes: dict[str, tuple[tuple[int, ...], str]] = {}  # path -> (stat key, sha256)
        self._uploaded: set[str] | None = None  # blob hashes known to be in the store
        self._index: dict[str, dict[str, Any]] = {}

    def __deepcopy__(self, memo: dict) -> RunSync:
        return self  # a shared service: KerasTuner deep-copies the callbacks that hold it

    @property
    def url(self) -> str:
        return f"{self.store.url}/{self.base}"

    def is_complete(self) -> bool:
        return self.store.exists(self.base + rundir.MANIFEST)

    def open(self) -> bool:
        """Takes the lease, then makes the local run directory the stored snapshot.

        Returns True if a snapshot was restored (the run is resumed)."""
        self.lease.acquire()
        stored = self.store.read(self.state + "index.json")
        if stored is None:
            return False
        self._index = json.loads(stored[0])["files"]
        self._restore(self._index)
        return True

    def wipe(self) -> None:
        """Deletes everything stored for this run except our lease (`--overwrite`)."""
        keep = self.lease.key
        self.store.delete([o.key for o in self.store.list(self.base) if o.key != keep])
        self._uploaded, self._index = set(), {}

    def snapshot(self) -> None:
        """Uploads what changed, then the index; drops blobs no index needs any more."""
        files = self._local_index()
        uploaded = self._known_blobs()
        for name, entry in files.items():
            if entry["sha256"] not in uploaded:
                self.store.upload(self.run.path(name), self._blob(entry["sha256"]))
                uploaded.add(entry["sha256"])
        self.lease.renew()
        index = {"files": files, "written": time.time()}
        self.store.write(self.state + "index.json", json.dumps(index).encode())
        needed = {e["sha256"] for e in files.values()}
        stale = {e["sha256"] for e in self._index.values()} - needed
        self.store.delete([self._blob(sha) for sha in sorted(stale)])
        uploaded -= stale
        self._index = files

    def push(self, name: str) -> None:
        """Uploads one run file as a plain object right away (e.g. status.json)."""
        self.store.upload(self.run.path(name), self.base + name)

    def publish(self, before_each: Callable[[], None] = lambda: None) -> int:
        """Uploads the finished artifacts as plain files (only those that changed),
        manifest.json last, then drops the resumable state. Returns files uploaded.

        `before_each` runs before every upload (a stop check: the state stays
        resumable until the manifest is up)."""
        if not self.run.exists(rundir.MANIFEST):
            raise RunConflictError(f"{self.run.root}: no manifest.json; the run is not finished")
        remote = {o.key[len(self.base):]: o for o in self.store.list(self.base)}
        names = [n for n in self.run.files() if n not in (rundir.MANIFEST, STATUS)]
        changed = [n for n in names if not _same(self.run.path(n), remote.get(n))]
        for name in changed:
            before_each()
            self.store.upload(self.run.path(name), self.base + name)
        before_each()
        self.store.upload(self.run.path(rundir.MANIFEST), self.base + rundir.MANIFEST)
        self.drop_state()
        return len(changed) + 1

    def drop_state(self) -> None:
        """Deletes the resumable snapshot and lease (a complete run needs neither)."""
        self.store.delete([o.key for o in self.store.list(self.state) if o.key != self.lease.key])
        self.lease.release()

    def close(self) -> None:
        self.lease.release()

    def _blob(self, sha256: str) -> str:
        return f"{self.state}blobs/{sha256}"

    def _known_blobs(self) -> set[str]:
        if self._uploaded is None:
            prefix = f"{self.state}blobs/"
            self._uploaded = {o.key[len(prefix):] for o in self.store.list(prefix)}
        return self._uploaded

    def _local_index(self) -> dict[str, dict[str, Any]]:
        """Every file's SHA-256. Small files are always hashed: a file rewritten with the
        same size within one tick of the file system's clock keeps its mtime, and
        KerasTuner rewrites oracle.json that fast. Large ones are cached by size, times
        and inode (they are written whole, under new names)."""
        files = {}
        for name in self.run.files():
            if name == STATUS:
                continue
            stat = self.run.path(name).stat()
            key = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
            cached = self._hashes.get(name)
            if cached is None or cached[0] != key or stat.st_size < HASH_CACHE_MIN_BYTES:
                cached = (key, sha256_file(self.run.path(name)))
                self._hashes[name] = cached
            files[name] = {"sha256": cached[1], "size": stat.st_size}
        return files

    def _restore(self, index: dict[str, dict[str, Any]]) -> None:
        """Makes the local run directory hold exactly the snapshot's files."""
        local = self._local_index()
        for name in set(local) - set(index):
            self.run.clear_entry(name)
        for name, entry in index.items():
            if local.get(name, {}).get("sha256") != entry["sha256"]:
                self.store.download(self._blob(entry["sha256"]), self.run.path(name))
                if sha256_file(self.run.path(name)) != entry["sha256"]:
                    raise StorageError(f"{self.url}{name}: the stored copy does not match its "
                                       "snapshot's SHA-256; rerun, or --overwrite to start over")
        self._uploaded = None


def _same(path: Path, stored: Any) -> bool:
    if stored is None or stored.size != path.stat().st_size:
        return False
    return stored.md5 is not None and stored.md5 == md5_file(path)
