"""The CNN and its search space."""

from __future__ import annotations

from pathlib import Path

import keras
import keras_tuner
import numpy as np
import pytest

from job.config import Profile
from job.model import (CnnHyperModel, NetworkParams, build_network, fused, params_from_hp,
                       params_from_values)


def test_search_space_defaults_are_the_network_defaults() -> None:
    hp = keras_tuner.HyperParameters()
    assert params_from_hp(hp, Profile.QUICK) == NetworkParams()
    assert set(hp.values) == {"conv1_filters", "conv2_filters", "dense_units", "dropout1",
                              "dropout2", "dropout3", "learning_rate"}


def test_full_profile_adds_augmentation_and_double_convolutions() -> None:
    hp = keras_tuner.HyperParameters()
    params = params_from_hp(hp, Profile.FULL)
    assert {"augment", "double_conv"} <= set(hp.values)
    assert params.augment and params.double_conv


def test_network_has_two_conv_blocks_three_dropouts_and_softmax() -> None:
    model = build_network(NetworkParams(conv1_filters=16, conv2_filters=32))
    kinds = [type(layer).__name__ for layer in model.layers]

    assert kinds.count("Conv2D") == 2 and kinds.count("BatchNormalization") == 2
    assert kinds.count("MaxPooling2D") == 2 and kinds.count("Dropout") == 3
    assert model.get_layer("conv1").kernel.shape == (3, 3, 1, 16)
    assert model.output_shape == (None, 10)
    assert model.layers[-1].activation is keras.activations.softmax


def test_recorded_values_rebuild_the_same_point() -> None:
    values = {"conv1_filters": 48, "conv2_filters": 96, "dense_units": 64, "dropout1": 0.1,
              "dropout2": 0.3, "dropout3": 0.4, "learning_rate": 0.002, "tuner/epochs": 3}
    params = params_from_values(values, Profile.QUICK)
    assert (params.conv1_filters, params.conv2_filters, params.learning_rate) == (48, 96, 0.002)


def test_learning_rate_scales_with_the_global_batch() -> None:
    hypermodel = CnnHyperModel(Profile.QUICK, global_batch=512)
    model = hypermodel.build(keras_tuner.HyperParameters())
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(4e-3)


def test_fused_batch_norm_computes_what_keras_does_and_saves_as_keras_layer(tmp_path: Path) -> None:
    images = np.random.default_rng(0).normal(2.0, 3.0, (32, 6, 6, 4)).astype("float32")
    standard = keras.layers.BatchNormalization(momentum=0.9)
    fast = fused(keras.layers.BatchNormalization(momentum=0.9))
    for training in (True, False):  # inference uses the moving statistics the step updated
        # rtol: the fused kernel's moving variance has Bessel's correction, n / (n - 1).
        np.testing.assert_allclose(fast(images, training=training),
                                   standard(images, training=training), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(fast.moving_mean.numpy(), standard.moving_mean.numpy(), rtol=1e-5)

    model = build_network(NetworkParams())
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")  # no job import needed
    batch_norms = [layer for layer in loaded.layers if "BatchNormalization" in type(layer).__name__]
    assert {type(layer) for layer in batch_norms} == {keras.layers.BatchNormalization}
    digits = np.random.default_rng(1).random((2, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(loaded(digits), model(digits), atol=1e-6)
