"""The workers' wake signal: a commit that enqueued n due items wakes n idle workers, not all of them.

Each needless wake is a claim transaction that finds nothing and holds the write lock while it looks.
Real threads waiting on the real signal (the commit hook that calls it: tests/unit/control/test_executor.py).
"""

from __future__ import annotations

import time

from tests.support.wake import LONG, early, waiters

from optio.control.context import WakeSignal


def test_n_due_items_wake_n_idle_workers() -> None:
    signal = WakeSignal()
    threads, woke = waiters(signal, 4)
    signal.notify(1)
    time.sleep(0.3)
    assert early(woke) == 1, woke
    signal.notify(2)
    time.sleep(0.3)
    assert early(woke) == 3, woke
    signal.notify()  # everyone (a stop, another replica's enqueue)
    for t in threads:
        t.join(LONG)
    assert early(woke) == 4, woke


def test_a_wake_while_every_worker_is_busy_is_kept_for_one_of_them() -> None:
    """A worker between its empty claim and its wait still sees a wake made meanwhile: one, not one per item."""
    signal = WakeSignal()
    signal.notify(5)
    start = time.monotonic()
    signal.wait(LONG)
    assert time.monotonic() - start < 1.0
    start = time.monotonic()
    signal.wait(0.2)  # the other four were not kept: nobody was waiting for them
    assert time.monotonic() - start >= 0.2
