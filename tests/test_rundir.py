"""The run directory's atomic writes and the manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

from job import manifest
from job.rundir import RunDir


def test_a_failed_write_leaves_the_old_file_and_no_partial(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.write_json("results.json", {"v": 1})

    with pytest.raises(RuntimeError):
        with run.atomic("results.json") as temp:
            temp.write_text('{"v": 2, "half')
            raise RuntimeError("killed mid-write")

    assert run.read_json("results.json") == {"v": 1}
    assert run.files() == ["results.json"]


def test_atomic_directories_replace_the_old_one(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    for version in ("old", "new"):
        with run.atomic("saved_model") as temp:
            temp.mkdir()
            (temp / "version.txt").write_text(version)
    assert (run.path("saved_model") / "version.txt").read_text() == "new"
    assert run.files() == ["saved_model/version.txt"]


def test_manifest_lists_every_file_and_detects_changes(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.write_text("a.txt", "alpha")
    run.write_text("sub/b.txt", "beta")

    written = manifest.write(run, {"train-images-idx3-ubyte": "abc"})

    assert set(written["files"]) == {"a.txt", "sub/b.txt"}
    assert written["files"]["a.txt"]["size"] == 5
    assert {"keras", "keras-tuner"} <= set(written["versions"])
    assert manifest.mismatches(run.root, written) == []
    run.write_text("a.txt", "ALPHA")
    (run.path("sub/b.txt")).unlink()
    assert manifest.mismatches(run.root, written) == ["a.txt: content differs from the manifest",
                                                     "sub/b.txt: missing"]
