"""The CNN and its search space.

`params_from_hp` only reads hyperparameters into a plain `NetworkParams`;
`build_network` builds from those, so retraining and tests need no tuner.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import keras
import keras_tuner
import tensorflow as tf
from keras import layers

from job.config import Profile
from job.data import NUM_CLASSES, SIDE

# The learning-rate hyperparameter is the rate for this global batch; other
# batch sizes scale it linearly (Goyal et al., 2017).
REFERENCE_BATCH = 128


@dataclass(frozen=True)
class NetworkParams:
    """One point of the search space; defaults are the search space's defaults."""

    conv1_filters: int = 32
    conv2_filters: int = 64
    dense_units: int = 128
    dropout1: float = 0.25
    dropout2: float = 0.25
    dropout3: float = 0.5
    learning_rate: float = 1e-3  # Adam, at REFERENCE_BATCH
    double_conv: bool = False  # two 3x3 convolutions per block (full profile)
    # Random shifts up to this fraction of the side, rotations up to a third of it
    # in turns (0.1: ±2.8 px, ±12 degrees); 0 = none (full profile: 0.05-0.15).
    augment: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def params_from_hp(hp: keras_tuner.HyperParameters, profile: Profile) -> NetworkParams:
    """Declare the search space on `hp` and read the chosen point.

    The full profile adds what the best small MNIST CNNs use: two convolutions
    per block, light augmentation (always on, its strength tuned: short trials
    would otherwise drop it, as it only pays off over longer training) and a
    wider dense layer. Convolutions stay as wide as in quick: doubled at
    96/192 filters they cost ~9x the 32/64 network for no measured gain.
    """
    default = NetworkParams()
    full = profile == Profile.FULL
    conv1 = hp.Int("conv1_filters", 16, 64, step=16, default=default.conv1_filters)
    conv2 = hp.Int("conv2_filters", 32, 128, step=32, default=default.conv2_filters)
    dense = hp.Int("dense_units", 64, 512 if full else 256, step=64, default=default.dense_units)
    dropout1 = hp.Float("dropout1", 0.0, 0.5, step=0.05, default=default.dropout1)
    dropout2 = hp.Float("dropout2", 0.0, 0.5, step=0.05, default=default.dropout2)
    dropout3 = hp.Float("dropout3", 0.0, 0.6, step=0.05, default=default.dropout3)
    learning_rate = hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=default.learning_rate)
    double_conv = hp.Boolean("double_conv", default=True) if full else False
    augment = hp.Choice("augment", [0.05, 0.1, 0.15], default=0.1) if full else 0.0
    return NetworkParams(conv1, conv2, dense, dropout1, dropout2, dropout3, learning_rate,
                         double_conv, augment)


def params_from_values(values: dict[str, Any], profile: Profile) -> NetworkParams:
    """The `NetworkParams` for recorded hyperparameter values (e.g. the best trial's)."""
    hp = keras_tuner.HyperParameters()
    hp.values.update(values)
    return params_from_hp(hp, profile)


def build_network(params: NetworkParams) -> keras.Model:
    """Two conv blocks (3x3, BatchNorm, ReLU, 2x2 max-pool), a dense layer, softmax."""
    inputs = keras.Input(shape=(SIDE, SIDE, 1), name="image")
    x = inputs
    if params.augment:  # active in training only
        x = layers.RandomTranslation(params.augment, params.augment, fill_mode="constant")(x)
        x = layers.RandomRotation(params.augment / 3, fill_mode="constant")(x)
    blocks = ((params.conv1_filters, params.dropout1), (params.conv2_filters, params.dropout2))
    for index, (filters, dropout) in enumerate(blocks, start=1):
        for repeat in range(2 if params.double_conv else 1):
            name = f"conv{index}" if repeat == 0 else f"conv{index}b"
            x = layers.Conv2D(filters, 3, use_bias=False, name=name)(x)
            # Momentum 0.9, not Keras' 0.99: short trials (~100 steps) otherwise
            # validate with moving statistics still stuck near their initial values.
            x = fused(layers.BatchNormalization(momentum=0.9))(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(dropout)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(params.dense_units, activation="relu")(x)
    x = layers.Dropout(params.dropout3)(x)
    # float32 output keeps the softmax stable under a mixed-precision policy.
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="class")(x)
    return keras.Model(inputs, outputs, name="cnn")


def fused(layer: layers.BatchNormalization) -> layers.BatchNormalization:
    """`layer`, computing with TensorFlow's fused batch-norm kernel where it can.

    Keras 3 normalizes with separate ops (moments, then scale and shift), which
    on a CPU take about half of this network's training step; TensorFlow's
    FusedBatchNormV3 does the same in one oneDNN kernel (1.6-1.8x more images/s
    here, see BENCHMARKS.md). Only this instance's `call` changes: weights,
    config and saved file stay a standard BatchNormalization, which loads
    anywhere (and then computes the same values the unfused way).
    """
    standard_call = layer.call

    def call(inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        if not _can_fuse(layer, inputs, mask):
            return standard_call(inputs, training=training, mask=mask)
        training = bool(training and layer.trainable)
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, layer.gamma, layer.beta, mean=layer.moving_mean,
            variance=layer.moving_variance, epsilon=layer.epsilon, is_training=training,
            # The kernel updates the moving averages itself (Keras: m * old + (1 - m) * batch).
            exponential_avg_factor=1.0 - layer.momentum if training else 1.0)
        if training:
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
        return tf.cast(outputs, layer.compute_dtype)

    layer.call = call
    return layer


def _can_fuse(layer: layers.BatchNormalization, inputs: Any, mask: Any) -> bool:
    """The fused kernel covers NHWC images without masks, renorm or cross-replica statistics."""
    return (keras.backend.backend() == "tensorflow" and mask is None and len(inputs.shape) == 4
            and layer.axis in (-1, 3) and layer.center and layer.scale
            and not layer.renorm and not layer.synchronized
            and inputs.dtype in (tf.float16, tf.bfloat16, tf.float32))


def compile_network(model: keras.Model, learning_rate: float, jit_compile: bool = False) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    return model


class CnnHyperModel(keras_tuner.HyperModel):
    """What KerasTuner builds for each trial."""

    def __init__(self, profile: Profile, global_batch: int, jit_compile: bool = False):
        super().__init__(name="cnn")
        self.profile = profile
        self.learning_rate_scale = global_batch / REFERENCE_BATCH
        self.jit_compile = jit_compile

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        params = params_from_hp(hp, self.profile)
        return compile_network(build_network(params), params.learning_rate * self.learning_rate_scale,
                               self.jit_compile)
