"""What the distributed overlay tells its pods, run as local processes: one chief and two
workers sharing a KerasTuner oracle, with workers and the chief killed and replaced the
way Kubernetes replaces pods (same completion index). Hard timeouts everywhere."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest

from job.distributed import Placement, _resume_ongoing_trials, place
from job.config import JobConfig, Role
from job.errors import BadInputError
from job.gcs import GcsStore
from tests.conftest import free_port
from tests.processes import JobProcess
from tests.test_k8s import container, environment, objects

TRIALS = 4
BUDGET = {"JOB_MAX_TRIALS": str(TRIALS), "JOB_EPOCHS": "2", "JOB_FINAL_EPOCHS": "1",
          "JOB_SUBSET": "1200", "JOB_SEARCH_SUBSET": "0", "JOB_BATCH_SIZE": "32",
          "JOB_LEASE_SECONDS": "4"}
EPOCH_LINE = re.compile(r"^\s*\d+/\d+ - \d+s - ")  # Keras' line per finished epoch
RESTARTS = 3  # like backoffLimitPerIndex: a failed pod comes back with its index


class Cluster:
    """The Indexed Job's pods as processes: the rendered args and env, index filled in."""

    def __init__(self, tmp_path: Path, bucket: str, emulator: str, mnist_dir: Path,
                 worker_timeout: float):
        docs = objects("distributed")
        self.args = container(docs)["args"]
        manifest_env = environment(docs)
        self.workers = int(manifest_env["JOB_WORKERS"])
        assert manifest_env["JOB_ORACLE_HOST"].endswith("-0.image-recognition-job")
        self.env = {**manifest_env, **BUDGET,
                    "JOB_ORACLE_HOST": "127.0.0.1",  # the service's DNS name, mapped here
                    "JOB_ORACLE_BIND": "127.0.0.1",  # tests listen on loopback only
                    "JOB_ORACLE_PORT": str(free_port()),
                    "JOB_DATA": str(mnist_dir), "JOB_ARTIFACTS": f"gs://{bucket}/mnist",
                    "JOB_WORKER_TIMEOUT": str(worker_timeout),
                    "STORAGE_EMULATOR_HOST": emulator}
        self.run_id, self.tmp, self.bucket = manifest_env["JOB_RUN_ID"], tmp_path, bucket
        self.pods: dict[int, JobProcess] = {}
        self.history: list[JobProcess] = []
        self.gone: set[int] = set()  # indexes whose pods are never replaced (a lost node)

    def start(self, index: int) -> JobProcess:
        pod = JobProcess(*self.args, env={**self.env, "JOB_COMPLETION_INDEX": str(index),
                                          "JOB_WORK_DIR": str(self.tmp / f"pod-{index}")})
        self.pods[index] = pod
        self.history.append(pod)
        return pod

    def kill(self, index: int, replaced: bool = True) -> None:
        """SIGKILL; `replaced=False`: `finish` never restarts this index (its node is gone)."""
        if not replaced:
            self.gone.add(index)
        self.pods[index].send(signal.SIGKILL)
        self.pods[index].wait(timeout=30)

    def finish(self, timeout: float = 420) -> None:
        """Waits for the chief, replacing failed workers like backoffLimitPerIndex does."""
        deadline, restarts = time.monotonic() + timeout, 0
        while self.pods[0].process.poll() is None:
            assert time.monotonic() < deadline, f"chief still running after {timeout} s:\n" + "\n".join(
                f"--- process {i}:\n{pod.output[-1500:]}"
                for i, pod in enumerate(self.history))
            for index, pod in list(self.pods.items()):
                failed = pod.process.poll() not in (None, 0)
                if index and index not in self.gone and failed and restarts < RESTARTS:
                    restarts += 1
                    self.start(index)
            time.sleep(0.5)
        assert self.pods[0].wait() == 0, self.pods[0].output[-3000:]
        for pod in self.pods.values():
            pod.wait(timeout=120)

    def story(self) -> str:
        """What each process did, trial by trial: for failure messages."""
        keep = re.compile(r"^(trial |worker |could not |Epoch |\s*\d+/\d+ - |resuming|run |train:)")
        return "\n".join(f"--- process {i}:\n" + "\n".join(l for l in pod.lines if keep.match(l))
                         for i, pod in enumerate(self.history))

    def stop_all(self) -> None:
        for pod in self.history:
            pod.stop()

    def oracle_state(self) -> dict:
        stored = GcsStore(f"gs://{self.bucket}/mnist").read(f"{self.run_id}/tuner/search/oracle.json")
        assert stored is not None, "the chief published no oracle state"
        return json.loads(stored[0])

    def check_search(self) -> list[dict]:
        """Exactly TRIALS trials ended, each once, each with all its epochs; one final model."""
        store = GcsStore(f"gs://{self.bucket}/mnist")
        assert store.exists(f"{self.run_id}/manifest.json")
        assert store.exists(f"{self.run_id}/best_model.keras")
        assert sorted(self.oracle_state()["end_order"]) == [str(i) for i in range(TRIALS)]
        trials = json.loads(store.read(f"{self.run_id}/results.json")[0])["trials"]
        assert [(t["status"], t["epochs"]) for t in trials] == [("completed", 2)] * TRIALS, (
            [t["message"] for t in trials], self.story())
        return trials


@pytest.fixture
def cluster(tmp_path: Path, bucket: str, gcs_emulator: str, mnist_dir: Path, request):
    made = Cluster(tmp_path, bucket, gcs_emulator, mnist_dir, getattr(request, "param", 600.0))
    yield made
    made.stop_all()


@pytest.mark.parametrize("cluster", [15.0], indirect=True)
def test_workers_killed_mid_trial_lose_nothing(cluster: Cluster) -> None:
    chief, first, second = cluster.start(0), cluster.start(1), cluster.start(2)
    # Lines are read as they come, so each kill lands inside that worker's first trial.
    second.wait_for(r"^Epoch 1/2")
    cluster.kill(2, replaced=False)  # never comes back: after --worker-timeout its trial moves on
    first.wait_for(r"^Epoch 2/2")  # its first trial's epoch 1 is backed up and synced
    cluster.kill(1)
    restarted = cluster.start(1)

    cluster.finish()

    cluster.check_search()
    epochs = [line for line in restarted.lines if line.startswith("Epoch ")]
    assert epochs[0] == "Epoch 2/2", "the restarted worker did not resume its trial"
    assert "silent for 15 s" in chief.output, cluster.story()
    assert "waiting for the oracle" not in chief.output


def test_a_killed_chief_is_replaced_and_the_search_resumes(cluster: Cluster) -> None:
    chief = cluster.start(0)
    for index in range(1, cluster.workers + 1):
        cluster.start(index)
    chief.wait_for(r"^trial 1/4 done")
    cluster.kill(0)
    replacement = cluster.start(0)

    cluster.finish()

    cluster.check_search()
    assert "resuming from" in replacement.output
    trained = sum(1 for pod in cluster.history for line in pod.lines if EPOCH_LINE.match(line))
    # every trial's 2 epochs, 1 final epoch, and at most one redone epoch per replaced pod
    assert trained <= TRIALS * 2 + 1 + len(cluster.history) - 3, cluster.story()
    # the replacement chief knows who trains what: no trial is handed to a second worker
    reports = sorted(line for pod in cluster.history for line in pod.lines
                     if re.match(r"trial \d+: reported", line))
    assert reports == [f"trial {n}: reported to the chief" for n in range(1, TRIALS + 1)], (
        cluster.story())


def test_a_chief_restarted_just_after_a_trial_ended_hands_out_a_new_one(tmp_path: Path) -> None:
    """KerasTuner's end_trial saves the oracle while the ended trial is still listed as its
    worker's: a replacement chief must not give that trial back (the worker would train it
    again, and forever, since a second end is dropped)."""
    import keras_tuner

    def oracle() -> keras_tuner.Oracle:
        space = keras_tuner.HyperParameters()
        space.Int("units", 1, 1000)
        made = keras_tuner.oracles.RandomSearchOracle(objective="val_accuracy", max_trials=3,
                                                      hyperparameters=space, seed=1)
        made._set_project_dir(str(tmp_path), "search")
        return made

    chief = oracle()
    first = chief.create_trial("worker-1")
    chief.update_trial(first.trial_id, {"val_accuracy": 0.9})
    first.status = "COMPLETED"
    chief.end_trial(first)
    saved = json.loads((tmp_path / "search" / "oracle.json").read_text())
    assert saved["ongoing_trials"] == {"worker-1": first.trial_id}  # KerasTuner's own save

    replacement = oracle()
    _resume_ongoing_trials(replacement)

    assert replacement._retry_queue == [] and replacement.ongoing_trials == {}
    assert replacement.create_trial("worker-1").trial_id != first.trial_id


def test_roles_come_from_the_completion_index() -> None:
    config = JobConfig(run_id="r", oracle_host="job-0.svc")
    assert place(config, {}) == Placement(Role.STANDALONE, 0, "tuner0")
    assert place(config, {"JOB_COMPLETION_INDEX": "0"}) == Placement(Role.CHIEF, 0, "chief")
    assert place(config, {"JOB_COMPLETION_INDEX": "3"}).tuner_id == "worker-3"
    assert place(config, {"JOB_COMPLETION_INDEX": "3"}).scope == "worker-3"
    with pytest.raises(BadInputError, match="a worker needs --oracle-host"):
        place(JobConfig(run_id="r"), {"JOB_COMPLETION_INDEX": "1"})
