"""What the worker pool needs to know about one run kind."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from optio.control.context import ControlContext
from optio.domain.actions import Action
from optio.domain.snapshot import RunView
from optio.store.session import Session


@dataclass(frozen=True)
class Outcome:
    """How applying a decision went: `applied`, `stale` (lost the CAS race), `deferred` or `error`."""

    status: str
    detail: str = ""


class Snapshot(Protocol):
    """What every kind's frozen snapshot has: the run row as the decision saw it."""

    @property
    def run(self) -> RunView: ...


S = TypeVar("S", bound=Snapshot, covariant=True)
F = TypeVar("F", covariant=True)


@dataclass(frozen=True)
class Loaded(Generic[S, F]):
    """A pure snapshot plus the typed facts the executor needs beyond it (configs for side effects)."""

    workspace_id: int
    snapshot: S
    facts: F

    @property
    def run(self) -> RunView:
        return self.snapshot.run


AnyLoaded = Loaded[Any, Any]


class RunKindHandler(Protocol):
    kind: str
    terminal: frozenset[str]

    def build_snapshot(self, ctx: ControlContext, session: Session, run_id: int, workspace_id: int,
                       now: datetime) -> AnyLoaded | None:
        """A frozen snapshot for the decision, or None when the run no longer exists."""

    def decide(self, snapshot: Any) -> Action: ...

    def admit(self, ctx: ControlContext, session: Session, loaded: Any, to_state: str) -> bool:
        """Whether the run may take a slot now (re-checked inside the transaction that starts it)."""

    def launch(self, ctx: ControlContext, loaded: Any, action: Any, attempt: int) -> None:
        """Start the agent process for a StartAgent action (after its CAS write committed)."""

    def apply_special(self, ctx: ControlContext, loaded: Any, action: Any, now: datetime) -> Outcome:
        """Apply a kind-specific action (provisioning, pull requests, reviews, merges)."""

    def on_transition(self, ctx: ControlContext, session: Session, loaded: Any, to_state: str,
                      now: datetime) -> None:
        """Extra writes in the same transaction as a state change (e.g. wake runs waiting for capacity)."""

    def after_commit(self, ctx: ControlContext, loaded: Any, action: Any) -> None:
        """Side effects after a transition committed (e.g. cleanup of worktrees)."""
