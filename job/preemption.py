"""SIGTERM handling: stop at the next safe point, and never outlive the grace period."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

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

    Python runs signal handlers only when the main thread returns to bytecode,
    which a long TensorFlow call can delay by seconds. So the deadline is kept
    by a thread woken through `signal.set_wakeup_fd`, which the C-level handler
    writes at once. The hard exit is safe: the state synced before is always
    consistent; it only guards against a step that does not stop in time.
    """
    reason = f"received SIGTERM; stopping within {grace_seconds:g} s"

    def on_sigterm(signum: int, frame: object) -> None:
        if not stop.is_set():
            stop.set(reason)
            print(f"\n{reason}", file=sys.stderr, flush=True)

    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, on_sigterm)
    threading.Thread(target=_keep_deadline, args=(read_end, grace_seconds), name="sigterm-deadline",
                     daemon=True).start()


def _keep_deadline(read_end: int, grace_seconds: float) -> None:
    """Waits for a SIGTERM byte on the wakeup pipe, then for the grace period, then exits."""
    while signal.SIGTERM not in os.read(read_end, 64):
        continue  # another signal with a Python handler (e.g. SIGINT)
    time.sleep(max(0.5, grace_seconds - 1.0))  # 1 s margin for the process to end
    print("grace period over: exiting now; the last synced state is kept", file=sys.stderr,
          flush=True)
    os._exit(ExitCode.PREEMPTED)
