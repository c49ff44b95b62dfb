"""The benchmarks' plumbing: the smoke mode end to end, tables and JSON shape — never timings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench import report
from tests.conftest import QUIET_TF, ROOT

BENCHMARKS = {"throughput", "knobs", "time_to_accuracy", "memory", "distributed", "quality"}


def _bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **QUIET_TF})


def test_smoke_mode_writes_every_result_and_table(tmp_path: Path, mnist_dir: Path) -> None:
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text(f"# Benchmarks\n\nprose kept\n\n{report.MARK_BEGIN}\nold\n{report.MARK_END}\n")

    done = _bench("--smoke", "--data", str(mnist_dir), "--out", str(tmp_path / "results"),
                  "--markdown", str(markdown))

    assert done.returncode == 0, done.stderr[-3000:]
    results = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "results").glob("*.json")}
    assert set(results) == BENCHMARKS
    for name, result in results.items():
        assert result["smoke"] is True and result["rows"], name
        assert {"cpu", "cores", "tensorflow", "load_before", "load_after"} <= set(result["machine"])
        assert all(set(result["columns"]) <= set(row) for row in result["rows"]), name
        assert f"## {result['title']}" in done.stdout
    assert [r["arm"] for r in results["throughput"]["rows"]] == ["reference", "ours"]
    assert [r["trial"] for r in results["memory"]["rows"]] == [1, 2, 3]
    (distributed,) = results["distributed"]["rows"]  # a chief and one worker process
    assert distributed["trials_completed"] == 1 and distributed["trials_per_worker"] == "worker-1: 1"
    for name in BENCHMARKS - {"knobs", "distributed"}:  # these two document; the others carry a target
        (target,) = results[name]["targets"]
        assert set(target) == {"name", "measured", "bound", "met", "note"}
    text = markdown.read_text()
    assert "prose kept" in text and "\nold\n" not in text
    assert text.count("### ") == len(BENCHMARKS)


def test_bad_data_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    done = _bench("--smoke", "--data", str(tmp_path / "missing"), timeout=60)

    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1


def test_unknown_benchmark_is_refused() -> None:
    done = _bench("--data", "unused", "speed", timeout=60)

    assert done.returncode == 2
    assert "unknown benchmark 'speed'" in done.stderr


def test_markdown_is_regenerated_between_the_markers_only(tmp_path: Path) -> None:
    result = report.Result("memory", "Peak memory", {"trials": 2}, ["trial", "peak_rss_mib"],
                           [{"trial": 1, "peak_rss_mib": 900.5}, {"trial": 2, "peak_rss_mib": 910.0}],
                           [report.Target("growth", 1.01, "<= 1.1", True)], {"cpu": "test cpu"})
    path = tmp_path / "B.md"
    path.write_text(f"intro\n{report.MARK_BEGIN}\nstale\n{report.MARK_END}\noutro\n")

    report.update_markdown(path, [result])

    text = path.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "stale" not in text
    assert "| 2 | 910 |" in text and "**growth**: 1.01 (target <= 1.1): met" in text
