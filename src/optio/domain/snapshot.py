"""Frozen views of everything a decision may look at. Built by the control plane, read by decisions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from optio.domain.states import RunKind


class ProcessStatus(StrEnum):
    STARTING = "starting"  # recorded, pid not yet known
    ALIVE = "alive"
    EXITED = "exited"  # exit code known
    GONE = "gone"  # vanished without an exit code (server restart, OOM kill, reboot)


@dataclass(frozen=True)
class RunView:
    """The columns every run kind shares."""

    id: int
    kind: RunKind
    state: str
    version: int
    control_intent: str | None = None
    reconcile_backoff_until: datetime | None = None
    reconcile_attempts: int = 0
    attempts: int = 0
    heartbeat_at: datetime | None = None
    started_at: datetime | None = None
    created_at: datetime | None = None
    error: str | None = None
    executor_error_action: str | None = None
    executor_error: str | None = None
    executor_error_count: int = 0
    executor_error_at: datetime | None = None


@dataclass(frozen=True)
class ProcessView:
    """The latest agent process of a run, as the runtime and the process table know it."""

    attempt: int
    status: ProcessStatus
    exit_code: int | None = None
    exit_reason: str | None = None  # "exited" | "timeout" | "killed" | "spawn_failed" | "lost" | "not_started"
    started_at: datetime | None = None
    last_output_at: datetime | None = None
    error: str | None = None
    failure_kind: str | None = None  # classified cause of a failed exit (optio.domain.agent_errors kinds)
    retry_after_s: float | None = None


@dataclass(frozen=True)
class Capacity:
    """How many runs are active against each cap that applies; `None` means uncapped."""

    running_global: int = 0
    max_global: int | None = None
    running_scope: int = 0
    max_scope: int | None = None
    # Queued runs of the same scope that come first (already counted in `running_scope`).
    ahead: int = 0

    @property
    def full(self) -> bool:
        if self.max_global is not None and self.running_global >= self.max_global:
            return True
        return self.max_scope is not None and self.running_scope >= self.max_scope

    @property
    def far_back(self) -> bool:
        """Even with every slot of the scope free now, the runs ahead would take them all first.

        Such a run is woken when its turn comes (a freed slot wakes the next queued runs), so it needs no
        frequent look of its own: a deep queue then costs nothing while it waits.
        """
        return self.max_scope is not None and self.ahead >= self.max_scope


@dataclass(frozen=True)
class ExecutorErrorPolicy:
    """How often the same executor failure is retried, and how long to wait before each retry."""

    max_errors: int = 5
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 300.0


@dataclass(frozen=True)
class JobRunSnapshot:
    now: datetime
    run: RunView
    max_retries: int
    process: ProcessView | None
    capacity: Capacity
    stall_threshold_s: float = 900.0
    read_error: str | None = None
    budget_usd: float | None = None
    cost_usd: float = 0.0
    executor_errors: ExecutorErrorPolicy = field(default_factory=ExecutorErrorPolicy)
