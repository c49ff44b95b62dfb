"""Stratified, seeded subsets and train/validation splits of a labelled set."""

from __future__ import annotations

import numpy as np


def stratified_sample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of `size` items whose class proportions match `labels`, in shuffled order.

    Each class gets its share rounded by largest remainder, so the total is exact.
    """
    if not 0 < size <= len(labels):
        raise ValueError(f"cannot take {size} of {len(labels)} items")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    shares = counts * size / len(labels)
    quota = np.floor(shares).astype(int)
    remainder_order = np.argsort(-(shares - quota), kind="stable")
    quota[remainder_order[: size - quota.sum()]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, quota)]
    return rng.permutation(np.concatenate(chosen))


def train_validation_split(labels: np.ndarray, fraction: float,
                           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled, stratified (train, validation) index arrays; `fraction` goes to validation.

    Unlike Keras' `validation_split`, which takes the last items unshuffled.
    """
    validation = stratified_sample(labels, round(len(labels) * fraction), seed)
    mask = np.ones(len(labels), dtype=bool)
    mask[validation] = False
    train = np.random.default_rng(seed + 1).permutation(np.flatnonzero(mask))
    return train, validation
