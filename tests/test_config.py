"""The one configuration object: validated once, saved as config.json, compared on resume."""

from __future__ import annotations

import pytest

from job.config import JobConfig, Profile, TunerKind
from job.errors import BadInputError


def test_strings_become_enums_and_round_trip_through_json() -> None:
    config = JobConfig(run_id="r", tuner="hyperband", profile="full")
    assert config.tuner is TunerKind.HYPERBAND and config.profile is Profile.FULL
    assert JobConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize("options, message", [
    ({"run_id": "has space"}, "--run-id 'has space': use letters"),
    ({"max_trials": 0}, "--max-trials must be at least 1, got 0"),
    ({"grace_seconds": -1}, "--grace-seconds must be above 0, got -1"),
    ({"search_subset": 5}, "--search-subset must be at least 100 images (0: all), got 5"),
    ({"validation_split": 0.9}, "--validation-split must be between 0.05 and 0.5"),
    ({"artifacts": "s3://bucket/x"}, "only local paths and gs:// are supported"),
])
def test_bad_values_name_the_option(options: dict, message: str) -> None:
    with pytest.raises(BadInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        JobConfig(**{"run_id": "r", **options})


def test_resuming_lists_the_search_options_that_changed() -> None:
    first = JobConfig(run_id="r", batch_size=128, search_subset=12000)
    again = JobConfig(run_id="r", batch_size=64, search_subset=None, max_trials=20)
    assert again.search_differences(first) == ["--search-subset: 12000 -> all",
                                               "--batch-size: 128 -> 64"]


def test_overrides_that_are_none_keep_the_stored_value() -> None:
    stored = JobConfig(run_id="r", final_epochs=7).to_json()
    assert JobConfig.from_json(stored, final_epochs=None).final_epochs == 7
    assert JobConfig.from_json(stored, final_epochs=2).final_epochs == 2
