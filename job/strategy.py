"""Choosing the tf.distribute strategy that the search and the final training run under."""

from __future__ import annotations

import tensorflow as tf

from job.config import StrategyKind
from job.errors import BadInputError


def configure_devices(logical_cpus: int, mixed_precision: bool) -> None:
    """Process-wide device setup; must run before TensorFlow executes any op.

    `logical_cpus` > 1 splits the CPU into that many devices, so that
    MirroredStrategy really runs several replicas on a machine without GPUs.
    """
    if logical_cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus)
        except RuntimeError:
            pass  # already initialised in this process (e.g. a second run in one test session)
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)  # share GPUs with other trials
    if mixed_precision and gpus and all(_has_tensor_cores(gpu) for gpu in gpus):
        import keras

        keras.mixed_precision.set_global_policy("mixed_float16")
    elif mixed_precision:
        # float16 without tensor cores (or on a CPU) is slower than float32, not faster.
        print("mixed precision: off, it needs GPUs with tensor cores (compute capability 7.0+)",
              flush=True)


def _has_tensor_cores(gpu: tf.config.PhysicalDevice) -> bool:
    capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
    return capability is not None and tuple(capability) >= (7, 0)


def make_strategy(kind: StrategyKind) -> tf.distribute.Strategy:
    """auto: MirroredStrategy over every GPU when there are two or more, else the default."""
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if kind == StrategyKind.DEFAULT or (kind == StrategyKind.AUTO and len(gpus) < 2):
        return tf.distribute.get_strategy()
    devices = [d.name for d in gpus] or [d.name for d in cpus]
    if kind == StrategyKind.MIRRORED and len(devices) < 1:
        raise BadInputError("--strategy mirrored: expected at least one device, found none")
    return tf.distribute.MirroredStrategy(devices)


def describe(strategy: tf.distribute.Strategy) -> str:
    return f"{type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s)"
