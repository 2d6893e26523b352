"""The contract between the control plane and whatever runs agent processes.

A runtime knows nothing about the database. It reports what its processes print and how they end
through an :class:`OutputSink` the control plane implements, and it hands back a
:class:`ProcessInfo` that the control plane persists, so that a new server process can adopt a
process the previous one started (agents must outlive a server restart).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

Stream = Literal["stdout", "stderr"]
ExitReason = Literal["exited", "timeout", "killed", "lost"]

STDOUT_FILE = "stdout.log"
STDERR_FILE = "stderr.log"
EXIT_CODE_FILE = "exit_code"
PROCESS_FILE = "process.json"
WRAPPER_PID_FILE = "wrapper.pid"


class RuntimeLaunchError(RuntimeError):
    """The process could not be started; the message says why in terms a user can act on."""


@dataclass(frozen=True)
class Mounts:
    """What of the host a sandboxed process may see besides the system directories.

    Everything else (the data dir, the database, key files, other runs' worktrees, the repo cache)
    is hidden. ``None`` in a :class:`LaunchSpec` means the usual agent layout: ``cwd`` read-write.
    A review passes the PR head read-only, so nothing the head contains can change the verdict file.
    """

    writable: tuple[Path, ...] = ()
    readonly: tuple[Path, ...] = ()


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start one agent process.

    ``key`` is unique per process (``kind:id:attempt``) so that a retried attempt never shares
    logs or an exit status with an earlier one. ``env`` is merged over a minimal base
    environment rather than the server's own, so server secrets never leak into an agent.
    """

    key: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log_dir: Path
    stdin_path: Path | None = None
    timeout_s: float | None = None
    mounts: Mounts | None = None


@dataclass(frozen=True)
class ProcessInfo:
    """What must be persisted to find a running process again after a restart.

    ``start_time`` is the kernel's creation time of ``pid``: a pid can be reused by an unrelated
    process, the pair (pid, start_time) cannot.
    """

    key: str
    pid: int
    start_time: float
    log_dir: Path
    started_at: float
    timeout_at: float | None


class OutputSink(Protocol):
    """Where a runtime reports output and exits; implemented by the control plane.

    Both methods are called from a runtime thread. If either raises, the runtime retries the same
    call later without advancing, so a briefly busy database loses nothing.
    """

    def on_output(self, key: str, stream: Stream, lines: list[str], offset: int) -> None:
        """Receive a batch of complete lines of one stream, in order.

        ``offset`` is the byte offset in the stream's file just after these lines: persisting it
        with the lines lets a restarted server resume tailing with no duplicate and no gap.
        """
        ...

    def on_exit(self, key: str, exit_code: int | None, reason: ExitReason) -> None:
        """Learn that a process ended; called once, after all of its output was delivered."""
        ...


class Runtime(Protocol):
    """The operations the control plane needs from any place agents can run.

    Output offsets travel through the :class:`OutputSink` (each batch carries its offset) and back in
    through :meth:`adopt`; a runtime never stores them itself.
    """

    def launch(self, spec: LaunchSpec) -> ProcessInfo: ...

    def is_alive(self, pid: int, start_time: float) -> bool:
        """Whether the process (pid, kernel start time) still runs, also one this server does not watch."""
        ...

    def exit_status(self, info: ProcessInfo) -> int | None:
        """How a process nobody watched ended: its exit code, or None when it did not end by itself."""
        ...

    def adopt(self, info: ProcessInfo, *, stdout_offset: int, stderr_offset: int) -> None: ...

    def kill(self, key: str, *, grace_s: float = 1.0) -> None: ...

    def kill_info(self, info: ProcessInfo, *, grace_s: float = 1.0) -> None: ...

    def active_keys(self) -> list[str]: ...

    def shutdown(self) -> None: ...
