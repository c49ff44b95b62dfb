"""A writer's lease on a run: two processes must never write one run at once.

The lease is one object. Taking it over and renewing it are compare-and-swap
writes on its generation, so of two contenders exactly one wins. A holder
renews it from a background thread; a lease whose generation has not changed
for `seconds` (by the reader's own clock, so clock skew does not matter) is
abandoned and may be taken over — that is how a pod killed with SIGKILL hands
its run to the next one.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid

from job.errors import RunConflictError
from job.storage import PreconditionFailed, Store


class Lease:
    def __init__(self, store: Store, key: str, seconds: float):
        self.store, self.key, self.seconds = store, key, seconds
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._generation: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._generation is not None

    def acquire(self) -> None:
        """Takes the lease, waiting (at most `seconds` plus a poll) for an abandoned one."""
        observed = self.store.read(self.key)
        first_seen = time.monotonic()
        if observed is not None and not _released(observed[0]):
            print(f"{_holder(observed[0])} holds this run: waiting up to {self.seconds:.0f} s "
                  "to see whether it is still alive", file=sys.stderr, flush=True)
        while observed is not None and not _released(observed[0]):
            time.sleep(min(5.0, self.seconds / 4))
            current = self.store.read(self.key)
            if current is None or _released(current[0]):
                observed = current
                break
            if current[1] != observed[1]:
                raise RunConflictError(
                    f"{self.store.url}/{self.key}: another process ({_holder(current[0])}) is "
                    "writing this run; wait for it to finish, or use another --run-id")
            if time.monotonic() - first_seen > self.seconds:
                print(f"taking over the run from {_holder(current[0])}, silent for "
                      f"{self.seconds:.0f} s", file=sys.stderr, flush=True)
                break
            observed = current
        self._write(0 if observed is None else observed[1])
        self._start_heartbeat()

    def renew(self) -> None:
        """Renews the lease; raises RunConflictError if another process took it over."""
        if self._generation is not None:
            self._write(self._generation)

    def release(self, discard: bool = False) -> None:
        """Marks the lease released; `discard` deletes it instead (nothing was written)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            if self._generation is None:
                return
            try:
                self.store.write(self.key, json.dumps({"holder": self.holder, "released": True}).encode(),
                                 if_generation_match=self._generation)
                if discard:
                    self.store.delete([self.key])
            except PreconditionFailed:
                pass  # someone else holds it now: leave theirs alone
            self._generation = None

    def _write(self, expected_generation: int) -> None:
        body = json.dumps({"holder": self.holder, "renewed": time.time(),
                           "seconds": self.seconds}).encode()
        with self._lock:
            try:
                self._generation = self.store.write(self.key, body,
                                                    if_generation_match=expected_generation)
            except PreconditionFailed:
                self._generation = None
                raise RunConflictError(f"{self.store.url}/{self.key}: another process took this "
                                       "run over; stopping so as not to overwrite its work") from None

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, name="lease", daemon=True)
        self._thread.start()

    def _heartbeat(self) -> None:
        """Renews every third of the lease until released; bounded by `_stop`."""
        while not self._stop.wait(self.seconds / 3):
            try:
                self.renew()
            except Exception as error:  # noqa: BLE001 - the next sync reports a lost lease
                print(f"lease renewal failed: {error}", file=sys.stderr, flush=True)
                return


def _released(body: bytes) -> bool:
    return bool(json.loads(body).get("released"))


def _holder(body: bytes) -> str:
    return str(json.loads(body).get("holder", "unknown"))
