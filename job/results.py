"""The search's results: one record per trial -> trials.csv, results.json and a printed table."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from typing import Any

from job import rundir
from job.rundir import RunDir

OBJECTIVE = "val_accuracy"


@dataclass(frozen=True)
class TrialRecord:
    trial: int  # 1-based number, as printed
    trial_id: str  # KerasTuner's id: the trial_<id> folder under tuner/
    status: str  # completed, failed, invalid, running
    val_accuracy: float | None  # best over the trial's epochs
    epochs: int  # epochs that reported metrics
    seconds: float
    hyperparameters: dict[str, Any]
    message: str = ""  # why a trial failed: the last line of its error


@dataclass(frozen=True)
class SearchResults:
    trials: list[TrialRecord]

    @property
    def completed(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.status == "completed" and t.val_accuracy is not None]

    @property
    def best(self) -> TrialRecord | None:
        return max(self.completed, key=lambda t: t.val_accuracy, default=None)

    def to_json(self) -> dict[str, Any]:
        best = self.best
        return {
            "objective": OBJECTIVE,
            "best_trial": best.trial if best else None,
            "best_val_accuracy": best.val_accuracy if best else None,
            "best_hyperparameters": best.hyperparameters if best else None,
            "completed_trials": len(self.completed),
            "trials": [asdict(t) for t in self.trials],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchResults:
        return cls([TrialRecord(**t) for t in data["trials"]])


def from_oracle(oracle: Any, seconds: dict[str, float]) -> SearchResults:
    """Records for every trial the oracle knows, in trial-id order."""
    records = []
    for trial_id in sorted(oracle.trials, key=int):
        trial = oracle.trials[trial_id]
        metrics = trial.metrics
        epochs = metrics.get_last_value("epochs") if metrics.exists("epochs") else None
        best = metrics.get_best_value(OBJECTIVE) if metrics.exists(OBJECTIVE) else None
        values = {k: round(v, 10) if isinstance(v, float) else v  # 0.30000000000000004 -> 0.3
                  for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}
        message = (trial.message or "").strip().splitlines()
        records.append(TrialRecord(
            trial=int(trial_id) + 1, trial_id=trial_id, status=str(trial.status).lower(),
            val_accuracy=None if best is None else round(float(best), 6), epochs=int(epochs or 0),
            seconds=round(seconds.get(trial_id, 0.0), 1), hyperparameters=values,
            message=message[-1] if message else ""))
    return SearchResults(records)


def write(run: RunDir, results: SearchResults) -> None:
    run.write_text(rundir.TRIALS_CSV, to_csv(results))
    run.write_json(rundir.RESULTS, results.to_json())


def read(run: RunDir) -> SearchResults:
    return SearchResults.from_json(run.read_json(rundir.RESULTS))


def to_csv(results: SearchResults) -> str:
    names = sorted({k for t in results.trials for k in t.hyperparameters})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["trial", "trial_id", "status", OBJECTIVE, "epochs", "seconds", *names, "message"])
    for t in results.trials:
        writer.writerow([t.trial, t.trial_id, t.status, t.val_accuracy, t.epochs, t.seconds,
                         *(t.hyperparameters.get(n, "") for n in names), t.message])
    return out.getvalue()


def format_table(results: SearchResults) -> str:
    """A fixed-width table of every trial, the best marked with '*'."""
    names = sorted({k for t in results.trials for k in t.hyperparameters})
    header = ["", "trial", "status", OBJECTIVE, "epochs", "seconds", *names]
    best = results.best
    rows = [header]
    for t in results.trials:
        accuracy = "-" if t.val_accuracy is None else f"{t.val_accuracy:.4f}"
        rows.append(["*" if t is best else "", str(t.trial), t.status, accuracy, str(t.epochs),
                     f"{t.seconds:.0f}", *(_short(t.hyperparameters.get(n, "")) for n in names)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in rows)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
