"""Time to accuracy: how long `job run` takes to reach the reference's test accuracy.

The reference runs its own way (20-epoch trials, EarlyStopping, then a
retrain) on a budget that fits the machine: fewer trials than its 10. Each
`job run` arm is one complete run; it reaches the reference's accuracy if its
test accuracy is at least as high, and its time is then the whole run's (an
upper bound: the job does not stop early when it gets there).
"""

from __future__ import annotations

from pathlib import Path

from bench.report import Result, Target
from bench.runs import RunOutcome, job_run, reference_run

COLUMNS = ["arm", "command", "seconds", "test_accuracy", "reached", "time_ratio"]
TARGET_RATIO = 0.2  # the default run must take at most 1/5 of the reference's time


def time_to_accuracy(data_dir: str, work: Path, reference_trials: int, reference_epochs: int,
                     arms: dict[str, list[str]], subset: int | None) -> Result:
    """`arms`: label -> `job run` arguments; the first arm is the one with the target."""
    baseline = reference_run(data_dir, work, reference_trials, reference_epochs, subset)
    print(f"time to accuracy: reference {baseline.seconds:.0f} s, "
          f"test accuracy {baseline.test_accuracy:.4f}", flush=True)
    outcomes = [baseline]
    for label, args in arms.items():
        outcome = job_run(label, args, data_dir, work)
        print(f"time to accuracy: {label} {outcome.seconds:.0f} s, test accuracy "
              f"{outcome.test_accuracy:.4f}", flush=True)
        outcomes.append(outcome)
    rows = [_row(o, baseline) for o in outcomes]
    first = rows[1]
    reached = bool(first["reached"])
    targets = [Target(f"{first['arm']}: time to the reference's test accuracy / reference time",
                      first["time_ratio"] if reached else None, f"<= {TARGET_RATIO}",
                      reached and first["time_ratio"] <= TARGET_RATIO,
                      f"{first['seconds']:.0f} s vs {baseline.seconds:.0f} s; test accuracy "
                      f"{first['test_accuracy']:.4f} vs {baseline.test_accuracy:.4f}"
                      + ("" if reached else " (not reached)"))]
    settings = {"reference": {"max_trials": reference_trials, "epochs": reference_epochs,
                              "batch_size": 32, "patience": 3, "subset": subset,
                              "best_hyperparameters": baseline.details["hyperparameters"],
                              "final_epochs": baseline.details["final_epochs"]},
                "arms": {label: " ".join(args) or "(defaults)" for label, args in arms.items()},
                "details": {o.label: o.details for o in outcomes[1:]}}
    return Result("time_to_accuracy", "Time to the reference's test accuracy", settings,
                  COLUMNS, rows, targets)


def _row(outcome: RunOutcome, baseline: RunOutcome) -> dict:
    return {"arm": outcome.label, "command": outcome.command, "seconds": round(outcome.seconds),
            "test_accuracy": round(outcome.test_accuracy, 4),
            "reached": outcome.test_accuracy >= baseline.test_accuracy,
            "time_ratio": round(outcome.seconds / baseline.seconds, 3)}
