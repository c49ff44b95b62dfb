"""Model quality: `job run --profile full` on several seeds; mean and spread of test accuracy."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Callable

from bench.report import Result, Target
from bench.runs import job_run

COLUMNS = ["seed", "seconds", "resumed", "test_accuracy", "trials", "final_epochs", "best"]
TARGET_ACCURACY = 0.995  # mean over the seeds


def quality(data_dir: str, work: Path, seeds: list[int], args: list[str],
            save: Callable[[Result], None] = lambda result: None, resume: bool = False) -> Result:
    """One `job run` per seed; after each, `save` gets the result so far (a stopped
    run keeps the seeds it finished: each takes about 20 min on 2 cores)."""
    rows: list[dict] = []
    for seed in seeds:
        outcome = job_run(f"full-seed{seed}", [*args, "--seed", str(seed)], data_dir, work, resume)
        print(f"quality: seed {seed}: test accuracy {outcome.test_accuracy:.4f} in "
              f"{outcome.seconds:.0f} s", flush=True)
        rows.append({"seed": seed, "seconds": round(outcome.seconds), "resumed": resume,
                     "test_accuracy": round(outcome.test_accuracy, 4),
                     "trials": outcome.details["trials"],
                     "final_epochs": outcome.details["final_epochs"],
                     "best": _short(outcome.details["best"] or {})})
        save(_result(rows, seeds, args))
    return _result(rows, seeds, args)


def _result(rows: list[dict], seeds: list[int], args: list[str]) -> Result:
    accuracies = [r["test_accuracy"] for r in rows]
    mean = statistics.fmean(accuracies)
    spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    plural = "seed" if len(seeds) == 1 else "seeds"
    done = f"{len(rows)} of {len(seeds)} {plural}" if len(rows) < len(seeds) else f"{len(seeds)} {plural}"
    targets = [Target(f"mean test accuracy over {done}", round(mean, 4),
                      f">= {TARGET_ACCURACY}", mean >= TARGET_ACCURACY,
                      f"{mean:.4f} ± {spread:.4f} (sample std); per seed {accuracies}")]
    settings = {"command": f"job run {' '.join(args)} --seed SEED", "seeds": seeds}
    return Result("quality", "Model quality of the full profile", settings, COLUMNS, rows,
                  targets)


def _short(hyperparameters: dict) -> str:
    """The best trial's point, compactly: conv1/conv2/dense, flags, learning rate."""
    if not hyperparameters:
        return "—"
    hp = hyperparameters
    flags = [name for name in ("double_conv", "augment") if hp.get(name)]
    return (f"{hp.get('conv1_filters')}/{hp.get('conv2_filters')}/{hp.get('dense_units')}"
            f" {'+'.join(flags) or 'plain'} lr {hp.get('learning_rate', 0):.2g}")
