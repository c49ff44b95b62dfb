"""The distributed search on one machine: a chief and N workers, as the distributed overlay
runs its pods (the completion index in the environment), for several N on the same budget.

Each process gets its own work directory and they share a local artifact store (the bucket's
role). On a machine without GPUs the workers share its cores, so more workers only show the
coordination's cost here; on a cluster each worker has its own GPU.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.machine import ROOT
from bench.report import Result
from job.errors import JobError

COLUMNS = ["workers", "seconds", "search_seconds", "trials_completed", "trials_per_worker",
           "test_accuracy"]
HANDED = re.compile(r"^trial (\d+) runs on (worker-\d+)")
SEARCH_END = re.compile(r"^train: best trial")


def distributed(data_dir: str, work: Path, workers: list[int], args: list[str],
                timeout: float) -> Result:
    rows = [_one_search(data_dir, work / f"workers-{n}", n, args, timeout) for n in workers]
    settings = {"command": f"job run {' '.join(args)} (index 0: chief; 1..N: workers)",
                "workers": workers, "cpu_cores": os.cpu_count()}
    return Result("distributed", "The distributed search: a chief and N workers on this machine",
                  settings, COLUMNS, rows)


def _one_search(data_dir: str, work: Path, workers: int, args: list[str],
                timeout: float) -> dict[str, Any]:
    """Chief and workers started at once, like the Indexed Job's pods; timed to the chief's end."""
    env = {"JOB_DATA": data_dir, "JOB_ARTIFACTS": str(work / "artifacts"), "JOB_RUN_ID": "dist",
           "JOB_WORKERS": str(workers), "JOB_ORACLE_HOST": "127.0.0.1",
           "JOB_ORACLE_BIND": "127.0.0.1", "JOB_ORACLE_PORT": str(_free_port())}
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    pods = [_start(index, work, env, args) for index in range(workers + 1)]
    watchdog = threading.Timer(timeout, lambda: [p.kill() for p in pods])  # bounds the reads
    watchdog.start()
    try:
        chief_lines, search_seconds = [], None
        for line in pods[0].stdout:
            print(line, end="", flush=True)
            chief_lines.append(line)
            if search_seconds is None and SEARCH_END.match(line):
                search_seconds = time.monotonic() - started
        code = pods[0].wait()
        seconds = time.monotonic() - started
        for pod in pods[1:]:
            pod.wait(timeout=120)
    finally:
        watchdog.cancel()
        for pod in pods:
            if pod.poll() is None:
                pod.kill()
                pod.wait()
    if code != 0:
        raise JobError(f"the chief with {workers} workers exited with {code}: "
                       f"{''.join(chief_lines[-5:]).strip()}")
    root = work / "artifacts" / "dist"
    results = json.loads((root / "results.json").read_text())
    handed = [found.group(2) for found in map(HANDED.match, chief_lines) if found]
    return {"workers": workers, "seconds": round(seconds, 1),
            "search_seconds": round(search_seconds or seconds, 1),
            "trials_completed": results["completed_trials"],
            "trials_per_worker": " ".join(f"{w}: {handed.count(w)}" for w in sorted(set(handed))),
            "test_accuracy": json.loads((root / "metrics.json").read_text())["test_accuracy"]}


def _start(index: int, work: Path, env: dict[str, str], args: list[str]) -> subprocess.Popen:
    """One pod: `job run ARGS` with its completion index; workers' output goes to a file."""
    log = open(work / f"pod-{index}.log", "w") if index else None
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "job", "run", *args], cwd=ROOT, text=True,
        stdout=subprocess.PIPE if index == 0 else log, stderr=subprocess.STDOUT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env,
             "JOB_COMPLETION_INDEX": str(index), "JOB_WORK_DIR": str(work / f"pod-{index}")})
    if log:
        log.close()  # the child has its own descriptor
    return process


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
