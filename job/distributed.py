"""A search spread over processes (pods) that share one KerasTuner oracle.

Roles come from the environment: a Kubernetes Indexed Job sets
JOB_COMPLETION_INDEX; index 0 is the chief (it serves the oracle, then retrains,
evaluates and visualizes), indexes 1..N are workers (they run trials). A
worker's tuner id is fixed by its index, so a restarted pod asks for a trial
and gets its own unfinished one back.

What we do instead of KerasTuner's `start_server` (which waits forever for a
worker that died, keras-team/keras-tuner#915): our serve loop hands the trial
of a worker silent for `--worker-timeout` to the next worker that asks, stops
when every trial has ended, and keeps answering "stop" to late workers.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from typing import Any

from job.config import JobConfig, Role
from job.errors import BadInputError, JobError
from job.preemption import StopSignal

INDEX_VARIABLE = "JOB_COMPLETION_INDEX"  # set by Kubernetes for Indexed Jobs
IDLE_PAUSE = 1.0  # seconds a worker waits before asking again for a trial


@dataclass(frozen=True)
class Placement:
    role: Role  # STANDALONE, CHIEF or WORKER: never AUTO
    index: int
    tuner_id: str  # KerasTuner's id; the chief's must contain "chief"

    @property
    def scope(self) -> str:
        """This process's own state folder in the bucket."""
        return {Role.STANDALONE: "main", Role.CHIEF: "chief"}.get(self.role, f"worker-{self.index}")


def place(config: JobConfig, environ: dict[str, str] | os._Environ = os.environ) -> Placement:
    """The role of this process, from --role and the completion index."""
    raw_index = environ.get(INDEX_VARIABLE)
    if config.role == Role.STANDALONE or (config.role == Role.AUTO and raw_index is None):
        return Placement(Role.STANDALONE, 0, "tuner0")
    if raw_index is None or not raw_index.isdigit():
        raise BadInputError(f"--role {config.role.value}: expected {INDEX_VARIABLE} "
                            f"(0 = chief, 1..N = workers), found {raw_index!r}")
    index = int(raw_index)
    role = config.role if config.role != Role.AUTO else (Role.CHIEF if index == 0 else Role.WORKER)
    if role == Role.WORKER and not config.oracle_host:
        raise BadInputError("a worker needs --oracle-host: the chief's address, e.g. "
                            "<job>-0.<service> in an Indexed Job")
    return Placement(role, index, "chief" if role == Role.CHIEF else f"worker-{index}")


def export_for_keras_tuner(placement: Placement, config: JobConfig) -> None:
    """KerasTuner reads its distributed settings from the environment."""
    names = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
    if placement.role == Role.STANDALONE:
        for name in names:
            os.environ.pop(name, None)
        return
    address = config.oracle_bind if placement.role == Role.CHIEF else config.oracle_host
    os.environ.update(zip(names, (placement.tuner_id, str(address), str(config.oracle_port))))


def wait_for_chief(config: JobConfig, stop: StopSignal) -> None:
    """A bounded, logged wait until the chief's oracle port accepts connections."""
    deadline = time.monotonic() + config.worker_timeout
    attempt = 0
    while True:
        stop.raise_if_set()
        try:
            socket.create_connection((config.oracle_host, config.oracle_port), timeout=5).close()
            return
        except OSError as error:
            attempt += 1
            if time.monotonic() > deadline:
                raise JobError(f"no oracle at {config.oracle_host}:{config.oracle_port} after "
                               f"{config.worker_timeout:.0f} s ({error}); is the chief running?") from None
            print(f"waiting for the oracle at {config.oracle_host}:{config.oracle_port} "
                  f"(attempt {attempt}: {error})", file=sys.stderr, flush=True)
            time.sleep(min(10.0, 0.5 * attempt))


class OracleServer:
    """Serves `oracle` over gRPC to the workers, and keeps an eye on them."""

    def __init__(self, oracle: Any, bind: str, port: int, worker_timeout: float):
        import grpc
        from keras_tuner.src import protos

        self.oracle, self.worker_timeout = oracle, worker_timeout
        self.servicer = _WatchedServicer(oracle)
        # Several threads: a worker told to wait must not hold up the others' reports;
        # the oracle's own lock (keras_tuner.synchronized) serializes the state changes.
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        protos.get_service_grpc().add_OracleServicer_to_server(self.servicer, self.server)
        if not self.server.add_insecure_port(f"{bind}:{port}"):
            raise BadInputError(f"cannot listen on {bind}:{port}; is the port in use?")

    def __enter__(self) -> OracleServer:
        _resume_ongoing_trials(self.oracle)
        self.servicer.heard_now(self.oracle.ongoing_trials)
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=2).wait(5)

    def wait_for_search(self, stop: StopSignal, poll_seconds: float = 1.0) -> None:
        """Returns when every trial has ended; a silent worker's trial goes to another."""
        while not _search_finished(self.oracle, self.servicer):
            stop.raise_if_set()
            if self.servicer.fatal:
                raise JobError(f"search stopped: {self.servicer.fatal}; see trials.csv")
            lost = _reassign_silent(self.oracle, self.servicer.heard, self.worker_timeout)
            for tuner_id, trial_id in lost:
                print(f"worker {tuner_id} silent for {self.worker_timeout:.0f} s: its trial "
                      f"{int(trial_id) + 1} goes to the next worker that asks", flush=True)
            time.sleep(poll_seconds)


def _servicer_base() -> type:
    from keras_tuner.src.distribute.oracle_chief import OracleServicer

    return OracleServicer


class _WatchedServicer(_servicer_base()):  # type: ignore[misc]
    """KerasTuner's servicer, noting when each worker was last heard from."""

    def __init__(self, oracle: Any):
        super().__init__(oracle)
        self.heard: dict[str, float] = {}  # tuner id -> time.monotonic()
        self.fatal: str | None = None  # why the search cannot go on
        self._lock = threading.Lock()

    def heard_now(self, tuner_ids: Any) -> None:
        with self._lock:
            self.heard.update({tuner_id: time.monotonic() for tuner_id in tuner_ids})

    def _owner(self, trial_id: str) -> list[str]:
        return [t for t, trial in self.oracle.ongoing_trials.items() if trial.trial_id == trial_id]

    def CreateTrial(self, request: Any, context: Any) -> Any:
        """KerasTuner says "stop" as soon as every trial has *started*; a worker that
        stops then could not take over the trial of a worker that dies later. Until
        every trial has *ended*, we answer "idle" (ask again) after a pause."""
        self.heard_now([request.tuner_id])
        response = super().CreateTrial(request, context)
        if response.trial.trial_id.isdigit() and not _is_stop(response.trial):
            print(f"trial {int(response.trial.trial_id) + 1} runs on {request.tuner_id}", flush=True)
        if _is_stop(response.trial) and not _search_finished(self.oracle, self):
            time.sleep(IDLE_PAUSE)
            return self._response("CreateTrialResponse", trial=_idle_trial(self.oracle))
        return response

    def UpdateTrial(self, request: Any, context: Any) -> Any:
        self.heard_now(self._owner(request.trial_id))
        self._refuse_unknown(request.trial_id, context)
        if _has_ended(self.oracle, request.trial_id):  # a late report from a reassigned trial
            return self._response("UpdateTrialResponse", trial=self.oracle.get_trial(
                request.trial_id).to_proto())
        return self._guarded(super().UpdateTrial, request, context)

    def EndTrial(self, request: Any, context: Any) -> Any:
        """Ends a trial once: when a worker presumed lost and its successor both finish
        the same trial, the second report is dropped instead of counted twice."""
        self.heard_now(self._owner(request.trial.trial_id))
        self._refuse_unknown(request.trial.trial_id, context)
        if _has_ended(self.oracle, request.trial.trial_id):
            return self._response("EndTrialResponse")
        return self._guarded(super().EndTrial, request, context)

    def _refuse_unknown(self, trial_id: str, context: Any) -> None:
        """A trial this oracle never saved (it was created just before a chief restart):
        the worker gets an error, is restarted, and asks for a trial again."""
        import grpc

        if trial_id not in self.oracle.trials:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown trial {trial_id}: ask again")

    def _guarded(self, method: Any, request: Any, context: Any) -> Any:
        """keras_tuner.synchronized keeps its lock when the oracle raises, which would
        hang every later call: release it, and remember a failed search."""
        import grpc

        try:
            return method(request, context)
        except Exception as error:  # noqa: BLE001 - reported to the worker and the chief
            _release_oracle_lock(self.oracle)
            if isinstance(error, RuntimeError):  # KerasTuner: too many failed trials in a row
                self.fatal = str(error).strip().splitlines()[0]
            context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")

    @staticmethod
    def _response(name: str, **fields: Any) -> Any:
        from keras_tuner.src import protos

        return getattr(protos.get_service(), name)(**fields)


def _is_stop(trial_proto: Any) -> bool:
    from keras_tuner.src.engine.trial import Trial, TrialStatus

    return Trial.from_proto(trial_proto).status == TrialStatus.STOPPED


def _idle_trial(oracle: Any) -> Any:
    from keras_tuner.src.engine.trial import Trial, TrialStatus

    return Trial(oracle.get_space(), status=TrialStatus.IDLE).to_proto()


def _release_oracle_lock(oracle: Any) -> None:
    from keras_tuner.src.engine import oracle as oracle_module

    if oracle_module.THREADS[oracle] == threading.current_thread().name:
        oracle_module.THREADS[oracle] = None
        oracle_module.LOCKS[oracle].release()


def _synchronized(function: Any) -> Any:
    from keras_tuner import synchronized

    return synchronized(function)


@_synchronized
def _resume_ongoing_trials(oracle: Any) -> None:
    """Reloads a restarted chief's oracle, keeping each running trial with its worker.

    KerasTuner reloads an oracle only together with its tuner's own file, which a
    chief never writes (it runs no trials), so it would start the search over. And
    its reload sends the trials that were running to the retry queue, while after a
    chief restart their workers are still training them (or resume them from backups).
    """
    import json

    from job.tuning import forget_ended

    state_file = os.path.join(oracle._project_dir, "oracle.json")
    if not os.path.exists(state_file):
        return
    if not oracle.trials:
        oracle.reload()
    with open(state_file) as stream:
        ongoing = json.load(stream).get("ongoing_trials", {})
    for tuner_id, trial_id in ongoing.items():
        if trial_id in oracle._retry_queue and trial_id in oracle.trials:
            oracle._retry_queue.remove(trial_id)
            oracle.ongoing_trials[tuner_id] = oracle.trials[trial_id]
    forget_ended(oracle)


@_synchronized
def _reassign_silent(oracle: Any, heard: dict[str, float], timeout: float) -> list[tuple[str, str]]:
    """Moves the trials of workers silent for `timeout` s to KerasTuner's retry queue."""
    now = time.monotonic()
    lost = [(tuner_id, trial.trial_id) for tuner_id, trial in oracle.ongoing_trials.items()
            if now - heard.get(tuner_id, now) > timeout]
    for tuner_id, trial_id in lost:
        del oracle.ongoing_trials[tuner_id]
        oracle._retry_queue.append(trial_id)
        oracle.tuner_ids.discard(tuner_id)
        heard.pop(tuner_id, None)
    if lost:
        oracle.save()
    return lost


@_synchronized
def _has_ended(oracle: Any, trial_id: str) -> bool:
    return trial_id in oracle.end_order


@_synchronized
def _search_finished(oracle: Any, servicer: Any) -> bool:
    if oracle.ongoing_trials or oracle._retry_queue:
        return False
    if oracle.max_trials is not None:
        return len(oracle.end_order) >= oracle.max_trials
    return servicer.stop_triggered  # hyperband: the oracle said stop to a worker
