"""Loading and verifying MNIST files; every broken input is one line and exit code 2."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from job import data
from job.errors import BadInputError
from tests.conftest import idx_bytes, run_job, write_mnist

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # shared/data/README.md


def test_real_mnist_loads_scaled_one_channel_and_verified(mnist_dir: Path) -> None:
    loaded = data.load(mnist_dir)

    assert loaded.x_train.shape == (60000, 28, 28, 1) and loaded.x_train.dtype == np.float32
    assert loaded.x_test.shape == (10000, 28, 28, 1)
    assert 0.0 == loaded.x_train.min() and loaded.x_train.max() == 1.0
    assert loaded.x_train.mean() * 255 == pytest.approx(33.318, abs=0.01)
    assert np.bincount(loaded.y_train).tolist() == TRAIN_COUNTS
    assert set(loaded.checksums) == {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                     "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}


def test_a_folder_of_datasets_and_raw_files_work(tmp_path: Path, mini_mnist: Path) -> None:
    raw = tmp_path / "datasets" / "mnist"
    raw.mkdir(parents=True)
    for file in mini_mnist.glob("*.gz"):
        (raw / file.stem).write_bytes(gzip.decompress(file.read_bytes()))

    loaded = data.load(tmp_path / "datasets", "mnist")

    assert len(loaded.y_train) == 2000 and len(loaded.y_test) == 500


def test_keras_style_npz(tmp_path: Path, mnist_arrays: dict) -> None:
    file = tmp_path / "mnist.npz"
    np.savez(file, **{k: v[:300] for k, v in mnist_arrays.items()})

    loaded = data.load(file)

    assert loaded.x_train.shape == (300, 28, 28, 1)
    assert list(loaded.checksums) == ["mnist.npz"]


def test_one_hot() -> None:
    assert data.one_hot(np.array([0, 9])).tolist() == [[1] + [0] * 9, [0] * 9 + [1]]


def _break_truncated_gz(folder: Path) -> None:
    file = folder / "train-images-idx3-ubyte.gz"
    file.write_bytes(file.read_bytes()[:5000])


def _break_magic(folder: Path) -> None:
    file = folder / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(file.read_bytes()))
    raw[3] = 0x03  # 2051, the images' magic
    file.write_bytes(gzip.compress(bytes(raw)))
    (folder / data.SUMS_FILE).unlink()


def _break_count(folder: Path) -> None:
    file = folder / "train-labels-idx1-ubyte.gz"
    labels = np.frombuffer(gzip.decompress(file.read_bytes()), np.uint8, offset=8)
    file.write_bytes(gzip.compress(idx_bytes(labels[:-7], data.LABEL_MAGIC)))
    (folder / data.SUMS_FILE).unlink()


def _break_label(folder: Path) -> None:
    file = folder / "t10k-labels-idx1-ubyte.gz"
    labels = np.frombuffer(gzip.decompress(file.read_bytes()), np.uint8, offset=8).copy()
    labels[5] = 12
    file.write_bytes(gzip.compress(idx_bytes(labels, data.LABEL_MAGIC)))
    (folder / data.SUMS_FILE).unlink()


def _break_checksum(folder: Path) -> None:
    file = folder / "train-images-idx3-ubyte.gz"
    raw = bytearray(gzip.decompress(file.read_bytes()))
    raw[500] ^= 0xFF  # one flipped pixel: still a valid IDX file
    file.write_bytes(gzip.compress(bytes(raw)))


def _break_missing(folder: Path) -> None:
    (folder / "t10k-images-idx3-ubyte.gz").unlink()


BROKEN = {
    "truncated gz": (_break_truncated_gz, "train-images-idx3-ubyte.gz: expected a complete gzip"),
    "wrong magic": (_break_magic, "expected IDX magic number 2049, found 2051"),
    "count mismatch": (_break_count, "expected one label per image (2000), found 1993"),
    "label 12": (_break_label, "expected labels 0-9, found 12 at index 5"),
    "checksum": (_break_checksum, "train-images-idx3-ubyte.gz: expected SHA-256"),
    "missing file": (_break_missing, "expected t10k-images-idx3-ubyte or t10k-images-idx3-ubyte.gz"),
}


@pytest.mark.parametrize("name", BROKEN)
def test_broken_files_are_refused_with_one_line(name: str, mini_mnist: Path) -> None:
    breaker, expected = BROKEN[name]
    breaker(mini_mnist)

    with pytest.raises(BadInputError) as raised:
        data.load(mini_mnist)

    assert expected in str(raised.value)
    assert "\n" not in str(raised.value)


def test_npz_with_other_keys_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "mnist.npz"
    np.savez(file, images=np.zeros((2, 28, 28), np.uint8), labels=np.zeros(2, np.uint8))

    with pytest.raises(BadInputError, match="expected arrays x_train, y_train, x_test, y_test, "
                                            "found images, labels"):
        data.load(file)


def test_cli_reports_bad_data_in_one_line_with_exit_code_2(tmp_path: Path, mini_mnist: Path) -> None:
    _break_label(mini_mnist)

    result = run_job("run", "--data", str(mini_mnist), "--artifacts", str(tmp_path / "art"),
                     timeout=120)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "expected labels 0-9, found 12" in result.stderr
    assert "Traceback" not in result.stderr
    assert list((tmp_path / "art").iterdir()) == []  # no run, and no lease left beside it


def test_write_mnist_round_trips(tmp_path: Path, mnist_arrays: dict) -> None:
    folder = write_mnist(tmp_path / "copy", {k: v[:150] for k, v in mnist_arrays.items()})
    loaded = data.load(folder)
    assert (loaded.y_train == mnist_arrays["y_train"][:150]).all()
