"""Whole runs, timed: the reference script, `job run`, and `job search` watched for memory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import machine, reference
from job.errors import JobError

TRIAL_LINE = re.compile(r"^trial (\d+)(?:/\d+)? (done|failed)")


@dataclass(frozen=True)
class RunOutcome:
    label: str
    command: str
    seconds: float
    test_accuracy: float
    details: dict[str, Any]


def reference_run(data_dir: str, work: Path, trials: int, epochs: int,
                  subset: int | None) -> RunOutcome:
    """The original script, in this process: search, retrain the best, test accuracy."""
    folder = work / "reference"
    folder.mkdir(parents=True, exist_ok=True)
    outcome = reference.main(data_dir, folder, trials, epochs, subset)
    command = (f"python -m bench.reference --max-trials {trials} --epochs {epochs}"
               + (f" --subset {subset}" if subset else ""))
    return RunOutcome("reference", command, outcome["seconds"], outcome["test_accuracy"], outcome)


def job_run(label: str, args: list[str], data_dir: str, work: Path,
            resume: bool = False) -> RunOutcome:
    """`job run ARGS` in this process (TensorFlow is already imported, as for the reference).

    `resume`: continue the run a stopped benchmark left in `work` (its seconds then
    count only the resumed part) instead of starting it over."""
    from job.cli import app

    run_id = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-")
    full = ["run", "--data", data_dir, "--artifacts", str(work / "artifacts"),
            "--run-id", run_id, *([] if resume else ["--overwrite"]), *args]
    started = time.monotonic()
    code = app(full, standalone_mode=False)
    seconds = time.monotonic() - started
    if code:
        raise JobError(f"`job {' '.join(full)}` exited with {code}; see its output above")
    root = work / "artifacts" / run_id
    metrics = json.loads((root / "metrics.json").read_text())
    results = json.loads((root / "results.json").read_text())
    history = json.loads((root / "history.json").read_text())
    details = {"trials": len(results["trials"]), "best": results.get("best_hyperparameters"),
               "final_epochs": len(history["metrics"].get("loss", []))}
    return RunOutcome(label, f"job run {' '.join(args)}".strip(), seconds,
                      float(metrics["test_accuracy"]), details)


def search_memory(data_dir: str, work: Path, trials: int, args: list[str],
                  timeout: float) -> list[dict[str, Any]]:
    """Runs `job search` as its own process; its peak and current RSS after each trial."""
    command = [sys.executable, "-m", "job", "search", "--data", data_dir, "--artifacts",
               str(work / "artifacts"), "--run-id", "memory", "--overwrite",
               "--max-trials", str(trials), *args]
    errors = work / "memory.stderr"
    with open(errors, "w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    watchdog = threading.Timer(timeout, process.kill)  # bounds the read loop below
    watchdog.start()
    samples = []
    try:
        for line in process.stdout:
            print(line, end="", flush=True)
            found = TRIAL_LINE.match(line)
            if found:
                samples.append({"trial": int(found.group(1)), "status": found.group(2),
                                "peak_rss_mib": machine.peak_rss_mib(process.pid),
                                "rss_mib": machine.rss_mib(process.pid),
                                "load": machine.load_average()})
        code = process.wait()
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    if code != 0:
        tail = errors.read_text().strip().splitlines()[-1:] or [f"exit code {code}"]
        raise JobError(f"`{' '.join(command[1:])}` failed: {tail[0]}")
    return samples
