"""What an agent process's state means for its run: succeeded, failed (and how), or still going.

Job runs, repo tasks and review runs watch their agent the same way; only what they do with a success or
a failure differs, so the reading of the process lives here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from optio.domain.retry import Failure, process_failure
from optio.domain.snapshot import ProcessStatus, ProcessView, RunView

WATCH_RECHECK_S = 30.0
# The exit reason of a process row whose server stopped before the process was started.
NOT_STARTED = "not_started"


@dataclass(frozen=True)
class Health:
    outcome: Literal["succeeded", "failed", "running", "starting"]
    failure: Failure | None = None
    kill: bool = False
    recheck_after_s: float | None = None


def _failed(why: str, *, proc: ProcessView | None = None, classify: bool = False, kill: bool = False) -> Health:
    failure = process_failure(proc, why) if classify else Failure(why=why)
    return Health("failed", failure=failure, kill=kill)


def never_started(run: RunView, proc: ProcessView | None) -> bool:
    """Whether the current attempt's agent never ran: the server stopped between deciding and launching it."""
    if proc is None or proc.attempt != run.attempts:
        return True
    return proc.status == ProcessStatus.GONE and proc.exit_reason == NOT_STARTED


def assess(run: RunView, proc: ProcessView | None, *, now: datetime, stall_threshold_s: float) -> Health:
    """Read the current attempt's process. Only exits the adapter could explain are classified."""
    if proc is None or proc.attempt != run.attempts:
        return _failed("agent process was never started (lost before launch)")
    if proc.status == ProcessStatus.EXITED:
        if proc.exit_reason == "timeout":
            return _failed("agent timed out")
        if proc.exit_reason == "spawn_failed":
            return _failed(f"agent could not start: {proc.error or 'unknown error'}", proc=proc, classify=True)
        if proc.exit_code == 0:
            return Health("succeeded")
        return _failed(f"agent exited with code {proc.exit_code}", proc=proc, classify=True)
    if proc.status == ProcessStatus.GONE:
        return _failed("agent process died (no exit status recorded)")
    last = proc.last_output_at or proc.started_at or run.heartbeat_at
    if proc.status == ProcessStatus.ALIVE and last is not None:
        idle = (now - last).total_seconds()
        if idle > stall_threshold_s:
            return _failed(f"agent stalled: no output for {int(idle)}s", kill=True)
        return Health("running", recheck_after_s=min(WATCH_RECHECK_S, stall_threshold_s - idle + 1))
    return Health("starting", recheck_after_s=WATCH_RECHECK_S)
