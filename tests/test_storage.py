"""The Store interface, the same over a local directory and a real GCS server."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.api_core import exceptions as api

from job.errors import StorageError
from job.gcs import GcsStore
from job.storage import LocalStore, PreconditionFailed, Store, md5_file, mirror


@pytest.fixture(params=["local", "gcs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return GcsStore(f"gs://{request.getfixturevalue('bucket')}/prefix")


def test_write_read_list_and_delete(store: Store, tmp_path: Path) -> None:
    store.write("run-1/status.json", b'{"state": "running"}')
    file = tmp_path / "model.bin"
    file.write_bytes(bytes(range(256)) * 100)
    store.upload(file, "run-1/sub/model.bin")

    assert store.read("run-1/status.json")[0] == b'{"state": "running"}'
    assert store.read("run-1/missing") is None
    listed = {o.key: o for o in store.list("run-1/")}
    assert set(listed) == {"run-1/status.json", "run-1/sub/model.bin"}
    assert listed["run-1/sub/model.bin"].size == 25600
    assert listed["run-1/sub/model.bin"].md5 == md5_file(file)
    assert store.children() == ["run-1"]
    store.download("run-1/sub/model.bin", tmp_path / "copy" / "model.bin")
    assert (tmp_path / "copy" / "model.bin").read_bytes() == file.read_bytes()
    store.delete(["run-1/status.json", "run-1/never-existed"])
    assert [o.key for o in store.list()] == ["run-1/sub/model.bin"]


def test_generations_change_on_every_write(store: Store) -> None:
    first = store.write("k", b"1", if_generation_match=0)
    second = store.write("k", b"2", if_generation_match=first)
    assert second != first and store.read("k") == (b"2", second)


def test_local_store_refuses_a_stale_generation(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    generation = store.write("lease.json", b"a")
    store.write("lease.json", b"b", if_generation_match=generation)
    with pytest.raises(PreconditionFailed):
        store.write("lease.json", b"c", if_generation_match=generation)
    with pytest.raises(PreconditionFailed):
        store.write("lease.json", b"d", if_generation_match=0)


class _RefusingBlob:
    """Stands in for a GCS blob when the server enforces generations (the emulator
    ignores `if_generation_match`, so real GCS's 412 cannot be produced here)."""

    generation = None

    def upload_from_string(self, data: bytes, if_generation_match: int | None, **kwargs) -> None:
        self.asked = if_generation_match
        raise api.PreconditionFailed("conditionNotMet")


def test_gcs_store_passes_generations_and_maps_412(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = _RefusingBlob()
    store = GcsStore("gs://bucket/prefix", client=object())
    monkeypatch.setattr(GcsStore, "bucket", property(lambda self: type("B", (), {"blob": lambda s, k: blob})()))
    with pytest.raises(PreconditionFailed, match="changed by another writer"):
        store.write("lease.json", b"x", if_generation_match=7)
    assert blob.asked == 7


def test_a_missing_bucket_is_one_line(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    with pytest.raises(StorageError) as raised:
        GcsStore("gs://no-such-bucket/x").list()
    assert str(raised.value) == ("gs://no-such-bucket/x: list /: not found; check the bucket "
                                 "name and that it exists")


def test_mirror_downloads_once(bucket: str, tmp_path: Path, mini_mnist: Path) -> None:
    remote = GcsStore(f"gs://{bucket}/data/mnist")
    for file in mini_mnist.iterdir():
        remote.upload(file, file.name)

    local = mirror(f"gs://{bucket}/data/mnist", tmp_path / "cache")
    first = {p.name: p.stat().st_mtime_ns for p in local.iterdir()}
    again = mirror(f"gs://{bucket}/data/mnist", tmp_path / "cache")

    assert sorted(first) == sorted(p.name for p in mini_mnist.iterdir())
    assert {p.name: p.stat().st_mtime_ns for p in again.iterdir()} == first  # not downloaded twice
