"""Stratified, seeded splits: disjoint, proportional, reproducible."""

from __future__ import annotations

import numpy as np

from job.config import JobConfig
from job.inputs import make_splits
from job.split import stratified_sample, train_validation_split


def test_validation_is_a_stratified_fifth_disjoint_from_training(mnist_arrays: dict) -> None:
    labels = mnist_arrays["y_train"]

    train, validation = train_validation_split(labels, 0.2, seed=7)

    assert len(validation) == 12000 and len(train) == 48000
    assert not set(train) & set(validation)
    assert sorted(np.concatenate([train, validation])) == list(range(60000))
    expected = np.bincount(labels) * 0.2
    assert np.abs(np.bincount(labels[validation]) - expected).max() <= 1


def test_validation_is_shuffled_not_the_last_fifth(mnist_arrays: dict) -> None:
    _, validation = train_validation_split(mnist_arrays["y_train"], 0.2, seed=7)
    assert validation.min() < 1000 and validation.max() > 59000
    assert not (np.diff(validation) > 0).all()


def test_same_seed_same_split_other_seed_other_split(mnist_arrays: dict) -> None:
    labels = mnist_arrays["y_train"]
    first, second = train_validation_split(labels, 0.2, 3), train_validation_split(labels, 0.2, 3)
    other = train_validation_split(labels, 0.2, 4)

    assert (first[1] == second[1]).all() and (first[0] == second[0]).all()
    assert set(first[1]) != set(other[1])


def test_stratified_sample_is_exact_and_keeps_every_class(mnist_arrays: dict) -> None:
    labels = mnist_arrays["y_train"]

    chosen = stratified_sample(labels, 1001, seed=1)

    assert len(chosen) == len(set(chosen)) == 1001
    counts = np.bincount(labels[chosen], minlength=10)
    assert (counts >= 90).all()
    assert np.abs(counts - np.bincount(labels) * 1001 / 60000).max() < 1


def test_subset_and_search_subset_come_from_the_training_split(mnist_arrays: dict) -> None:
    labels = mnist_arrays["y_train"]
    config = JobConfig(run_id="t", subset=5000, search_subset=1000, seed=5)

    splits = make_splits(labels, config)

    assert len(splits.train) == 4000 and len(splits.validation) == 1000
    assert set(splits.search_train) <= set(splits.train)
    assert len(splits.search_train) == 1000
    assert not set(splits.train) & set(splits.validation)
    assert (np.bincount(labels[splits.validation], minlength=10) >= 80).all()
