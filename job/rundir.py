"""The run directory: the named files through which the steps talk to each other.

Every write goes to a temporary name first and is renamed into place, so a
killed process never leaves a half-written artifact behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from job.errors import BadInputError

CONFIG = "config.json"
TUNER = "tuner"
TRIALS_CSV = "trials.csv"
RESULTS = "results.json"
CHECKPOINTS = "checkpoints"  # the final training's ModelCheckpoint and epoch backup
BEST_MODEL = "best_model.keras"
SAVED_MODEL = "saved_model"
HISTORY = "history.json"
METRICS = "metrics.json"
FILTERS_PNG = "filters.png"
HISTORY_PNG = "history.png"
CONFUSION_PNG = "confusion_matrix.png"
MANIFEST = "manifest.json"  # written last: its presence marks a complete run
STATUS = "status.json"  # what `job runs` shows; changes after the manifest, so not in it
TEMP_MARK = ".partial"  # in the names of files still being written


class RunDir:
    """A run's local directory, `ARTIFACTS/<run-id>` or `WORK_DIR/<run-id>`."""

    def __init__(self, path: str | Path):
        self.root = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    def path(self, name: str) -> Path:
        return self.root / name

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def require(self, name: str, made_by: str) -> Path:
        """The path of `name`, or a one-line error saying which step makes it."""
        path = self.path(name)
        if not path.exists():
            raise BadInputError(f"{path}: not found; run `job {made_by}` for this run first")
        return path

    def read_json(self, name: str) -> Any:
        return json.loads(self.path(name).read_text())

    def write_json(self, name: str, data: Any) -> Path:
        return self.write_text(name, json.dumps(data, indent=2, sort_keys=False) + "\n")

    def write_text(self, name: str, text: str) -> Path:
        with self.atomic(name) as temp:
            temp.write_text(text)
        return self.path(name)

    @contextlib.contextmanager
    def atomic(self, name: str) -> Iterator[Path]:
        """Yields a temporary path beside `name` (same suffix); renames it on success.

        Works for files and directories (e.g. a SavedModel export).
        """
        final = self.path(name)
        final.parent.mkdir(parents=True, exist_ok=True)
        suffix = "".join(final.suffixes)
        handle, temp_name = tempfile.mkstemp(prefix=f"{final.name.removesuffix(suffix)}{TEMP_MARK}-",
                                             suffix=suffix, dir=final.parent)
        os.close(handle)
        temp = Path(temp_name)
        temp.unlink()  # the writer creates it, as a file or a directory
        try:
            yield temp
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)
            os.replace(temp, final)
        finally:
            _remove(temp)

    def clear(self) -> None:
        """Deletes everything in the run directory (`--overwrite`)."""
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)

    def clear_entry(self, name: str) -> None:
        """Deletes one file or folder of the run, if present."""
        _remove(self.path(name))

    def files(self) -> list[str]:
        """Every finished file, as sorted POSIX paths relative to the root."""
        found = []
        for path in self.root.rglob("*"):
            if path.is_file() and TEMP_MARK not in path.name:
                found.append(path.relative_to(self.root).as_posix())
        return sorted(found)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
