"""One small interface over a local directory and a `gs://` bucket prefix (in job.gcs)."""

from __future__ import annotations

import abc
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from job.errors import BadInputError, StorageError


class PreconditionFailed(StorageError):
    """The object changed since we read it (another writer): generation mismatch."""


@dataclass(frozen=True)
class StoredObject:
    key: str  # relative to the store's root
    size: int
    generation: int
    md5: str | None  # hex digest, when the store knows it


class Store(abc.ABC):
    """Objects under a root: `gs://bucket/prefix` or a local directory."""

    url: str

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[StoredObject]:
        """Every object whose key starts with `prefix`."""

    @abc.abstractmethod
    def children(self, prefix: str = "") -> list[str]:
        """Names one level below `prefix` (like directories)."""

    @abc.abstractmethod
    def upload(self, path: Path, key: str) -> None:
        """Copies a local file to `key`, verified."""

    @abc.abstractmethod
    def download(self, key: str, path: Path) -> None:
        """Copies `key` to `path` atomically, verified."""

    @abc.abstractmethod
    def read(self, key: str) -> tuple[bytes, int] | None:
        """(content, generation), or None if there is no such object."""

    @abc.abstractmethod
    def write(self, key: str, data: bytes, if_generation_match: int | None = None) -> int:
        """Writes `data`; with `if_generation_match`, only if the object is still that
        generation (0: only if it does not exist). Returns the new generation."""

    @abc.abstractmethod
    def delete(self, keys: list[str]) -> None:
        """Deletes objects; missing ones are fine."""

    def exists(self, key: str) -> bool:
        return self.read(key) is not None


def open_store(url: str) -> Store:
    if url.startswith("gs://"):
        from job.gcs import GcsStore

        return GcsStore(url)
    return LocalStore(Path(url))


def is_remote(url: str) -> bool:
    return url.startswith("gs://")


def mirror(url: str, cache_root: Path) -> Path:
    """Downloads every object under `url` into `cache_root`, once: files already
    there with the same MD5 are kept. Returns the local folder."""
    from job.gcs import GcsStore

    store = GcsStore(url)
    target = Path(cache_root) / url.removeprefix("gs://").strip("/")
    objects = store.list()
    if not objects:
        raise BadInputError(f"{url}: no files found there; check --data")
    for stored in objects:
        path = target / stored.key
        if path.is_file() and stored.md5 is not None and md5_file(path) == stored.md5:
            continue
        store.download(stored.key, path)
    return target


class LocalStore(Store):
    """A directory; generations are modification times, checked under a file lock."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.url = str(root)

    def list(self, prefix: str = "") -> list[StoredObject]:
        base = self.root / prefix
        if not base.exists():
            return []
        return [StoredObject(p.relative_to(self.root).as_posix(), p.stat().st_size,
                             p.stat().st_mtime_ns, md5_file(p))
                for p in sorted(base.rglob("*"))
                if p.is_file() and not p.name.endswith((".lock", ".partial"))]

    def children(self, prefix: str = "") -> list[str]:
        base = self.root / prefix
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def upload(self, path: Path, key: str) -> None:
        self.write(key, Path(path).read_bytes())

    def download(self, key: str, path: Path) -> None:
        _atomic_copy(self.root / key, Path(path))

    def read(self, key: str) -> tuple[bytes, int] | None:
        file = self.root / key
        if not file.is_file():
            return None
        return file.read_bytes(), file.stat().st_mtime_ns

    def write(self, key: str, data: bytes, if_generation_match: int | None = None) -> int:
        file = self.root / key
        file.parent.mkdir(parents=True, exist_ok=True)
        with _locked(file.with_name(file.name + ".lock")):
            current = file.stat().st_mtime_ns if file.exists() else 0
            if if_generation_match is not None and current != if_generation_match:
                raise PreconditionFailed(f"{file}: changed by another writer")
            temp = file.with_name(f".{file.name}.partial")
            temp.write_bytes(data)
            os.replace(temp, file)
            if file.stat().st_mtime_ns == current:  # same clock tick: still a new generation
                os.utime(file, ns=(current + 1, current + 1))
            return file.stat().st_mtime_ns

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            (self.root / key).unlink(missing_ok=True)
            (self.root / f"{key}.lock").unlink(missing_ok=True)  # its generation lock, if any


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    with open(lock_file, "a") as stream:
        fcntl.flock(stream, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(stream, fcntl.LOCK_UN)


@contextmanager
def temp_beside(path: Path) -> Iterator[Path]:
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _atomic_copy(source: Path, target: Path) -> None:
    if not source.is_file():
        raise StorageError(f"{source}: not found")
    target.parent.mkdir(parents=True, exist_ok=True)
    with temp_beside(target) as temp:
        shutil.copyfile(source, temp)
        os.replace(temp, target)
