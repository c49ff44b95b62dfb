"""Running the pipeline against an artifact store: where the run lives, what is synced when.

With local `--artifacts` (and no `--work-dir`) the run directory *is* the
artifact directory. Otherwise the run works in `WORK_DIR/<run-id>` and is synced
to the store: its snapshot after every epoch, trial and step, the finished
artifacts at the end, `manifest.json` last. On SIGTERM or an error the latest
state is synced before the process exits.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from job import distributed, pipeline, rundir, storage
from job.config import JobConfig, Role, work_root
from job.errors import BadInputError, JobError, Preempted, RunConflictError
from job.lease import Lease
from job.preemption import StopSignal
from job.rundir import RunDir
from job.sync import RunSync

STEPS = {"train": pipeline.train, "evaluate": pipeline.evaluate, "visualize": pipeline.draw}


class Session:
    """One run's local directory, its store (if synced) and its status."""

    def __init__(self, artifacts: str, run_id: str, stop: StopSignal, work_dir: str | None = None,
                 lease_seconds: float = 60.0, scope: str = "main", reports: bool = True):
        """`scope` names this process's state in the store (a distributed worker's is its
        own); `reports` is False for workers: only the chief writes status and artifacts."""
        self.stop, self.reports = stop, reports
        synced = storage.is_remote(artifacts) or work_dir is not None
        # The work dir of a synced run is keyed by its store too: two buckets may each
        # hold a run of the same name.
        store_key = hashlib.sha256(artifacts.encode()).hexdigest()[:12]
        self.run = RunDir(work_root(work_dir) / store_key / run_id if synced
                          else Path(artifacts) / run_id)
        self.sync = (RunSync(storage.open_store(artifacts), run_id, self.run, scope=scope,
                             lease_seconds=lease_seconds) if synced else None)
        # A local run has a lease too, beside its folder: two processes never write one run.
        self.lease = (self.sync.lease if self.sync else
                      Lease(storage.LocalStore(Path(artifacts)), f"{run_id}.lease", lease_seconds))
        self.status: dict[str, Any] = {"run_id": run_id}

    @property
    def where(self) -> str:
        return self.sync.url if self.sync else str(self.run.root)

    def is_complete(self) -> bool:
        return self.sync.is_complete() if self.sync else pipeline.is_complete(self.run)

    def open(self, overwrite: bool = False) -> None:
        """Takes the run (lease) and brings the local directory up to the stored state."""
        if self.sync is None:
            self.lease.acquire()
            if self.run.exists(rundir.STATUS) and not overwrite:
                self.status.update(self.run.read_json(rundir.STATUS))
            return
        restored = self.sync.open()
        previous = self.sync.store.read(self.sync.base + rundir.STATUS)
        if previous is not None and not overwrite:
            self.status.update(json.loads(previous[0]))
        if overwrite:
            self.sync.wipe()
            self.run.clear()
        elif restored:
            print(f"resuming from {self.sync.url}", flush=True)
        elif self.sync.is_complete():
            self._download_published()
        else:
            self.run.clear()  # nothing stored: an old local copy is not this run's state

    def wire(self, context: pipeline.Context) -> None:
        """Hooks the sync points into the pipeline."""
        context.after_epoch = self.checkpoint
        context.after_trial = self.after_trial
        context.on_step = self.on_step

    def checkpoint(self) -> None:
        """Syncs the resumable state (after every epoch's backup, trial and step)."""
        if self.sync is not None:
            self.sync.snapshot()

    def report(self, state: str, **fields: Any) -> None:
        """Updates status.json (what `job runs` shows), here and in the store."""
        if not self.reports:
            return
        self.status.update(fields, state=state,
                           updated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        if not self.run.exists(rundir.METRICS):  # removed by a rerun step: no longer true
            self.status.pop("test_accuracy", None)
        self.run.root.mkdir(parents=True, exist_ok=True)
        self.run.write_json(rundir.STATUS, self.status)
        if self.sync is not None:
            self.sync.push(rundir.STATUS)

    def after_trial(self, summary: dict[str, Any]) -> None:
        self.checkpoint()
        self.report("running", **summary)

    def on_step(self, step: str) -> None:
        self.stop.raise_if_set()
        self.checkpoint()
        self.report("running", step=step)

    def complete(self) -> None:
        metrics = self.run.read_json(rundir.METRICS) if self.run.exists(rundir.METRICS) else {}
        self.report("complete", step="done", test_accuracy=metrics.get("test_accuracy"))
        if self.sync is not None:
            uploaded = self.sync.publish(before_each=self.stop.raise_if_set)
            print(f"published to {self.sync.url} ({uploaded} new or changed files)", flush=True)

    @contextmanager
    def active(self) -> Iterator[None]:
        """Saves the state and the reason on the way out, whatever ends the run."""
        try:
            yield
        except Preempted:
            self._save_on_exit("preempted")
            raise
        except (RunConflictError, BadInputError):
            raise  # not this run's failure (another writer, bad options or data): state unchanged
        except KeyboardInterrupt:
            self._save_on_exit("interrupted")
            raise
        except Exception as error:
            self._save_on_exit("failed", error=str(error).strip().splitlines()[0][:300])
            raise
        finally:
            # A local run stopped before its folder existed (bad data, say) leaves no lease.
            self.lease.release(discard=self.sync is None and not self.run.root.exists())

    def _save_on_exit(self, state: str, **fields: Any) -> None:
        try:  # the status first: it is small, and the snapshot may be cut by the deadline
            self.report(state, **fields)
            self.checkpoint()
        except JobError as error:  # the previous synced state is still consistent
            print(f"could not sync the final state: {error}", file=sys.stderr, flush=True)

    def _download_published(self) -> None:
        """A complete run's plain files, for rerunning one of its steps."""
        stored = self.sync.store.read(self.sync.base + rundir.MANIFEST)
        for name in json.loads(stored[0])["files"] if stored else {}:
            self.sync.store.download(self.sync.base + name, self.run.path(name))


def execute(config: JobConfig, stop: StopSignal, only_search: bool = False) -> None:
    """`job run` / `job search`: a new run, or the resumption of one; in a distributed
    search, the part of this process (chief or worker)."""
    placement = distributed.place(config)
    session = Session(config.artifacts, config.run_id, stop, config.work_dir, config.lease_seconds,
                      scope=placement.scope, reports=placement.role != Role.WORKER)
    if session.is_complete() and not config.overwrite:
        print(f"run {config.run_id!r} is already complete in {session.where}; "
              "pass --overwrite to redo it")
        return
    print(f"run {config.run_id!r} in {session.where} ({placement.role.value})", flush=True)
    session.open(config.overwrite)
    session.status["max_trials"] = config.max_trials
    with session.active():
        context = pipeline.start(config, session.run, stop, placement)
        session.wire(context)
        with context.resources:
            if only_search or placement.role == Role.WORKER:
                context.on_step("search")
                if placement.role != Role.WORKER:
                    pipeline.invalidate_after(context.run, "search")
                pipeline.search(context)
                session.checkpoint()
                session.report("searched")
                return
            pipeline.run_all(context)
            session.checkpoint()
            if pipeline.finish(context):
                session.complete()


def execute_step(artifacts: str, run_id: str, step: str, stop: StopSignal,
                 work_dir: str | None = None, **overrides: Any) -> None:
    """`job train|evaluate|visualize` on an existing run, local or in a bucket."""
    session = Session(artifacts, run_id, stop, work_dir)
    session.open()
    with session.active():
        context = pipeline.reopen(session.run, **overrides)
        context.stop = stop
        session.wire(context)
        context.on_step(step)
        pipeline.invalidate_after(context.run, step)
        STEPS[step](context)
        session.checkpoint()
        if pipeline.finish(context):
            session.complete()
        else:
            session.report("incomplete", step=f"{step} done")
