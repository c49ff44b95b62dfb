"""Errors the job reports to its user, and the exit code each one means.

The CLI turns a `JobError` into one line on stderr and its exit code; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; Kubernetes manifests refer to these numbers."""

    OK = 0
    FAILED = 1  # the job itself failed (a bug, or every trial failed)
    BAD_INPUT = 2  # bad data, options, config or images: retrying cannot help
    STORAGE = 3  # the artifact store failed after every retry: retrying may help
    CONFLICT = 4  # another process owns this run: do not retry blindly
    PREEMPTED = 75  # SIGTERM: state is saved, safe to retry (EX_TEMPFAIL)
    INTERRUPTED = 130  # Ctrl-C: state is saved (128 + SIGINT, as shells report it)


class JobError(Exception):
    """An error with a one-line message meant for the user."""

    exit_code: ExitCode = ExitCode.FAILED


class BadInputError(JobError):
    """The data, an option or a configuration is wrong; fix it and rerun."""

    exit_code = ExitCode.BAD_INPUT


class StorageError(JobError):
    """The artifact store could not be read or written."""

    exit_code = ExitCode.STORAGE


class RunConflictError(JobError):
    """Another process holds this run, or it was started differently."""

    exit_code = ExitCode.CONFLICT


class Preempted(BaseException):
    """Raised at a batch boundary after SIGTERM.

    A `BaseException`, not an `Exception`: KerasTuner marks a trial as failed
    for any `Exception`, and a preempted trial has not failed — it must stay
    "ongoing" so that the next run resumes it.
    """

    exit_code = ExitCode.PREEMPTED
