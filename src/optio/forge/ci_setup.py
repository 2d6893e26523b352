"""Telling a CI command that could not test anything apart from tests that failed.

A red CI normally goes back to the agent with its output: the code is wrong, the agent fixes it. A CI
command that cannot start (the shell reports 127 for a command or shebang interpreter it cannot find,
126 for one it cannot execute) or that was killed by its timeout says nothing about the code, and an
agent resumed on it can only guess. Such a run gets the status ``error`` and a ``failure_kind``, and the
task goes to a person at once with the reason and the output.
"""

from __future__ import annotations

from dataclasses import dataclass

from optio.forge.git import CiResult

ERROR = "error"
NOT_FOUND = "not_found"
NOT_EXECUTABLE = "not_executable"
TIMEOUT = "timeout"
COULD_NOT_RUN = "could_not_run"

# POSIX shells' own exit statuses for a command they could not run (`sh -c` runs every CI command).
_SHELL_STATUS = {127: NOT_FOUND, 126: NOT_EXECUTABLE}


@dataclass(frozen=True)
class ClassifiedCi:
    status: str  # passing | failing | error
    failure_kind: str | None


def classify(result: CiResult, *, could_not_run: bool = False) -> ClassifiedCi:
    """The status to record for a finished CI run; ``could_not_run`` when Optio itself failed to start it."""
    if could_not_run:
        return ClassifiedCi(ERROR, COULD_NOT_RUN)
    if result.exit_code is None:  # run_ci's word for "killed by its timeout"
        return ClassifiedCi(ERROR, TIMEOUT)
    kind = _SHELL_STATUS.get(result.exit_code)
    if kind is not None:
        return ClassifiedCi(ERROR, kind)
    return ClassifiedCi("passing" if result.exit_code == 0 else "failing", None)
