"""Memory across a search: peak RSS of `job search` after each trial must stay flat.

Peak RSS (VmHWM) only grows, so a leak per trial (models, graphs or dataset
copies kept alive) shows as a rising peak; a flat one means each trial's
memory is given back before the next reuses it.
"""

from __future__ import annotations

from pathlib import Path

from bench.report import Result, Target
from bench.runs import search_memory
from job.errors import JobError

COLUMNS = ["trial", "status", "peak_rss_mib", "rss_mib", "load"]
TARGET_GROWTH = 1.1  # peak after the last trial <= 1.1 x peak after trial 2


def memory(data_dir: str, work: Path, trials: int, args: list[str], timeout: float) -> Result:
    samples = search_memory(data_dir, work, trials, args, timeout)
    peaks = {s["trial"]: s["peak_rss_mib"] for s in samples}
    if len(peaks) < trials or 2 not in peaks:
        raise JobError(f"job search reported {len(peaks)} of {trials} trials; "
                           "see its output above")
    last = max(peaks)
    growth = peaks[last] / peaks[2]
    targets = [Target(f"peak RSS after trial {last} / after trial 2", round(growth, 3),
                      f"<= {TARGET_GROWTH}", growth <= TARGET_GROWTH,
                      f"{peaks[2]:.0f} MiB -> {peaks[last]:.0f} MiB")]
    settings = {"command": f"job search --max-trials {trials} {' '.join(args)}".strip()}
    return Result("memory", "Peak memory across the trials of one search", settings,
                  COLUMNS, samples, targets)
