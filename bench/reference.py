"""The original script, written plainly: the baseline every benchmark compares with.

No tricks on purpose: numpy arrays straight into `model.fit`, batch 32,
Keras' `validation_split=0.2`, a RandomSearch of 20-epoch trials, then the
best hyperparameters retrained and scored on the test set. The only change:
Keras' MNIST download fails on these machines, so the IDX files are read
from a directory (with `job.data.load`, for reading only; the original's own
scaling and reshaping follow).

    python -m bench.reference --data DIR --max-trials 10 --work-dir /tmp/reference
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import keras
import keras_tuner
import numpy as np
from keras import layers

BATCH_SIZE = 32
EPOCHS = 20  # a trial's budget, and the retrain's
VALIDATION_SPLIT = 0.2
PATIENCE = 3  # EarlyStopping on val_loss; ReduceLROnPlateau waits PATIENCE - 1


def load_data(directory: str, subset: int | None = None) -> tuple[tuple[np.ndarray, np.ndarray],
                                                                    tuple[np.ndarray, np.ndarray]]:
    """Like `keras.datasets.mnist.load_data()`: uint8 images and integer labels."""
    from job.data import load

    data = load(directory)
    # job.data.load already scaled to [0, 1]; x * 255 is exact, so this returns the raw bytes.
    raw = [np.rint(x[..., 0] * 255).astype("uint8") for x in (data.x_train, data.x_test)]
    x_train, y_train, x_test, y_test = raw[0], data.y_train, raw[1], data.y_test
    if subset:  # smoke runs: the first N training and N // 5 test images
        x_train, y_train, x_test, y_test = (x_train[:subset], y_train[:subset],
                                            x_test[:subset // 5], y_test[:subset // 5])
    return (x_train, y_train), (x_test, y_test)


def preprocess(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale to [0, 1], reshape to one channel, one-hot labels."""
    x = images.astype("float32") / 255.0
    x = x.reshape(-1, 28, 28, 1)
    return x, keras.utils.to_categorical(labels, 10)


def build_model(hp: keras_tuner.HyperParameters) -> keras.Model:
    """Two conv layers (ReLU, BatchNorm), two max-pools, three dropouts, a softmax."""
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(hp.Int("conv1_filters", 16, 64, step=16, default=32), 3, activation="relu"),
        layers.BatchNormalization(),
        layers.MaxPooling2D(2),
        layers.Dropout(hp.Float("dropout1", 0.0, 0.5, step=0.05, default=0.25)),
        layers.Conv2D(hp.Int("conv2_filters", 32, 128, step=32, default=64), 3, activation="relu"),
        layers.BatchNormalization(),
        layers.MaxPooling2D(2),
        layers.Dropout(hp.Float("dropout2", 0.0, 0.5, step=0.05, default=0.25)),
        layers.Flatten(),
        layers.Dense(hp.Int("dense_units", 64, 256, step=64, default=128), activation="relu"),
        layers.Dropout(hp.Float("dropout3", 0.0, 0.6, step=0.05, default=0.5)),
        layers.Dense(10, activation="softmax"),
    ])
    learning_rate = hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=1e-3)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def make_callbacks(checkpoint: Path) -> list[keras.callbacks.Callback]:
    return [
        keras.callbacks.ModelCheckpoint(str(checkpoint), monitor="val_accuracy", save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=PATIENCE),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=PATIENCE - 1),
    ]


def main(data: str, work_dir: Path, max_trials: int, epochs: int = EPOCHS,
         subset: int | None = None, seed: int = 42) -> dict:
    """The whole original job; returns its test accuracy, best hyperparameters and wall time."""
    started = time.monotonic()
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = load_data(data, subset)
    x_train, y_train = preprocess(x_train, y_train)
    x_test, y_test = preprocess(x_test, y_test)

    tuner = keras_tuner.RandomSearch(build_model, objective="val_accuracy", max_trials=max_trials,
                                     seed=seed, directory=str(work_dir), project_name="reference")
    tuner.search(x_train, y_train, epochs=epochs, batch_size=BATCH_SIZE,
                 validation_split=VALIDATION_SPLIT, callbacks=make_callbacks(work_dir / "best.keras"),
                 verbose=2)
    tuner.results_summary(num_trials=max_trials)
    best_hps = tuner.get_best_hyperparameters(1)[0]

    model = build_model(best_hps)  # retrain the best from scratch
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=BATCH_SIZE,
                        validation_split=VALIDATION_SPLIT,
                        callbacks=make_callbacks(work_dir / "final.keras"), verbose=2)
    best_model = keras.saving.load_model(work_dir / "final.keras")
    test_loss, test_accuracy = best_model.evaluate(x_test, y_test, verbose=0)
    return {"test_accuracy": float(test_accuracy), "test_loss": float(test_loss),
            "seconds": time.monotonic() - started, "trials": max_trials, "epochs_per_trial": epochs,
            "final_epochs": len(history.epoch), "hyperparameters": best_hps.values}


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.reference", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="directory with the 4 MNIST IDX files")
    parser.add_argument("--work-dir", type=Path, required=True, help="tuner folder (emptied first)")
    parser.add_argument("--max-trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="per trial, and the retrain")
    parser.add_argument("--subset", type=int, default=None, help="first N training images (smoke)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--result", type=Path, help="write the result as JSON here")
    return parser.parse_args(argv)


if __name__ == "__main__":
    from job.errors import BadInputError

    args = _arguments(sys.argv[1:])
    shutil.rmtree(args.work_dir, ignore_errors=True)
    args.work_dir.mkdir(parents=True)
    try:
        result = main(args.data, args.work_dir, args.max_trials, args.epochs, args.subset, args.seed)
    except BadInputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(int(error.exit_code))
    print(json.dumps(result))
    if args.result:
        args.result.write_text(json.dumps(result, indent=2) + "\n")
