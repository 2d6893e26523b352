"""Everything the control plane's parts share: settings, database, runtime, paths, and the wake signal."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optio.config import Settings
from optio.store.db import Database
from optio.store.queue import ENQUEUED_FLAG

if TYPE_CHECKING:
    from optio.control.handlers import RunKindHandler
    from optio.runtime.local import LocalRuntime


class WakeSignal:
    """Wakes idle workers as soon as a transaction that enqueued work commits."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending = False

    def notify(self) -> None:
        with self._cond:
            self._pending = True
            self._cond.notify_all()

    def wait(self, timeout: float) -> None:
        with self._cond:
            if not self._pending:
                self._cond.wait(timeout)
            self._pending = False


@dataclass
class ControlContext:
    settings: Settings
    db: Database
    runtime: LocalRuntime | None = None
    handlers: dict[str, RunKindHandler] = field(default_factory=dict)
    wake: WakeSignal = field(default_factory=WakeSignal)
    redact: Any = None  # callable str -> str
    secrets: Any = None  # provider with env_for(workspace_id, names, repo_id=None) -> dict[str, str]
    forge: Any = None  # the local forge (optio.forge.local.LocalForge)

    def __post_init__(self) -> None:
        def _after_commit(session: Any) -> None:
            if session.info.pop(ENQUEUED_FLAG, False):
                self.wake.notify()

        self.db.on_commit(_after_commit)
        if self.redact is None:
            self.redact = lambda text: text

    @property
    def data_dir(self) -> Path:
        return self.settings.resolved_data_dir

    def run_dir(self, kind: str, run_id: int) -> Path:
        return self.data_dir / "runs" / kind / str(run_id)

    def secret_env(self, workspace_id: int, names: list[str], repo_id: int | None = None) -> dict[str, str]:
        """The secrets a run asked for by name, as environment variables (never more than named)."""
        if not names or self.secrets is None:
            return {}
        return dict(self.secrets.env_for(workspace_id, names, repo_id=repo_id))

    def handler(self, kind: str) -> RunKindHandler:
        try:
            return self.handlers[kind]
        except KeyError:
            raise ValueError(f"no handler for run kind {kind!r}") from None
