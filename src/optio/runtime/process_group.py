"""Identify and signal an agent's process group safely across server restarts.

Every agent is the leader of its own session and process group (pgid == pid), so a signal to the
group reaches everything it spawned. Pids get reused, so the leader is only trusted when its
creation time matches the one recorded at launch. Once the leader is gone, the kernel keeps its
pid reserved for as long as any process still uses it as a process group id; a process holding
that pid with a different creation time therefore proves the old group is empty.
"""

from __future__ import annotations

import os
import signal

import psutil

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
