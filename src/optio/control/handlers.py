"""What the worker pool needs to know about one run kind."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from optio.control.context import ControlContext
from optio.domain.actions import Action


@dataclass(frozen=True)
class Outcome:
    """How applying a decision went: `applied`, `stale` (lost the CAS race), `deferred` or `error`."""

    status: str
    detail: str = ""


@dataclass(frozen=True)
class Loaded:
    """A pure snapshot plus what the executor needs beyond it (workspace, configs for side effects)."""

    workspace_id: int
    snapshot: Loaded
    extra: dict[str, Any]

    @property
    def run(self) -> Any:
        return self.snapshot.run


class RunKindHandler(Protocol):
    kind: str
    terminal: frozenset[str]

    def build_snapshot(self, ctx: ControlContext, session: Session, run_id: int, workspace_id: int,
                       now: datetime) -> Loaded | None:
        """A frozen snapshot for the decision, or None when the run no longer exists."""

    def decide(self, snapshot: Any) -> Action: ...

    def launch(self, ctx: ControlContext, snapshot: Loaded, action: Any, attempt: int) -> None:
        """Start the agent process for a StartAgent action (after its CAS write committed)."""

    def apply_special(self, ctx: ControlContext, snapshot: Loaded, action: Any, now: datetime) -> Outcome:
        """Apply a kind-specific action (provisioning, pull requests, reviews, merges)."""

    def on_transition(self, ctx: ControlContext, session: Session, snapshot: Loaded, to_state: str,
                      now: datetime) -> None:
        """Extra writes in the same transaction as a state change (e.g. wake runs waiting for capacity)."""

    def after_commit(self, ctx: ControlContext, snapshot: Loaded, action: Any) -> None:
        """Side effects after a transition committed (e.g. cleanup of worktrees)."""
