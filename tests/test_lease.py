"""Two writers never share a run: the lease, over a real compare-and-swap store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from job.errors import RunConflictError
from job.lease import Lease
from job.storage import LocalStore


def _store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def test_a_live_holder_keeps_the_run(tmp_path: Path) -> None:
    first = Lease(_store(tmp_path), "run/state/main/lease.json", seconds=0.9)
    first.acquire()
    try:
        second = Lease(_store(tmp_path), "run/state/main/lease.json", seconds=0.9)
        with pytest.raises(RunConflictError, match="another process .* is writing this run"):
            second.acquire()
    finally:
        first.release()


def test_a_released_lease_is_taken_at_once(tmp_path: Path) -> None:
    first = Lease(_store(tmp_path), "lease.json", seconds=30)
    first.acquire()
    first.release()
    second = Lease(_store(tmp_path), "lease.json", seconds=30)
    started = time.monotonic()
    second.acquire()
    second.release()
    assert time.monotonic() - started < 1


def test_a_silent_holder_is_taken_over_and_then_cannot_write(tmp_path: Path) -> None:
    store = _store(tmp_path)
    killed = Lease(store, "lease.json", seconds=1.0)
    killed.acquire()
    killed._stop.set()  # as if SIGKILLed: no more heartbeats, no release
    killed._thread.join()

    successor = Lease(store, "lease.json", seconds=1.0)
    successor.acquire()
    try:
        assert json.loads(store.read("lease.json")[0])["holder"] == successor.holder
        with pytest.raises(RunConflictError, match="another process took this run over"):
            killed.renew()
    finally:
        successor.release()
