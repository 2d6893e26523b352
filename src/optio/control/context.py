"""Everything the control plane's parts share: settings, database, runtime, paths, and the wake signal."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from optio.config import Settings
from optio.control.ports import (
    Forge,
    ForgeRegistry,
    RedactorPort,
    Redactors,
    RepoRef,
    RunRef,
    Runtime,
    SecretsProvider,
    WorktreeProvider,
    Worktrees,
)
from optio.control.replicas import new_replica_id
from optio.store import runs
from optio.store.db import Database
from optio.store.queue import ENQUEUED_FLAG
from optio.store.session import Session

if TYPE_CHECKING:
    from optio.control.handlers import RunKindHandler


class WakeSignal:
    """Wakes idle workers when a transaction that enqueued work commits: as many as items came due.

    Waking every idle worker for each item had all but one of them claim nothing: each such claim is a write
    transaction that holds the database's write lock, and on a busy server they outnumbered the real ones.
    One wake is kept for a worker between an empty claim and its wait, which would otherwise miss it (it
    still looks again within a second).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending = 0
        self._waiting = 0

    def notify(self, n: int | None = None) -> None:
        """Wake `n` idle workers (all of them when None)."""
        with self._cond:
            count = self._waiting + 1 if n is None else n
            self._pending = min(self._pending + count, self._waiting + 1)
            self._cond.notify(count)

    def wait(self, timeout: float) -> None:
        with self._cond:
            if not self._pending:
                self._waiting += 1
                try:
                    self._cond.wait(timeout)
                finally:
                    self._waiting -= 1
            if self._pending:
                self._pending -= 1


@dataclass
class ControlContext:
    """The control plane's world: settings, database and the ports (every one of them required)."""

    settings: Settings
    db: Database
    runtime: Runtime
    forges: ForgeRegistry
    worktrees: WorktreeProvider
    secrets: SecretsProvider
    redactors: Redactors  # per-workspace/repo redactors
    handlers: dict[str, RunKindHandler] = field(default_factory=dict)
    wake: WakeSignal = field(default_factory=WakeSignal)
    # This process among the replicas on one database: the owner recorded on the processes it launches.
    replica_id: str = field(default_factory=new_replica_id)

    def __post_init__(self) -> None:
        def _after_commit(session: Session) -> None:
            due = session.info.pop(ENQUEUED_FLAG, 0)
            if due:
                self.wake.notify(int(due))

        self.db.on_commit(_after_commit)

    def forge_for(self, forge_kind: str) -> Forge:
        """The forge a repo lives on, by the repo's forge kind."""
        return self.forges.get(forge_kind)

    def worktrees_for(self, repo: RepoRef) -> Worktrees:
        return self.worktrees.for_repo(repo)

    @property
    def data_dir(self) -> Path:
        return self.settings.resolved_data_dir

    def run_dir(self, kind: str, run_id: int) -> Path:
        return self.data_dir / "runs" / kind / str(run_id)

    def redact(self, text: str, workspace_id: int, repo_id: int | None = None) -> str:
        """``text`` masked with the secrets of its own workspace (and repo), never another workspace's."""
        return self.redactors.for_scope(workspace_id, repo_id).redact(text)

    def run_redactor(self, session: Session, kind: str, run_id: int, workspace_id: int) -> RedactorPort:
        """The redactor for a run's output: its workspace's secrets, and its repo's for a repo's runs."""
        return runs.redactor_for_run(session, kind, run_id, workspace_id)

    def secret_env(self, workspace_id: int, names: list[str], repo_id: int | None = None, *,
                   run: tuple[str, int] | None = None) -> dict[str, str]:
        """The secrets a run asked for by name, as environment variables (never more than named).

        ``run`` is the (kind, id) of the run they are injected into, recorded with each injection's audit row.
        """
        if not names:
            return {}
        ref = RunRef(kind=run[0], run_id=run[1]) if run is not None else None
        return dict(self.secrets.env_for(workspace_id, names, repo_id=repo_id, run=ref))

    def handler(self, kind: str) -> RunKindHandler:
        try:
            return self.handlers[kind]
        except KeyError:
            raise ValueError(f"no handler for run kind {kind!r}") from None
