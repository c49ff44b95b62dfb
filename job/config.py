"""The job's one configuration object, built once by the CLI and passed down."""

from __future__ import annotations

import dataclasses
import re
import tempfile
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from job.errors import BadInputError


class Dataset(str, Enum):
    MNIST = "mnist"
    FASHION_MNIST = "fashion-mnist"


class TunerKind(str, Enum):
    RANDOM = "random"
    HYPERBAND = "hyperband"
    BAYESIAN = "bayesian"


class StrategyKind(str, Enum):
    AUTO = "auto"
    MIRRORED = "mirrored"
    DEFAULT = "default"


class Profile(str, Enum):
    QUICK = "quick"  # the original search space
    FULL = "full"  # adds augmentation and wider layers


class LrSchedule(str, Enum):
    """The learning rate of the final training (the search always uses plateau)."""

    PLATEAU = "plateau"  # halved when val_loss stalls; early stopping ends the training
    COSINE = "cosine"  # decays over --final-epochs to 1% of the tuned rate; runs them all


class Role(str, Enum):
    AUTO = "auto"  # from JOB_COMPLETION_INDEX when set, else standalone
    STANDALONE = "standalone"
    CHIEF = "chief"
    WORKER = "worker"


# Fields that define what a search explores: a run may only be resumed with the
# same values (max_trials may grow, to extend a search).
SEARCH_FIELDS = ("dataset", "tuner", "profile", "epochs", "executions_per_trial",
                 "seed", "subset", "search_subset", "validation_split", "batch_size")

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class JobConfig:
    """Everything a run needs; saved as `config.json` in the run directory."""

    run_id: str
    artifacts: str = "artifacts"
    data: str | None = None
    dataset: Dataset = Dataset.MNIST
    work_dir: str | None = None
    tuner: TunerKind = TunerKind.RANDOM
    profile: Profile = Profile.QUICK
    max_trials: int = 4
    epochs: int = 3
    final_epochs: int = 12
    executions_per_trial: int = 1
    seed: int = 42
    subset: int | None = None
    search_subset: int | None = 12000
    validation_split: float = 0.2
    batch_size: int = 128  # per replica; the global batch is this × replicas
    patience: int = 3  # epochs without improvement before early stopping
    lr_schedule: LrSchedule = LrSchedule.PLATEAU
    strategy: StrategyKind = StrategyKind.AUTO
    logical_cpus: int = 0  # split the CPU into N devices (tests, laptops); 0 = off
    jit_compile: bool = False  # XLA: measured 5x slower on CPU, try it on GPUs
    mixed_precision: bool = False  # float16 compute: only helps on GPUs with tensor cores
    overwrite: bool = False
    grace_seconds: float = 10.0
    lease_seconds: float = 60.0  # a writer silent this long is presumed dead (SIGKILL)
    role: Role = Role.AUTO
    workers: int = 0  # distributed search: number of worker processes
    oracle_port: int = 8000
    oracle_host: str | None = None  # workers dial this: <job>-0.<service> in an Indexed Job
    oracle_bind: str = "0.0.0.0"  # the chief listens here (all interfaces, for other pods)
    worker_timeout: float = 600.0  # seconds without news before a trial is reassigned

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(field.type, str) and field.type in _ENUMS and isinstance(value, str):
                object.__setattr__(self, field.name, _ENUMS[field.type](value))
        _validate(self)

    @property
    def work_root(self) -> Path:
        return work_root(self.work_dir)

    def to_json(self) -> dict[str, Any]:
        return {k: (v.value if isinstance(v, Enum) else v)
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, stored: dict[str, Any], /, **overrides: Any) -> JobConfig:
        """A config from config.json; overrides that are None keep the stored value."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in stored.items() if k in names}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def search_differences(self, other: JobConfig) -> list[str]:
        """Search-defining options where `other` differs, as '--name: a -> b'."""
        mine, theirs = self.to_json(), other.to_json()
        return [f"{_flag(name)}: {_shown(theirs[name])} -> {_shown(mine[name])}"
                for name in SEARCH_FIELDS if mine[name] != theirs[name]]


_ENUMS = {"Dataset": Dataset, "TunerKind": TunerKind, "StrategyKind": StrategyKind,
          "Profile": Profile, "Role": Role, "LrSchedule": LrSchedule}


def work_root(work_dir: str | None) -> Path:
    """Local working directory for runs synced to a bucket, and for the data cache."""
    return Path(work_dir) if work_dir else Path(tempfile.gettempdir()) / "image-recognition-job"


def new_run_id() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S")


def _validate(config: JobConfig) -> None:
    if not _RUN_ID.match(config.run_id):
        _bad(f"--run-id {config.run_id!r}: use letters, digits, '.', '_' or '-' (max 63)")
    for name in ("max_trials", "epochs", "final_epochs", "executions_per_trial", "batch_size",
                 "patience"):
        _at_least(config, name, 1)
    for name in ("logical_cpus", "workers"):
        _at_least(config, name, 0)
    _at_least(config, "lease_seconds", 2)
    for name, hint in (("subset", ""), ("search_subset", " (0: all)")):
        value = getattr(config, name)
        if value is not None and value < 100:
            _bad(f"{_flag(name)} must be at least 100 images{hint}, got {value}")
    if not 0.05 <= config.validation_split <= 0.5:
        _bad(f"--validation-split must be between 0.05 and 0.5, got {config.validation_split}")
    for name in ("grace_seconds", "worker_timeout"):
        if getattr(config, name) <= 0:
            _bad(f"{_flag(name)} must be above 0, got {getattr(config, name)}")
    if not 1 <= config.oracle_port <= 65535:
        _bad(f"--oracle-port must be a TCP port (1-65535), got {config.oracle_port}")
    if "://" in config.artifacts and not config.artifacts.startswith("gs://"):
        _bad(f"--artifacts {config.artifacts!r}: only local paths and gs:// are supported")


def _at_least(config: JobConfig, name: str, minimum: float) -> None:
    if getattr(config, name) < minimum:
        _bad(f"{_flag(name)} must be at least {minimum}, got {getattr(config, name)}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _shown(value: Any) -> str:
    return "all" if value is None else str(value)


def _bad(message: str) -> None:
    raise BadInputError(message)
