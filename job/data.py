"""Reading and verifying an MNIST-format dataset: IDX files, a Keras .npz, or Keras' cache.

Everything is checked before any training starts; each problem becomes one
`BadInputError` line naming the file, what was expected and what was found.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from job.errors import BadInputError

IMAGE_MAGIC = 2051  # IDX: unsigned bytes, 3 dimensions
LABEL_MAGIC = 2049  # IDX: unsigned bytes, 1 dimension
SIDE = 28  # pixels
NUM_CLASSES = 10
SUMS_FILE = "SHA256SUMS.raw"  # SHA-256 of each file's *decompressed* content
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# SHA-256 of the decompressed training images of the canonical downloads.
CANONICAL_TRAIN_IMAGES = {
    "mnist": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "fashion-mnist": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
}
CLASS_NAMES = {
    "mnist": [str(digit) for digit in range(NUM_CLASSES)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
}


@dataclass(frozen=True)
class ImageData:
    """A verified dataset: pixels float32 in [0, 1] shaped (N, 28, 28, 1), labels 0-9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    checksums: dict[str, str]  # file name -> SHA-256 of its decompressed content
    source: str


def load(data: str | Path | None, dataset: str = "mnist") -> ImageData:
    """Load and verify `dataset` from a directory, an .npz file, or Keras' cache (None)."""
    if data is None:
        return _load_keras_cache(dataset)
    path = Path(data)
    if path.is_file() and path.suffix == ".npz":
        return _load_npz(path)
    if not path.is_dir():
        raise BadInputError(f"{path}: expected a directory of IDX files or an .npz file, "
                            "found nothing there; check --data")
    if not _has_dataset(path) and _has_dataset(path / dataset):
        path = path / dataset  # --data points at a folder of datasets
    npz = sorted(path.glob("*.npz"))
    if npz and not _has_dataset(path):
        return _load_npz(npz[0])
    return _refuse_other_dataset(_load_idx_dir(path), dataset)


def _refuse_other_dataset(loaded: ImageData, dataset: str) -> ImageData:
    """The canonical files of one dataset given with --dataset naming the other: its class
    names (and the run's label) would be wrong."""
    found = loaded.checksums.get(IDX_FILES["x_train"])
    for name, checksum in CANONICAL_TRAIN_IMAGES.items():
        if found == checksum and name != dataset:
            raise BadInputError(f"{loaded.source}: expected {dataset} files, found the canonical "
                                f"{name} files; pass --dataset {name}")
    return loaded


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(NUM_CLASSES, dtype="float32")[labels]


def _has_dataset(path: Path) -> bool:
    return path.is_dir() and any(path.glob(IDX_FILES["x_train"] + "*"))


def _load_idx_dir(path: Path) -> ImageData:
    expected = _read_sums(path / SUMS_FILE)
    arrays, checksums = {}, {}
    for key, name in IDX_FILES.items():
        file = _find(path, name)
        raw = _read_bytes(file)
        checksums[name] = hashlib.sha256(raw).hexdigest()
        if name in expected and expected[name] != checksums[name]:
            raise BadInputError(
                f"{file}: expected SHA-256 {expected[name][:16]}… from {SUMS_FILE}, "
                f"found {checksums[name][:16]}…; the file is corrupt, download it again")
        magic = IMAGE_MAGIC if key.startswith("x") else LABEL_MAGIC
        arrays[key] = _parse_idx(raw, magic, file)
    return _verified(arrays, checksums, source=str(path))


def _find(path: Path, name: str) -> Path:
    for candidate in (path / name, path / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise BadInputError(f"{path}: expected {name} or {name}.gz, found neither; "
                        "--data needs all four MNIST IDX files")


def _read_bytes(file: Path) -> bytes:
    try:
        if file.suffix == ".gz":
            with gzip.open(file, "rb") as stream:
                return stream.read()
        return file.read_bytes()
    except (EOFError, OSError, zlib.error) as error:
        raise BadInputError(f"{file}: expected a complete gzip file, found a truncated or "
                            f"corrupt one ({error}); download it again") from None


def _read_sums(file: Path) -> dict[str, str]:
    if not file.is_file():
        return {}
    sums = {}
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or len(parts[0]) != 64:
            raise BadInputError(f"{file}:{number}: expected '<sha256>  <file name>', "
                                f"found {line[:60]!r}")
        sums[parts[1].lstrip("*").removesuffix(".gz")] = parts[0].lower()
    return sums


def _parse_idx(raw: bytes, magic: int, file: Path) -> np.ndarray:
    dims = 3 if magic == IMAGE_MAGIC else 1
    header = 4 + 4 * dims
    if len(raw) < header:
        raise BadInputError(f"{file}: expected an IDX header of {header} bytes, "
                            f"found {len(raw)} bytes")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise BadInputError(f"{file}: expected IDX magic number {magic}, found {found}; "
                            "is this the right file?")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise BadInputError(f"{file}: expected {size} data bytes for shape {shape}, "
                            f"found {len(raw) - header}; the file is truncated")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _load_npz(file: Path) -> ImageData:
    try:
        with np.load(file, allow_pickle=False) as npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise BadInputError(f"{file}: expected arrays {', '.join(NPZ_KEYS)}, "
                                    f"found {', '.join(npz.files) or 'none'}")
            arrays = {k: np.asarray(npz[k]) for k in NPZ_KEYS}
    except (OSError, ValueError, zlib.error) as error:
        raise BadInputError(f"{file}: expected a NumPy .npz archive, could not read it "
                            f"({error})") from None
    checksums = {file.name: hashlib.sha256(file.read_bytes()).hexdigest()}
    return _verified(arrays, checksums, source=str(file))


def _load_keras_cache(dataset: str) -> ImageData:
    import keras  # slow import, only on this path

    loader = {"mnist": keras.datasets.mnist, "fashion-mnist": keras.datasets.fashion_mnist}
    try:
        (x_train, y_train), (x_test, y_test) = loader[dataset].load_data()
    except Exception as error:  # noqa: BLE001 - any download failure means the same
        cause = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise BadInputError(f"could not load {dataset} through Keras' download ({cause}); "
                            "pass --data DIR with the IDX files") from None
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    checksums = {f"keras:{k}": hashlib.sha256(v.tobytes()).hexdigest() for k, v in arrays.items()}
    return _verified(arrays, checksums, source=f"keras:{dataset}")


def _verified(arrays: dict[str, np.ndarray], checksums: dict[str, str], source: str) -> ImageData:
    for part in ("train", "test"):
        images, labels = arrays[f"x_{part}"], arrays[f"y_{part}"]
        where = f"{source} ({part} set)"
        if images.ndim != 3 or images.shape[1:] != (SIDE, SIDE):
            raise BadInputError(f"{where}: expected {SIDE}x{SIDE} images, "
                                f"found shape {images.shape}")
        if images.dtype != np.uint8:
            raise BadInputError(f"{where}: expected uint8 pixels 0-255, found {images.dtype}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise BadInputError(f"{where}: expected one label per image ({len(images)}), "
                                f"found {labels.shape[0] if labels.ndim else 0} labels")
        bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
        if bad.size:
            raise BadInputError(f"{where}: expected labels 0-{NUM_CLASSES - 1}, found "
                                f"{int(labels[bad[0]])} at index {int(bad[0])}")
    return ImageData(
        x_train=_scaled(arrays["x_train"]), y_train=arrays["y_train"].astype("int64"),
        x_test=_scaled(arrays["x_test"]), y_test=arrays["y_test"].astype("int64"),
        checksums=checksums, source=source)


def _scaled(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1], with one channel: (N, 28, 28, 1)."""
    return (images.astype("float32") / 255.0)[..., np.newaxis]
