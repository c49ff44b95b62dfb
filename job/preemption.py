"""SIGTERM handling: stop at the next safe point, and never outlive the grace period."""

from __future__ import annotations

import os
import signal
import sys
import threading

from job.errors import ExitCode, Preempted


class StopSignal:
    """A process-wide 'please stop' flag that callbacks poll at batch boundaries.

    Shared, never copied: KerasTuner deep-copies callbacks for every trial, and
    every copy must still see the one flag that the signal handler sets.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def __deepcopy__(self, memo: dict) -> StopSignal:
        return self

    def set(self, reason: str) -> None:
        self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def raise_if_set(self) -> None:
        if self._event.is_set():
            raise Preempted(self.reason)


def install_sigterm_handler(stop: StopSignal, grace_seconds: float) -> None:
    """On SIGTERM: set `stop`, and hard-exit with PREEMPTED if still alive after the grace.

    The hard exit is safe because the state synced before is always consistent;
    it only guards against a step that does not reach a batch boundary in time.
    """

    def on_sigterm(signum: int, frame: object) -> None:
        if stop.is_set():
            return
        stop.set(f"received SIGTERM; stopping within {grace_seconds:g} s")
        print(f"\n{stop.reason}", file=sys.stderr, flush=True)
        deadline = threading.Timer(max(0.5, grace_seconds - 1.0), _hard_exit)
        deadline.daemon = True
        deadline.start()

    signal.signal(signal.SIGTERM, on_sigterm)


def _hard_exit() -> None:
    print("grace period over: exiting now; the last synced state is kept", file=sys.stderr,
          flush=True)
    os._exit(ExitCode.PREEMPTED)
