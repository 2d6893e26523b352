"""Idle workers asleep in a wake signal, and which of them a wake reached: real threads on the real signal."""

from __future__ import annotations

import threading
import time

from optio.control.context import WakeSignal

LONG = 5.0  # a wait this long that returns early was woken


def waiters(signal: WakeSignal, n: int) -> tuple[list[threading.Thread], list[float]]:
    woke: list[float] = []
    lock = threading.Lock()

    def wait() -> None:
        start = time.monotonic()
        signal.wait(LONG)
        with lock:
            woke.append(time.monotonic() - start)

    threads = [threading.Thread(target=wait, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + LONG
    while signal._waiting < n and time.monotonic() < deadline:  # all of them asleep in the signal
        time.sleep(0.005)
    assert signal._waiting == n
    return threads, woke


def early(woke: list[float]) -> int:
    return sum(1 for s in woke if s < LONG - 1.0)
