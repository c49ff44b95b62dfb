"""`job` as a child process that a test watches line by line and signals at chosen moments."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class JobProcess:
    """Runs `python -m job ARGS`; stdout and stderr lines are collected by a reader thread."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "job", *args], cwd=ROOT, text=True, bufsize=1,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line)
        self._queue.put(None)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 300) -> str:
        """Blocks until a line matches `pattern` (regex); fails on exit or timeout."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"job exited before {pattern!r}:\n{self.output[-3000:]}")
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r} after {timeout} s:\n{self.output[-3000:]}")

    def send(self, sig: signal.Signals) -> float:
        """Sends `sig`; returns the moment it was sent (time.monotonic)."""
        self.process.send_signal(sig)
        return time.monotonic()

    def wait(self, timeout: float = 600) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
