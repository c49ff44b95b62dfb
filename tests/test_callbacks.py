"""Epoch backups that survive a stop, and the NaN guard, on real MNIST images."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import pytest
from keras_tuner.errors import FailedTrialError

from job.callbacks import EpochBackup, EpochLog, NanGuard
from job.data import load
from job.errors import Preempted
from job.inputs import batches
from job.model import NetworkParams, build_network, compile_network
from job.preemption import StopSignal


@pytest.fixture(scope="module")
def small_set(mnist_dir: Path):
    data = load(mnist_dir)
    return batches(data.x_train[:640], data.y_train[:640], 64, shuffle_seed=1)


class _CountEpochs(keras.callbacks.Callback):
    def __init__(self, stop_at: tuple[int, int] | None = None, stop: StopSignal | None = None):
        super().__init__()
        self.epochs: list[int] = []
        self.stop_at, self.stop = stop_at, stop

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if self.stop_at == (self.epochs[-1], batch):
            self.stop.set("test")


def _model() -> keras.Model:
    return compile_network(build_network(NetworkParams(conv1_filters=8, conv2_filters=16)), 1e-3)


def test_a_stopped_fit_resumes_at_the_interrupted_epoch(tmp_path: Path, small_set) -> None:
    stop = StopSignal()
    counter = _CountEpochs(stop_at=(2, 3), stop=stop)
    log = EpochLog(str(tmp_path / "epochs.json"))

    with pytest.raises(Preempted):
        _model().fit(small_set, epochs=5, verbose=0,
                     callbacks=[counter, log, EpochBackup(str(tmp_path / "backup"), stop)])

    assert counter.epochs == [0, 1, 2]
    assert json.loads((tmp_path / "backup" / "training_metadata.json").read_text())["epoch"] == 2
    assert not list((tmp_path / "backup").glob("*partial*"))
    resumed = _CountEpochs()
    _model().fit(small_set, epochs=5, verbose=0,
                 callbacks=[resumed, log, EpochBackup(str(tmp_path / "backup"), StopSignal())])
    assert resumed.epochs == [2, 3, 4]  # epochs 0 and 1 were not trained again
    assert sorted(log.read()) == [0, 1, 2, 3, 4]
    assert not (tmp_path / "backup").exists()  # a finished fit removes its backup


def test_nan_loss_fails_the_trial(small_set) -> None:
    model = _model()
    # A NaN step makes every weight NaN after the first batch: a divergence that is certain.
    # (A huge finite rate is not: BatchNorm and the clipped cross-entropy can keep it finite.)
    model.optimizer.learning_rate.assign(float("nan"))
    with pytest.raises(FailedTrialError, match="loss became nan at epoch 1"):
        model.fit(small_set, epochs=3, verbose=0, callbacks=[NanGuard()])


def test_stop_signal_survives_deep_copies() -> None:
    import copy

    stop = StopSignal()
    backup = copy.deepcopy([EpochBackup("/tmp/x", stop)])[0]
    stop.set("now")
    with pytest.raises(Preempted, match="now"):
        backup.stop.raise_if_set()
