"""k8s/ as a user applies it: every overlay renders with `kubectl kustomize`, passes the
Kubernetes API schemas, and agrees with the job it runs (options, exit codes, grace period).

No cluster runs here, so the rules the API server and the Job controller would enforce
beyond the schemas are asserted on the rendered objects.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from job.cli import app
from job.errors import ExitCode

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
TARGETS = {"base": K8S / "base"} | {
    p.name: p for p in sorted((K8S / "overlays").iterdir()) if (p / "kustomization.yaml").is_file()}
KUBERNETES_VERSIONS = ["1.31.0", "1.33.0"]  # successPolicy: beta in 1.31, GA in 1.33
GPU_TARGETS = {"gke-gpu", "distributed"}
REQUIRED_OPTIONS = {"JOB_DATA", "JOB_ARTIFACTS", "JOB_RUN_ID", "JOB_GRACE_SECONDS"}
SYNC_MARGIN = 5  # seconds after the job's own grace for the last upload, before SIGKILL
SPOT_NOTICE = 15  # seconds GKE gives the pods of a reclaimed spot node
GPU = "nvidia.com/gpu"


def tool(name: str) -> str:
    """A command from PATH, else from this virtualenv (where .ci/run pip-installs kubectl)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is not installed: run .ci/run's install steps")
    return found


@functools.cache
def render(target: Path) -> str:
    result = subprocess.run([tool("kubectl"), "kustomize", str(target)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def objects(target: str | Path) -> list[dict[str, Any]]:
    path = TARGETS[target] if isinstance(target, str) else target
    return [doc for doc in yaml.safe_load_all(render(path)) if doc]


def the(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return the(docs, "Job")["spec"]["template"]["spec"]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [job] = pod(docs)["containers"]
    return job


def environment(docs: list[dict[str, Any]]) -> dict[str, str]:
    """What the job container sees: its ConfigMaps (envFrom), then its own env entries."""
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container(docs).get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in maps, f"envFrom names ConfigMap {name!r}, which the overlay does not create"
        env |= maps[name]
    env |= {item["name"]: item["value"] for item in container(docs).get("env", [])}
    return env


def run_command() -> Any:
    return typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]


def run_options() -> set[str]:
    """The environment variables `job run` reads, from the CLI itself."""
    return {param.envvar for param in run_command().params if param.envvar}


def parse_run(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """`job run`'s options as its own parser reads them from `env`; nothing runs."""
    for name in run_options():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        if name.startswith("JOB_"):
            monkeypatch.setenv(name, value)
    return run_command().make_context("run", []).params


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_renders_to_valid_kubernetes_objects(target: str, version: str) -> None:
    result = subprocess.run([tool("kubernetes-validate"), "--strict", "-k", version, "-"],
                            input=render(TARGETS[target]), capture_output=True, text=True,
                            timeout=120)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "passed for resource job/image-recognition-job" in report


@pytest.mark.parametrize("target", TARGETS)
def test_a_job_that_runs_job_run_and_is_never_restarted_in_place(target: str) -> None:
    docs = objects(target)
    job, spec, main = the(docs, "Job")["spec"], pod(docs), container(docs)
    assert spec["restartPolicy"] == "Never"  # so every exit reaches podFailurePolicy
    assert main["args"] == ["run"] and "command" not in main  # the image's entrypoint is `job`
    assert spec["serviceAccountName"] == the(docs, "ServiceAccount")["metadata"]["name"]
    assert job["ttlSecondsAfterFinished"] > 0 and job["activeDeadlineSeconds"] > 0
    assert ":" in main["image"] and not main["image"].endswith(":latest"), main["image"]
    assert {"cpu", "memory"} <= set(main["resources"]["requests"])
    assert {"cpu", "memory"} <= set(main["resources"]["limits"])


@pytest.mark.parametrize("target", TARGETS)
def test_failure_policy_speaks_the_jobs_exit_codes(target: str) -> None:
    docs = objects(target)
    job, names = the(docs, "Job")["spec"], {c["name"] for c in pod(docs)["containers"]}
    rules = job["podFailurePolicy"]["rules"]
    # Bad input fails the Job at once; the rule comes first so nothing else can retry it.
    assert rules[0]["action"] == "FailJob"
    assert rules[0]["onExitCodes"] == {"containerName": "job", "operator": "In",
                                       "values": [ExitCode.BAD_INPUT]}
    ignored_conditions = [c["type"] for r in rules if r["action"] == "Ignore"
                          for c in r.get("onPodConditions", []) if c["status"] == "True"]
    assert "DisruptionTarget" in ignored_conditions  # preemption and eviction use no retry
    ignored_codes = [v for r in rules if r["action"] == "Ignore"
                     for v in r.get("onExitCodes", {}).get("values", [])]
    assert ignored_codes == [ExitCode.PREEMPTED]
    for rule in rules:  # what the API server checks and the schema does not
        if "onExitCodes" in rule:
            values = rule["onExitCodes"]["values"]
            assert values == sorted(set(values)) and 0 not in values
            assert rule["onExitCodes"]["containerName"] in names
    assert job["podReplacementPolicy"] == "Failed"  # never two pods on one run


@pytest.mark.parametrize("target", TARGETS)
def test_gpus_only_where_intended(target: str) -> None:
    docs = objects(target)
    spec, wants_gpu = pod(docs), target in GPU_TARGETS
    assert (GPU in container(docs)["resources"]["limits"]) == wants_gpu
    assert ("cloud.google.com/gke-accelerator" in spec.get("nodeSelector", {})) == wants_gpu
    assert any(t["key"] == GPU for t in spec["tolerations"]) == wants_gpu


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_is_hardened_and_writes_only_to_empty_dirs(target: str) -> None:
    docs = objects(target)
    spec, env = pod(docs), environment(docs)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["enableServiceLinks"] is False  # no Service env vars beside the JOB_* options
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert all(set(v) == {"name", "emptyDir"} for v in volumes.values())  # no keys, no host paths
    for each in spec["containers"] + spec.get("initContainers", []):
        context = each["securityContext"]
        assert context["runAsNonRoot"] is True and isinstance(context["runAsUser"], int)
        assert context["runAsUser"] > 0
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"] and "add" not in context["capabilities"]
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        mounts = [m["mountPath"] for m in each["volumeMounts"] if m["name"] in volumes]
        for variable in ("KERAS_HOME", "MPLCONFIGDIR", "JOB_WORK_DIR"):
            assert any(env[variable].startswith(m.rstrip("/") + "/") for m in mounts), variable


@pytest.mark.parametrize("target", TARGETS)
def test_manifests_set_only_options_that_job_run_reads(target: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    env = environment(objects(target))
    configured = {name for name in env if name.startswith("JOB_")}
    assert configured - run_options() == set(), "not options of `job run` (see `job run --help`)"
    assert REQUIRED_OPTIONS <= configured
    assert "JOB_COMPLETION_INDEX" not in configured  # Kubernetes sets it on Indexed Jobs
    options = parse_run(env, monkeypatch)  # raises on a value the option does not accept
    assert options["overwrite"] is False  # a retried pod must resume the run, not wipe it
    assert options["run_id"] == env["JOB_RUN_ID"]  # fixed, so every retry resumes the same run


@pytest.mark.parametrize("target", TARGETS)
def test_grace_period_outlasts_the_jobs_own_grace(target: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    docs = objects(target)
    grace = parse_run(environment(docs), monkeypatch)["grace_seconds"]
    period = pod(docs)["terminationGracePeriodSeconds"]
    assert period >= grace + SYNC_MARGIN
    if pod(docs).get("nodeSelector", {}).get("cloud.google.com/gke-spot") == "true":
        assert period <= SPOT_NOTICE  # more would be cut short by the node going away


def test_distributed_is_one_indexed_job_with_the_chief_at_index_0() -> None:
    docs = objects("distributed")
    job, spec, env = the(docs, "Job"), pod(docs), environment(docs)
    service, name = the(docs, "Service"), job["metadata"]["name"]
    assert job["spec"]["completionMode"] == "Indexed"
    workers = int(env["JOB_WORKERS"])
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == workers + 1
    assert job["spec"]["successPolicy"] == {"rules": [{"succeededIndexes": "0"}]}
    assert job["spec"]["backoffLimitPerIndex"] >= 1
    assert "backoffLimit" not in job["spec"]  # the per-index limit governs
    assert 0 <= job["spec"]["maxFailedIndexes"] <= job["spec"]["completions"]
    assert env["JOB_ROLE"] == "auto"  # chief or worker from JOB_COMPLETION_INDEX
    # Workers dial the chief's pod: hostname <job>-0 in the headless Service's subdomain.
    assert service["spec"]["clusterIP"] == "None"
    assert spec["subdomain"] == service["metadata"]["name"]
    assert env["JOB_ORACLE_HOST"] == f"{name}-0.{service['metadata']['name']}"
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": name}
    [port] = [p for p in container(docs)["ports"] if p["name"] == "oracle"]
    assert port["containerPort"] == int(env["JOB_ORACLE_PORT"])
    assert service["spec"]["ports"][0]["targetPort"] == "oracle"


def test_only_this_jobs_pods_reach_the_oracle() -> None:
    docs = objects("distributed")
    name = the(docs, "Job")["metadata"]["name"]
    policy = the(docs, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == {"batch.kubernetes.io/job-name": name,
                                                    "batch.kubernetes.io/job-completion-index": "0"}
    assert policy["policyTypes"] == ["Ingress"]
    [rule] = policy["ingress"]
    this_job = {"podSelector": {"matchLabels": {"batch.kubernetes.io/job-name": name}}}
    assert rule["from"] == [this_job]
    assert rule["ports"] == [{"port": "oracle", "protocol": "TCP"}]


def test_overlays_build_on_the_base_without_copying_it() -> None:
    for name, path in TARGETS.items():
        if name != "base":
            kustomization = yaml.safe_load((path / "kustomization.yaml").read_text())
            assert "../../base" in kustomization["resources"]
    outside_base = [p for p in K8S.rglob("*.yaml") if "base" not in p.parts]
    assert [p for p in outside_base if "image:" in p.read_text()] == []  # they patch, not copy


def test_gpu_and_spot_components_combine(tmp_path: Path) -> None:
    """A GPU job on spot nodes: the overlay a user writes by listing both components."""
    here = functools.partial(os.path.relpath, start=tmp_path)  # kustomize wants relative paths
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [here(K8S / "base")],
        "components": [here(K8S / "components" / "gpu"), here(K8S / "components" / "spot")]}))
    docs = objects(tmp_path)
    spec = pod(docs)
    assert {t["key"] for t in spec["tolerations"]} == {GPU, "cloud.google.com/gke-spot"}
    assert set(spec["nodeSelector"]) == {"cloud.google.com/gke-accelerator",
                                         "cloud.google.com/gke-spot"}
    assert container(docs)["resources"]["limits"][GPU] == 1
    assert spec["terminationGracePeriodSeconds"] <= SPOT_NOTICE
    assert float(environment(docs)["JOB_GRACE_SECONDS"]) + SYNC_MARGIN <= SPOT_NOTICE
