"""Identify and signal an agent's process group safely across server restarts.

Every agent is the leader of its own session and process group (pgid == pid), so a signal to the
group reaches everything it spawned. Pids get reused, so the leader is only trusted when its
creation time matches the one recorded at launch. Once the leader is gone, the kernel keeps its
pid reserved for as long as any process still uses it as a process group id; a process holding
that pid with a different creation time therefore proves the old group is empty.

A process can leave the group (``setsid``, as a daemon does). Without the sandbox's pid namespace nothing else
would end it, so every agent also carries a tag in its environment (``OPTIO_PROCESS_TAG``, inherited by all
it starts) and ending a group ends the processes carrying its tag too. A process that scrubs its environment
escapes that; the sandbox (on by default) contains it regardless.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from pathlib import Path

import psutil

TAG_ENV = "OPTIO_PROCESS_TAG"

# psutil derives creation times from the boot time, which some kernels report with a jitter of
# up to a second between processes; a reused pid within that second would need a pid wrap-around.
START_TIME_TOLERANCE_S = 1.0


def is_alive(pid: int, start_time: float) -> bool:
    """Whether ``pid`` is still the process created at ``start_time`` and has not exited."""
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - start_time) > START_TIME_TOLERANCE_S:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _group_may_be_ours(pgid: int, start_time: float) -> bool:
    try:
        proc = psutil.Process(pgid)
    except psutil.NoSuchProcess:
        return True
    try:
        return abs(proc.create_time() - start_time) <= START_TIME_TOLERANCE_S
    except psutil.NoSuchProcess:
        return True


def live_members(pgid: int, start_time: float) -> list[int]:
    """Pids of the group's processes that have not exited (zombies are done)."""
    if not _group_may_be_ours(pgid, start_time):
        return []
    members: list[int] = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) != pgid:
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        members.append(proc.pid)
    return members


def signal_group(pgid: int, start_time: float, sig: signal.Signals) -> bool:
    """Send ``sig`` to the group; False when nothing of the group was left to receive it."""
    if not _group_may_be_ours(pgid, start_time):
        return False
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def tag_for(log_dir: Path) -> str:
    """The tag of the agent whose output goes to ``log_dir`` (unique per run attempt and data dir)."""
    return hashlib.sha256(str(log_dir).encode()).hexdigest()[:24]


def tagged_with(pid: int, tag: str) -> bool:
    """Whether live process ``pid`` carries ``tag`` (so it is the agent's, not a stranger that reused the pid)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return f"{TAG_ENV}={tag}".encode() in fh.read().split(b"\0")
    except OSError:
        return False


def tagged(tag: str, *, prefix: bool = False) -> list[int]:
    """Pids of live processes whose environment carries ``tag``: the agent's, wherever their group went.

    With ``prefix``, any tag that starts with ``tag``: every process of a family of tags (e.g. all CI runs of a
    data dir) when the runs themselves are not known.
    """
    needle = f"{TAG_ENV}={tag}".encode()
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                variables = fh.read().split(b"\0")
        except OSError:
            continue  # gone, or not ours to read
        if any(v.startswith(needle) for v in variables) if prefix else needle in variables:
            found.append(int(entry.name))
    return found


def members(pgid: int, start_time: float, tag: str) -> list[int]:
    """The group's live processes and the tagged ones that left it."""
    pids = live_members(pgid, start_time)
    return pids + [pid for pid in tagged(tag) if pid not in pids and pid != os.getpid()]


def signal_all(pgid: int, start_time: float, tag: str, sig: signal.Signals) -> None:
    """Send ``sig`` to the group and to every tagged process that left it."""
    signal_group(pgid, start_time, sig)
    for pid in tagged(tag):
        if pid != os.getpid():
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


def end_tagged(tag: str, grace_s: float, *, prefix: bool = False, kill_wait_s: float = 5.0) -> list[int]:
    """End every process carrying ``tag`` (see :func:`tagged`) when no group leader was recorded for them, as
    for what a killed server left running: SIGTERM them and the groups they lead, SIGKILL what is left after
    ``grace_s``, and wait (up to ``kill_wait_s``) until they are gone. Returns the pids found at first.

    A group a tagged process leads is signalled too, so a member that scrubbed its environment still ends.
    """
    me = os.getpid()
    found = [pid for pid in tagged(tag, prefix=prefix) if pid != me]
    if not found:
        return []
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, kill_wait_s)):
        left = [pid for pid in tagged(tag, prefix=prefix) if pid != me]
        for pid in left:
            _signal_tagged(pid, sig)
        deadline = time.monotonic() + wait_s
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [pid for pid in tagged(tag, prefix=prefix) if pid != me]
        if not left:
            break
    return found


def _signal_tagged(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid and pid != os.getpgrp():
            os.killpg(pid, sig)
        os.kill(pid, sig)
