"""Run agent processes on this machine in a way that survives a restart of the server.

Each agent is started through a tiny ``/bin/sh`` wrapper in a new session, with its output going
to files and its exit status written atomically to a file by the wrapper. Nothing ties the agent
to the server process: when the server dies (even with SIGKILL) the agent keeps running, and a
new server adopts it from the persisted :class:`ProcessInfo` and byte offsets, resuming the log
tail exactly where the last delivered line ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import select
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import BinaryIO

import psutil
import structlog

from optio.runtime import process_group
from optio.runtime.base import (
    EXIT_CODE_FILE,
    PROCESS_FILE,
    STDERR_FILE,
    STDOUT_FILE,
    WRAPPER_PID_FILE,
    ExitReason,
    LaunchSpec,
    Mounts,
    OutputSink,
    ProcessInfo,
    RuntimeLaunchError,
    Stream,
)
from optio.runtime.sandbox import Sandbox
from optio.runtime.tail import FileTail
from optio.security import private_file

log = structlog.get_logger(__name__)

_BASE_ENV_NAMES = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MV = shutil.which("mv", path=_DEFAULT_PATH) or "/bin/mv"

# The wrapper first records its own pid, before the command starts: a server killed between starting it and
# writing the process file can then still tell a started agent from one that never ran (see `launch_record`).
# It runs the command as a child (not exec), so it can record the exit status once the command ends; tmp +
# rename makes that file appear whole or not at all. It stays in the agent's process group, so a group signal
# ends wrapper and command together.
_WRAPPER_SCRIPT = (
    f'd=$1; shift; echo "$$" > "$d/{WRAPPER_PID_FILE}"; "$@"; c=$?; '
    f'printf "%s\\n" "$c" > "$d/{EXIT_CODE_FILE}.tmp" && {shlex.quote(_MV)} -f "$d/{EXIT_CODE_FILE}.tmp" '
    f'"$d/{EXIT_CODE_FILE}"; exit "$c"'
)
# Written before the process starts: what a recovering server needs to rebuild the process file if the
# launching server died before writing it.
LAUNCH_FILE = "launch.json"
_WRAPPER_NAME = "optio-run"

# How long stragglers get after SIGKILL before the exit is reported anyway (e.g. stuck in D state).
_KILL_WAIT_S = 5.0
_MAX_RETRY_DELAY_S = 2.0
_DEFAULT_GRACE_S = 1.0
# How often stragglers of an ended leader are looked for; the same pace `end_group` keeps.
_ENDING_POLL_S = 0.05
# Added to a deadline the watcher sleeps towards, so it wakes just past it rather than just before.
_DEADLINE_SLACK_S = 0.005

# Children still running when their runtime shut down: they are meant to outlive it, so keep their
# Popen objects (and reap them once done) instead of letting them be collected mid-run.
_detached: list[subprocess.Popen[bytes]] = []
_detached_lock = threading.Lock()


def _detach(popen: subprocess.Popen[bytes] | None) -> None:
    with _detached_lock:
        _detached[:] = [p for p in _detached if p.poll() is None]
        if popen is not None and popen.poll() is None:
            _detached.append(popen)


def base_env() -> dict[str, str]:
    """The minimal environment an agent starts from; the server's own secrets stay out of it."""
    env = {name: os.environ[name] for name in _BASE_ENV_NAMES if name in os.environ}
    env.setdefault("PATH", _DEFAULT_PATH)
    env.setdefault("LANG", "C.UTF-8")
    env.setdefault("TMPDIR", tempfile.gettempdir())
    if "HOME" not in env or "USER" not in env:
        with contextlib.suppress(KeyError):
            entry = pwd.getpwuid(os.getuid())
            env.setdefault("HOME", entry.pw_dir)
            env.setdefault("USER", entry.pw_name)
    return env


def _exit_fds(popen: subprocess.Popen[bytes] | None) -> tuple[int | None, int | None]:
    """A pidfd of a process this server started (readable once it exits) and an eventfd to wake its watcher.

    (None, None) where the kernel offers no pidfd: the watcher then notices an exit at its next poll.
    """
    if popen is None:
        return None, None
    try:
        pidfd = os.pidfd_open(popen.pid)
    except (OSError, AttributeError):
        return None, None
    try:
        wakefd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    except (OSError, AttributeError):
        os.close(pidfd)
        return None, None
    return pidfd, wakefd


def read_exit_code(log_dir: Path) -> int | None:
    """The exit status the wrapper recorded, or None if the command never finished by itself."""
    try:
        return int((log_dir / EXIT_CODE_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def read_process_file(log_dir: Path) -> ProcessInfo | None:
    """The ProcessInfo written at launch, for a server that died before persisting it elsewhere."""
    try:
        data = json.loads((log_dir / PROCESS_FILE).read_text())
        return ProcessInfo(
            key=data["key"],
            pid=int(data["pid"]),
            start_time=float(data["start_time"]),
            log_dir=Path(data["log_dir"]),
            started_at=float(data["started_at"]),
            timeout_at=None if data["timeout_at"] is None else float(data["timeout_at"]),
        )
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def _write_process_file(info: ProcessInfo) -> None:
    data = {
        "key": info.key,
        "pid": info.pid,
        "start_time": info.start_time,
        "log_dir": str(info.log_dir),
        "started_at": info.started_at,
        "timeout_at": info.timeout_at,
    }
    _write_json(info.log_dir / PROCESS_FILE, data)


def _write_json(target: Path, data: dict[str, object]) -> None:
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, target)


def _read_wrapper_pid(log_dir: Path) -> int | None:
    try:
        return int((log_dir / WRAPPER_PID_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None  # not written yet (or caught between its open and its write)


def _recorded_launch(log_dir: Path, key: str) -> ProcessInfo | None:
    """Rebuild the process file of a launch whose server died between starting the process and writing it.

    No launch file: the process was never started. No wrapper pid yet: the wrapper may be just starting, so
    every process carrying the launch's tag is killed first (the command runs only after the pid is written),
    and only a pid that still does not appear means the agent never ran.
    """
    try:
        launch = json.loads((log_dir / LAUNCH_FILE).read_text())
        if launch["key"] != key:
            return None
        timeout_s = None if launch["timeout_s"] is None else float(launch["timeout_s"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    pid = _read_wrapper_pid(log_dir)
    if pid is None:
        tag = process_group.tag_for(log_dir)
        for tagged in process_group.tagged(tag):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(tagged, signal.SIGKILL)
        pid = _read_wrapper_pid(log_dir)
        if pid is None:
            return None
    try:
        start_time = psutil.Process(pid).create_time()
        if not process_group.tagged_with(pid, process_group.tag_for(log_dir)):
            raise psutil.NoSuchProcess(pid)  # the pid is someone else's now: the wrapper is gone
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        start_time = (log_dir / WRAPPER_PID_FILE).stat().st_mtime
    info = ProcessInfo(key=key, pid=pid, start_time=start_time, log_dir=log_dir, started_at=start_time,
                       timeout_at=None if timeout_s is None else start_time + timeout_s)
    with contextlib.suppress(OSError):
        _write_process_file(info)
    return info


def _check_executable(spec: LaunchSpec, env: dict[str, str]) -> None:
    """Fail at launch with a clear message; behind the wrapper a missing command would only be exit 127."""
    if not spec.argv:
        raise RuntimeLaunchError(f"{spec.key}: empty command")
    program = spec.argv[0]
    if "/" in program:
        candidate = Path(program) if os.path.isabs(program) else spec.cwd / program
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            raise RuntimeLaunchError(f"{spec.key}: {program!r} is not an executable file")
    elif shutil.which(program, path=env.get("PATH", "")) is None:
        raise RuntimeLaunchError(f"{spec.key}: command {program!r} not found on PATH {env.get('PATH', '')!r}")


def end_group(pid: int, start_time: float, grace_s: float, tag: str) -> None:
    """SIGTERM a process group (and its tagged escapees), SIGKILL what is left after ``grace_s``, wait until gone."""
    process_group.signal_all(pid, start_time, tag, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not process_group.members(pid, start_time, tag):
            return
        time.sleep(0.05)
    process_group.signal_all(pid, start_time, tag, signal.SIGKILL)
    deadline = time.monotonic() + _KILL_WAIT_S
    while time.monotonic() < deadline and process_group.members(pid, start_time, tag):
        time.sleep(0.05)


class _Watcher(threading.Thread):
    """Follows one process from launch (or adoption) to its reported exit."""

    def __init__(
        self,
        runtime: LocalRuntime,
        info: ProcessInfo,
        popen: subprocess.Popen[bytes] | None,
        stdout_offset: int,
        stderr_offset: int,
    ) -> None:
        super().__init__(name=f"optio-runtime:{info.key}", daemon=True)
        self.info = info
        self._tag = process_group.tag_for(info.log_dir)
        self._runtime = runtime
        self._sink = runtime._sink
        self._poll_s = runtime._poll_interval_s
        self._popen = popen
        self._tails: list[tuple[Stream, FileTail]] = [
            ("stdout", FileTail(info.log_dir / STDOUT_FILE, stdout_offset)),
            ("stderr", FileTail(info.log_dir / STDERR_FILE, stderr_offset)),
        ]
        self._lock = threading.Lock()
        self._wake = threading.Event()
        # The leader's exit ends the watcher's idle wait at once (instead of at the next poll), as does a wake.
        self._pidfd, self._wakefd = _exit_fds(popen)
        self._end_reason: ExitReason | None = None
        self._kill_deadline: float | None = None
        self._sigkill_sent = False
        self._give_up_at: float | None = None
        self._leader_done = False
        self.finished = False

    # -- called from other threads -------------------------------------------------------------

    def request_kill(self, reason: ExitReason, grace_s: float) -> None:
        with self._lock:
            if self.finished:
                return
            # A kill that arrives after the process ended by itself only clears up stragglers.
            if self._end_reason is None and not self._leader_done:
                self._end_reason = reason
            deadline = time.monotonic() + grace_s
            if self._kill_deadline is None or deadline < self._kill_deadline:
                self._kill_deadline = deadline
        process_group.signal_all(self.info.pid, self.info.start_time, self._tag, signal.SIGTERM)
        self.wake()

    def wake(self) -> None:
        self._wake.set()
        with self._lock:
            if self._wakefd is not None:
                os.eventfd_write(self._wakefd, 1)

    def _idle(self, timeout: float) -> None:
        """Wait up to `timeout` for a wake, or for the leader to exit while it still runs."""
        if self._pidfd is None or self._leader_done or self._wakefd is None:
            self._wake.wait(timeout)
            return
        if self._wake.is_set():
            return
        ready, _, _ = select.select([self._pidfd, self._wakefd], [], [], timeout)
        if self._wakefd in ready:
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self._wakefd)

    def _close_fds(self) -> None:
        with self._lock:
            fds, self._pidfd, self._wakefd = (self._pidfd, self._wakefd), None, None
        for fd in fds:
            if fd is not None:
                os.close(fd)

    # -- the watcher thread ----------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._watch()
        except Exception:
            log.exception("runtime watcher crashed", key=self.info.key)
        finally:
            for _, tail in self._tails:
                tail.close()
            self._close_fds()
            _detach(self._popen if not self.finished else None)
            self._runtime._forget(self)

    def _leader_ended(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is not None
        return not process_group.is_alive(self.info.pid, self.info.start_time)

    def _escalate_if_due(self) -> None:
        with self._lock:
            due = self._kill_deadline is not None and not self._sigkill_sent and time.monotonic() >= self._kill_deadline
            if due:
                self._sigkill_sent = True
                self._give_up_at = time.monotonic() + _KILL_WAIT_S
        if due:
            process_group.signal_all(self.info.pid, self.info.start_time, self._tag, signal.SIGKILL)

    def _group_done(self) -> bool:
        """After the leader ended: whether stragglers of its group are gone (ending them if needed).

        A finished run must not leave processes behind that keep running or writing to its logs.
        """
        members = process_group.members(self.info.pid, self.info.start_time, self._tag)
        if not members:
            return True
        with self._lock:
            start_ending = self._kill_deadline is None
            if start_ending:
                self._kill_deadline = time.monotonic() + _DEFAULT_GRACE_S
        if start_ending:
            process_group.signal_all(self.info.pid, self.info.start_time, self._tag, signal.SIGTERM)
        self._escalate_if_due()
        if self._give_up_at is not None and time.monotonic() >= self._give_up_at:
            log.warning("process group did not end after SIGKILL", key=self.info.key, pids=members)
            return True
        return False

    def _deliver(self, stream: Stream, tail: FileTail, *, final: bool) -> str:
        batch = tail.peek(final=final)
        if batch is None:
            return "idle"
        try:
            self._sink.on_output(self.info.key, stream, batch.lines, batch.end_offset)
        except Exception:
            log.exception("output sink failed; will retry", key=self.info.key, stream=stream)
            return "failed"
        tail.commit()
        return "more"

    def _exit_status(self) -> tuple[int | None, ExitReason]:
        recorded = read_exit_code(self.info.log_dir)
        code = recorded
        if code is None and self._popen is not None:
            code = self._popen.returncode
        with self._lock:
            reason = self._end_reason
        if reason is not None:
            return code, reason
        return code, "exited" if recorded is not None else "lost"

    def _watch(self) -> None:
        stop = self._runtime._stopping
        timeout_at = self.info.timeout_at
        phase = "running"
        retry_delay = self._poll_s
        while not stop.is_set():
            if phase == "running":
                if self._leader_ended():
                    with self._lock:
                        self._leader_done = True
                    phase = "ending"
                else:
                    if timeout_at is not None and self._kill_deadline is None and time.time() >= timeout_at:
                        self.request_kill("timeout", _DEFAULT_GRACE_S)
                    self._escalate_if_due()
            if phase == "ending" and self._group_done():
                phase = "draining"
            final = phase == "draining"
            results = [self._deliver(stream, tail, final=final) for stream, tail in self._tails]
            failed = "failed" in results
            if final and all(r == "idle" for r in results):
                code, reason = self._exit_status()
                try:
                    self._sink.on_exit(self.info.key, code, reason)
                except Exception:
                    log.exception("exit sink failed; will retry", key=self.info.key)
                    failed = True
                else:
                    with self._lock:
                        self.finished = True
                    return
            if failed:
                self._wake.wait(retry_delay)
                retry_delay = min(retry_delay * 2, _MAX_RETRY_DELAY_S)
            else:
                retry_delay = self._poll_s
                if "more" not in results:
                    self._idle(self._idle_timeout(phase))
            self._wake.clear()

    def _idle_timeout(self, phase: str) -> float:
        """How long the watcher may sleep: until the next poll, but never past a deadline it has to act on.

        Once the leader is gone nothing signals the exit of stragglers still in its group (they are not our
        children), so that phase polls at a short interval however long the poll interval is set.
        """
        timeout = self._poll_s if phase == "running" else min(self._poll_s, _ENDING_POLL_S)
        now = time.monotonic()
        with self._lock:
            deadlines = [d for d in (self._kill_deadline, self._give_up_at) if d is not None]
        if phase == "running" and self.info.timeout_at is not None:
            deadlines.append(now + self.info.timeout_at - time.time())
        for deadline in deadlines:
            timeout = min(timeout, max(deadline - now, 0.0) + _DEADLINE_SLACK_S)
        return timeout


class LocalRuntime:
    """Runs agents as local processes; see the module docstring for how they survive restarts."""

    def __init__(self, sink: OutputSink, *, poll_interval_s: float = 0.1, sandbox: Sandbox | None = None) -> None:
        self._sink = sink
        self.sandbox = sandbox
        self._poll_interval_s = poll_interval_s
        self._watchers: dict[str, _Watcher] = {}
        self._launching: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def launch(self, spec: LaunchSpec) -> ProcessInfo:
        if self._stopping.is_set():
            raise RuntimeLaunchError(f"{spec.key}: runtime is shut down")
        with self._lock:
            if spec.key in self._watchers or spec.key in self._launching:
                raise RuntimeLaunchError(f"{spec.key}: a process with this key is already running")
            self._launching.add(spec.key)
        try:
            return self._launch(spec)
        finally:
            with self._lock:
                self._launching.discard(spec.key)

    def _launch(self, spec: LaunchSpec) -> ProcessInfo:
        env = base_env() | dict(spec.env) | {process_group.TAG_ENV: process_group.tag_for(spec.log_dir)}
        if not spec.cwd.is_dir():
            raise RuntimeLaunchError(f"{spec.key}: working directory {str(spec.cwd)!r} does not exist")
        _check_executable(spec, env)
        if spec.stdin_path is not None and not spec.stdin_path.is_file():
            raise RuntimeLaunchError(f"{spec.key}: stdin file {str(spec.stdin_path)!r} does not exist")
        try:
            spec.log_dir.mkdir(parents=True, exist_ok=True)
            exit_file = spec.log_dir / EXIT_CODE_FILE
            for stale in (exit_file, exit_file.with_name(EXIT_CODE_FILE + ".tmp"), spec.log_dir / WRAPPER_PID_FILE,
                          spec.log_dir / PROCESS_FILE):
                stale.unlink(missing_ok=True)
            _write_json(spec.log_dir / LAUNCH_FILE, {"key": spec.key, "timeout_s": spec.timeout_s})
        except OSError as exc:
            raise RuntimeLaunchError(f"{spec.key}: cannot prepare log dir {str(spec.log_dir)!r}: {exc}") from exc
        command = list(spec.argv)
        if self.sandbox is not None:
            # The wrapper stays outside: the sandbox never sees the log dir, so it cannot forge its exit file.
            mounts = spec.mounts if spec.mounts is not None else Mounts(writable=(spec.cwd,))
            command, env = self.sandbox.wrap(command, cwd=spec.cwd, env=env, mounts=mounts)
        argv = ["/bin/sh", "-c", _WRAPPER_SCRIPT, _WRAPPER_NAME, str(spec.log_dir), *command]
        files: list[BinaryIO] = []
        try:
            stdin: BinaryIO | int = subprocess.DEVNULL
            if spec.stdin_path is not None:
                stdin = spec.stdin_path.open("rb")
                files.append(stdin)
            # Raw output holds secrets unredacted until stored: only the server's user may read it.
            stdout = private_file.open_private(spec.log_dir / STDOUT_FILE)
            files.append(stdout)
            stderr = private_file.open_private(spec.log_dir / STDERR_FILE)
            files.append(stderr)
            popen = subprocess.Popen(
                argv,
                cwd=spec.cwd,
                env=env,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
                close_fds=True,
            )
        except (OSError, ValueError) as exc:
            raise RuntimeLaunchError(f"{spec.key}: cannot start {spec.argv[0]!r}: {exc}") from exc
        finally:
            for fh in files:
                fh.close()
        started_at = time.time()
        # The child is not reaped before the watcher polls it, so its /proc entry still exists here.
        start_time = psutil.Process(popen.pid).create_time()
        info = ProcessInfo(
            key=spec.key,
            pid=popen.pid,
            start_time=start_time,
            log_dir=spec.log_dir,
            started_at=started_at,
            timeout_at=None if spec.timeout_s is None else started_at + spec.timeout_s,
        )
        with contextlib.suppress(OSError):
            _write_process_file(info)
        self._start(_Watcher(self, info, popen, 0, 0))
        log.info("agent process launched", key=spec.key, pid=popen.pid)
        return info

    def adopt(self, info: ProcessInfo, *, stdout_offset: int, stderr_offset: int) -> None:
        with self._lock:
            if info.key in self._watchers or self._stopping.is_set():
                return
            watcher = _Watcher(self, info, None, stdout_offset, stderr_offset)
            self._watchers[info.key] = watcher
        watcher.start()
        log.info("agent process adopted", key=info.key, pid=info.pid)

    @staticmethod
    def is_alive(pid: int, start_time: float) -> bool:
        return process_group.is_alive(pid, start_time)

    @staticmethod
    def launch_record(log_dir: Path, key: str) -> ProcessInfo | None:
        """What a launch recorded of its process (for a server that died before persisting it elsewhere).

        None means the process never ran and never will.
        """
        info = read_process_file(log_dir)
        if info is not None:
            return info if info.key == key else None
        return _recorded_launch(log_dir, key)

    @staticmethod
    def exit_status(info: ProcessInfo) -> int | None:
        """The exit status of a process nobody watched end, from the file its wrapper wrote."""
        return read_exit_code(info.log_dir)

    def kill(self, key: str, *, grace_s: float = 1.0) -> None:
        with self._lock:
            watcher = self._watchers.get(key)
        if watcher is not None:
            watcher.request_kill("killed", grace_s)

    def kill_info(self, info: ProcessInfo, *, grace_s: float = 1.0) -> None:
        with self._lock:
            watcher = self._watchers.get(info.key)
        if watcher is not None and watcher.info.pid == info.pid:
            watcher.request_kill("killed", grace_s)
            return
        tag = process_group.tag_for(info.log_dir)
        process_group.signal_all(info.pid, info.start_time, tag, signal.SIGTERM)
        threading.Thread(
            target=end_group,
            args=(info.pid, info.start_time, grace_s, tag),
            name=f"optio-runtime-kill:{info.key}",
            daemon=True,
        ).start()

    def active_keys(self) -> list[str]:
        with self._lock:
            return sorted(self._watchers)

    def shutdown(self) -> None:
        self._stopping.set()
        with self._lock:
            watchers = list(self._watchers.values())
        for watcher in watchers:
            watcher.wake()
        for watcher in watchers:
            watcher.join(timeout=5.0)

    def _start(self, watcher: _Watcher) -> None:
        with self._lock:
            self._watchers[watcher.info.key] = watcher
        watcher.start()

    def _forget(self, watcher: _Watcher) -> None:
        with self._lock:
            if self._watchers.get(watcher.info.key) is watcher:
                del self._watchers[watcher.info.key]
