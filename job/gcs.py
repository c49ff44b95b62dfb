"""The `gs://` side of job.storage, through google-cloud-storage.

We use the library for what it does well (resumable uploads, crc32c checks, its
retry predicate) and only add: backoff and a deadline for every call (including
the ones it leaves unretried), timeouts so a stalled response is retried, a
second attempt on checksum mismatches, and one-line errors.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from job.errors import BadInputError, StorageError
from job.storage import PreconditionFailed, Store, StoredObject, temp_beside

T = TypeVar("T")
TIMEOUT = (10, 60)  # seconds: connect, read — a stalled response is retried, not waited on
DEADLINE = 300.0  # seconds a single operation may keep retrying
ATTEMPTS = 4  # whole-operation attempts for failures the library does not retry (checksums)


class GcsStore(Store):
    """`gs://bucket/prefix`, through google-cloud-storage (honours STORAGE_EMULATOR_HOST)."""

    def __init__(self, url: str, client: Any = None):
        bucket, _, prefix = url.removeprefix("gs://").partition("/")
        if not bucket:
            raise BadInputError(f"{url}: expected gs://BUCKET/PREFIX")
        self.url = url.rstrip("/")
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._client = client
        self._bucket_name = bucket

    @property
    def bucket(self) -> Any:
        if self._client is None:
            self._client = _client(self.url)
        return self._client.bucket(self._bucket_name)

    def list(self, prefix: str = "") -> list[StoredObject]:
        blobs = self._call(lambda r: list(self.bucket.list_blobs(
            prefix=self.prefix + prefix, retry=r, timeout=TIMEOUT)), f"list {prefix or '/'}")
        return [StoredObject(b.name[len(self.prefix):], int(b.size or 0), int(b.generation or 0),
                             base64.b64decode(b.md5_hash).hex() if b.md5_hash else None)
                for b in blobs]

    def children(self, prefix: str = "") -> list[str]:
        def names(retry: Any) -> list[str]:
            pages = self.bucket.list_blobs(prefix=self.prefix + prefix, delimiter="/",
                                           retry=retry, timeout=TIMEOUT)
            for _ in pages:  # the prefixes are only known once the pages were read
                pass
            return sorted(p[len(self.prefix + prefix):].rstrip("/") for p in pages.prefixes)

        return self._call(names, f"list {prefix or '/'}")

    def upload(self, path: Path, key: str) -> None:
        blob = self.bucket.blob(self.prefix + key)
        self._call(lambda r: blob.upload_from_filename(str(path), checksum="crc32c", retry=r,
                                                       timeout=TIMEOUT), f"upload {key}")

    def download(self, key: str, path: Path) -> None:
        blob = self.bucket.blob(self.prefix + key)
        path.parent.mkdir(parents=True, exist_ok=True)

        def fetch(retry: Any) -> None:
            with temp_beside(path) as temp:
                blob.download_to_filename(str(temp), checksum="crc32c", retry=retry, timeout=TIMEOUT)
                os.replace(temp, path)

        self._call(fetch, f"download {key}")

    def read(self, key: str) -> tuple[bytes, int] | None:
        from google.api_core.exceptions import NotFound

        def fetch(retry: Any) -> tuple[bytes, int] | None:
            blob = self.bucket.get_blob(self.prefix + key, retry=retry, timeout=TIMEOUT)
            if blob is None:
                return None
            generation = int(blob.generation)  # the download may not report it again
            try:
                data = blob.download_as_bytes(if_generation_match=generation, retry=retry,
                                              timeout=TIMEOUT, checksum="crc32c")
            except NotFound:  # replaced between the two calls: read it again
                return fetch(retry)
            return data, generation

        return self._call(fetch, f"read {key}")

    def write(self, key: str, data: bytes, if_generation_match: int | None = None) -> int:
        blob = self.bucket.blob(self.prefix + key)
        self._call(lambda r: blob.upload_from_string(data, if_generation_match=if_generation_match,
                                                     checksum="crc32c", retry=r, timeout=TIMEOUT),
                   f"write {key}")
        return int(blob.generation or 0)

    def delete(self, keys: list[str]) -> None:
        from google.api_core.exceptions import NotFound

        for key in keys:
            try:
                self._call(lambda r: self.bucket.blob(self.prefix + key).delete(retry=r, timeout=TIMEOUT),
                           f"delete {key}")
            except StorageError as error:
                if not isinstance(error.__cause__, NotFound):
                    raise

    def _call(self, action: Callable[[Any], T], what: str) -> T:
        return call_with_retries(action, f"{self.url}: {what}")


def call_with_retries(action: Callable[[Any], T], what: str) -> T:
    """Runs `action(retry_policy)`; the library retries transient errors inside, we
    retry the whole operation on checksum mismatches, and map failures to one line."""
    from google.api_core import exceptions as api
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud.storage.exceptions import DataCorruption

    for attempt in range(1, ATTEMPTS + 1):
        try:
            return action(retry_policy())
        except DataCorruption:
            if attempt == ATTEMPTS:
                raise StorageError(f"{what}: checksum mismatch {ATTEMPTS} times") from None
            time.sleep(0.5 * 2**attempt)
        except api.PreconditionFailed as error:
            raise PreconditionFailed(f"{what}: changed by another writer") from error
        except api.NotFound as error:
            raise StorageError(f"{what}: not found; check the bucket name and that it "
                               "exists") from error
        except api.Forbidden as error:
            raise StorageError(f"{what}: permission denied ({_reason(error)}); grant this "
                               "identity roles/storage.objectUser on the bucket") from error
        except DefaultCredentialsError:
            raise StorageError(f"{what}: no Google credentials; set GOOGLE_APPLICATION_CREDENTIALS "
                               "or use Workload Identity on GKE") from None
        except Exception as error:  # noqa: BLE001 - retries are exhausted: say so in one line
            if _is_transient(error):
                raise StorageError(f"{what}: still failing after retries "
                                   f"({type(error).__name__}: {_reason(error)})") from error
            raise
    raise AssertionError("unreachable")


def retry_policy() -> Any:
    """The library's retry predicate (429, 5xx, connection errors, timeouts) with
    exponential backoff from 0.2 s to 8 s, for at most DEADLINE seconds."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_delay(initial=0.2, maximum=8.0, multiplier=2.0).with_timeout(DEADLINE)


def _is_transient(error: Exception) -> bool:
    from google.cloud.storage.retry import _should_retry

    return _should_retry(error) or "RetryError" in type(error).__name__


def _reason(error: Exception) -> str:
    text = str(getattr(error, "message", "") or error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def _client(url: str) -> Any:
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import storage

    try:
        return storage.Client()
    except DefaultCredentialsError:
        raise StorageError(f"{url}: no Google credentials; set GOOGLE_APPLICATION_CREDENTIALS "
                           "or use Workload Identity on GKE") from None
