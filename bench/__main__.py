"""`python -m bench`: run benchmarks, print their tables, write bench/results/*.json.

    python -m bench --data DIR                    # throughput, knobs, time_to_accuracy, memory, distributed
    python -m bench --data DIR quality            # the full profile on 3 seeds (about 1 h)
    python -m bench --data DIR --smoke            # all six on a tiny subset (CI, ~1 min)

Full runs also regenerate the tables in BENCHMARKS.md from every JSON in
the results folder. Smoke runs write to a temporary folder unless --out is
given, and never touch BENCHMARKS.md: their numbers mean nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.machine import ROOT

DEFAULT_SET = ("throughput", "knobs", "time_to_accuracy", "memory", "distributed")
ALL = (*DEFAULT_SET, "quality")
FULL_PROFILE_ARGS = ["--profile", "full", "--max-trials", "6", "--epochs", "4",
                     "--final-epochs", "20", "--lr-schedule", "cosine"]
DISTRIBUTED_ARGS = ["--max-trials", "4", "--epochs", "2", "--final-epochs", "1"]
TINY = ["--subset", "600", "--max-trials", "1", "--epochs", "1", "--final-epochs", "1"]

# What each benchmark runs: the real budget, and the smoke one that only checks the plumbing.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "throughput": {"epochs": 3, "rounds": 3, "subset": None},
        "knobs": {"epochs": 1, "rounds": 2, "subset": 15000},
        "time_to_accuracy": {"reference_trials": 2, "reference_epochs": 20, "subset": None,
                             "arms": {"job run (defaults)": [],
                                      "job run --tuner hyperband": ["--tuner", "hyperband"],
                                      "job run --lr-schedule cosine --final-epochs 8":
                                          ["--lr-schedule", "cosine", "--final-epochs", "8"]}},
        "memory": {"trials": 10, "args": ["--epochs", "1"], "timeout": 3600},
        "distributed": {"workers": [1, 2], "args": DISTRIBUTED_ARGS, "timeout": 1800},
        "quality": {"seeds": [1, 2, 3], "args": FULL_PROFILE_ARGS},
    },
    "smoke": {
        "throughput": {"epochs": 1, "rounds": 1, "subset": 600},
        "knobs": {"epochs": 1, "rounds": 1, "subset": 600, "only": ["defaults", "batch 128"]},
        "time_to_accuracy": {"reference_trials": 1, "reference_epochs": 1, "subset": 600,
                             "arms": {"job run (defaults)": TINY}},
        "memory": {"trials": 3, "args": ["--subset", "300", "--epochs", "1"], "timeout": 300},
        "distributed": {"workers": [1], "args": TINY, "timeout": 300},
        "quality": {"seeds": [1], "args": ["--profile", "full", *TINY]},
    },
}


def main(argv: list[str]) -> int:
    args = _arguments(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from job.errors import JobError

    try:
        _check(args)
        return _run(args)
    except JobError as error:
        print(f"error: {error}", file=sys.stderr)
        return int(error.exit_code)


def _run(args: argparse.Namespace) -> int:
    from bench import machine, report
    from job.data import load

    data = load(args.data)  # verified once; a bad --data stops here with one line
    preset = PRESETS["smoke" if args.smoke else "full"]
    out = args.out or (Path(tempfile.mkdtemp(prefix="bench-smoke-")) if args.smoke
                       else ROOT / "bench" / "results")
    facts = machine.facts()
    with tempfile.TemporaryDirectory(prefix="bench-work-") as temporary:
        work = args.work or temporary
        for name in args.benchmarks or (ALL if args.smoke else DEFAULT_SET):
            before, started = machine.load_average(), time.monotonic()
            options = {**preset[name], **({"seeds": args.seeds} if args.seeds and name == "quality" else {})}

            def stamp(result: Any) -> Any:
                result.machine = {**facts, "load_before": before, "load_after": machine.load_average(),
                                  "benchmark_seconds": round(time.monotonic() - started)}
                result.smoke = args.smoke
                return result

            if name == "quality":  # hours long: the seeds done so far are kept as they finish
                options["save"] = lambda partial: report.write(stamp(partial), out)
                options["resume"] = args.resume
            result = stamp(_benchmark(name, args.data, data, Path(work) / name, options))
            path = report.write(result, out)
            print(f"\n## {result.title}\n\n{report.table(result)}\n\n(written to {path})\n",
                  flush=True)
    markdown = args.markdown or (None if args.smoke else ROOT / "BENCHMARKS.md")
    if markdown:
        report.update_markdown(markdown, report.read_all(out))
        print(f"tables updated in {markdown}")
    return 0


def _benchmark(name: str, data_dir: str, data: Any, work: Path, options: dict[str, Any]) -> Any:
    from bench import distributed, memory, quality, throughput, time_to_accuracy

    work.mkdir(parents=True, exist_ok=True)
    if name == "throughput":
        return throughput.throughput(data_dir, data, **options)
    if name == "knobs":
        return throughput.knobs(data, **options)
    if name == "time_to_accuracy":
        return time_to_accuracy.time_to_accuracy(data_dir, work, **options)
    if name == "memory":
        return memory.memory(data_dir, work, **options)
    if name == "distributed":
        return distributed.distributed(data_dir, work, **options)
    return quality.quality(data_dir, work, **options)


def _check(args: argparse.Namespace) -> None:
    from bench import report
    from job.errors import BadInputError

    unknown = [name for name in args.benchmarks if name not in ALL]
    if unknown:
        raise BadInputError(f"unknown benchmark {unknown[0]!r}: expected one of {', '.join(ALL)}")
    if args.markdown and not report.has_markers(args.markdown):
        raise BadInputError(f"--markdown {args.markdown}: expected a file with the lines "
                            f"{report.MARK_BEGIN!r} and {report.MARK_END!r}; add them")


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("benchmarks", nargs="*", metavar="BENCHMARK",
                        help=f"any of {', '.join(ALL)} (default: {' '.join(DEFAULT_SET)})")
    parser.add_argument("--data", default=os.environ.get("JOB_DATA"),
                        help="the MNIST IDX directory (default: $JOB_DATA)")
    parser.add_argument("--smoke", action="store_true", help="tiny budgets: checks the plumbing")
    parser.add_argument("--resume", action="store_true", help="quality: continue the runs a "
                        "stopped benchmark left in --work instead of starting them over")
    parser.add_argument("--seeds", type=_seeds, help="quality: these seeds, e.g. 1,2,3 (the default)")
    parser.add_argument("--out", type=Path, help="results folder (default: bench/results; "
                        "smoke: a new temporary folder)")
    parser.add_argument("--work", type=Path, help="keep the runs' artifacts here "
                        "(default: a temporary folder, deleted at the end)")
    parser.add_argument("--markdown", type=Path, help="regenerate the tables in this file "
                        "(default: BENCHMARKS.md, except for smoke runs)")
    args = parser.parse_args(argv)
    if not args.data:
        parser.error("--data DIR is required (or set JOB_DATA)")
    return args


def _seeds(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 1,2,3, got {text!r}") from None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
