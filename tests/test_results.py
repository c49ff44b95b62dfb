"""The results summary: table, CSV and JSON from trial records."""

from __future__ import annotations

import csv
import io

from job.results import SearchResults, TrialRecord, format_table, to_csv


def _results() -> SearchResults:
    return SearchResults([
        TrialRecord(1, "0", "completed", 0.9812, 3, 20.4, {"dense_units": 128, "learning_rate": 0.001}),
        TrialRecord(2, "1", "failed", None, 1, 5.0, {"dense_units": 64, "learning_rate": 0.5},
                    "loss became nan at epoch 1"),
        TrialRecord(3, "2", "completed", 0.9901, 2, 18.0, {"dense_units": 256, "learning_rate": 0.003}),
    ])


def test_best_is_the_highest_completed_trial() -> None:
    results = _results()
    assert results.best.trial == 3
    assert results.to_json()["best_hyperparameters"] == {"dense_units": 256, "learning_rate": 0.003}
    assert results.to_json()["completed_trials"] == 2


def test_csv_has_one_row_per_trial_with_each_hyperparameter() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(_results()))))
    assert [r["status"] for r in rows] == ["completed", "failed", "completed"]
    assert rows[1]["message"] == "loss became nan at epoch 1"
    assert rows[2]["dense_units"] == "256" and rows[0]["val_accuracy"] == "0.9812"


def test_table_marks_the_best_and_shows_failures() -> None:
    lines = format_table(_results()).splitlines()
    assert lines[0].split() == ["trial", "status", "val_accuracy", "epochs", "seconds",
                                "dense_units", "learning_rate"]
    assert lines[3].lstrip().startswith("*") and "0.9901" in lines[3]
    assert "failed" in lines[2] and " - " in lines[2]


def test_json_round_trip() -> None:
    results = _results()
    assert SearchResults.from_json(results.to_json()) == results
