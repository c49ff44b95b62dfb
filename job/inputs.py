"""tf.data input pipelines: built once per run and reused by every trial.

Feeding numpy arrays to `fit` re-slices them every epoch on the Python side;
a cached, prefetched tf.data pipeline keeps the CPU busy with training instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from job.config import JobConfig
from job.data import NUM_CLASSES, ImageData
from job.errors import BadInputError
from job.split import stratified_sample, train_validation_split


@dataclass(frozen=True)
class Splits:
    """Index arrays into the training set; the test set is never split or seen."""

    train: np.ndarray
    validation: np.ndarray
    search_train: np.ndarray  # what each search trial trains on: `train` or a subset of it


def make_splits(labels: np.ndarray, config: JobConfig) -> Splits:
    """Seeded and stratified: the same config always gives the same images."""
    pool = np.arange(len(labels))
    if config.subset is not None and config.subset > len(labels):
        raise BadInputError(f"--subset {config.subset}: expected at most the {len(labels)} "
                            "training images there are")
    if config.subset is not None and config.subset < len(labels):
        pool = stratified_sample(labels, config.subset, config.seed)
    train, validation = train_validation_split(labels[pool], config.validation_split, config.seed)
    train, validation = pool[train], pool[validation]
    search_train = train
    if config.search_subset is not None and config.search_subset < len(train):
        search_train = train[stratified_sample(labels[train], config.search_subset, config.seed + 2)]
    return Splits(train=train, validation=validation, search_train=search_train)


def batches(images: np.ndarray, labels: np.ndarray, batch_size: int,
            shuffle_seed: int | None = None) -> tf.data.Dataset:
    """(image, one-hot label) batches; shuffled every epoch when a seed is given."""
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    dataset = dataset.map(lambda x, y: (x, tf.one_hot(y, NUM_CLASSES)),
                          num_parallel_calls=tf.data.AUTOTUNE).cache()
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def training_batches(data: ImageData, indices: np.ndarray, batch_size: int,
                     seed: int) -> tf.data.Dataset:
    return batches(data.x_train[indices], data.y_train[indices], batch_size, shuffle_seed=seed)


def validation_batches(data: ImageData, indices: np.ndarray, batch_size: int) -> tf.data.Dataset:
    return batches(data.x_train[indices], data.y_train[indices], batch_size)


def test_batches(data: ImageData, batch_size: int) -> tf.data.Dataset:
    return batches(data.x_test, data.y_test, batch_size)
