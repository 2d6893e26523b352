"""Leases, sweeps, wake-ups and rate counters shared by replicas of one database (SQLite file and PostgreSQL).

A replica that dies is a real process killed with SIGKILL; its lease must move to another replica within one
lease period and never while it lives. Wake-ups on PostgreSQL are `NOTIFY`s that arrive only when the
enqueuing transaction commits.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from optio.control.replicas import Replica
from optio.services import rate_limits
from optio.store import leases, migrate, notify, queue
from optio.store.db import Database
from optio.store.models import Lease
from optio.store.types import utcnow

LEASE_S = 3.0


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'optio.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    migrate.upgrade(database)
    try:
        yield database
    finally:
        database.dispose()


def live_owners(db: Database) -> set[str]:
    with db.read() as session:
        return leases.live_owners(session, "replica:", now=utcnow())


HOLDER = textwrap.dedent("""
    import sys, time
    from optio.control.replicas import Replica
    from optio.store.db import Database
    replica = Replica(Database(sys.argv[1]), lease_s=float(sys.argv[2]), replica_id="doomed")
    replica.start()
    assert replica.try_hold("sweep:test")
    print("held", flush=True)
    time.sleep(600)
""")


def test_a_dead_holders_lease_moves_to_another_replica_within_one_lease_period(db: Database, db_url: str) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, db_url, str(LEASE_S)], stdout=subprocess.PIPE,
                              text=True)
    other = Replica(db, lease_s=LEASE_S, replica_id="survivor")
    try:
        assert holder.stdout is not None
        while (line := holder.stdout.readline()) and line.strip() != "held":
            pass
        assert line.strip() == "held", "the holder did not start"
        other.start()
        other.want("sweep:test")
        # While the holder lives (and renews), nobody else gets it: for several lease periods.
        deadline = time.monotonic() + 2 * LEASE_S
        while time.monotonic() < deadline:
            assert not other.try_hold("sweep:test")
            assert "doomed" in live_owners(db)
            time.sleep(0.1)
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        killed = time.monotonic()
        within = LEASE_S + LEASE_S / 3 + 0.5
        while not other.holds("sweep:test"):
            assert time.monotonic() - killed < within, "no takeover within a lease period"
            time.sleep(0.02)
        # Its own lease was last renewed a moment after the work's, so it may outlive the takeover by that much.
        while "doomed" in live_owners(db):
            assert time.monotonic() - killed < within, "a dead replica still counted live"
            time.sleep(0.02)
        with db.read() as session:
            assert leases.holder(session, "sweep:test", now=utcnow()) == "survivor"
    finally:
        holder.kill()
        other.stop()


def test_sweeps_never_overlap_and_a_graceful_stop_hands_over_at_once(db: Database) -> None:
    first, second = Replica(db, lease_s=LEASE_S, replica_id="first"), Replica(db, lease_s=LEASE_S,
                                                                            replica_id="second")
    running: list[str] = []
    overlaps: list[tuple[str, ...]] = []
    ran: dict[str, int] = {"first": 0, "second": 0}
    stops = {"first": threading.Event(), "second": threading.Event()}

    def loop(replica: Replica) -> None:
        while not stops[replica.id].is_set():
            with replica.sweep("sweep:test") as mine:
                if mine:
                    running.append(replica.id)
                    if len(running) > 1:
                        overlaps.append(tuple(running))
                    ran[replica.id] += 1
                    time.sleep(0.02)
                    running.remove(replica.id)
            time.sleep(0.01)

    first.start()
    first.want("sweep:test")
    first.renew()
    second.start()
    threads = [threading.Thread(target=loop, args=(r,)) for r in (first, second)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5 * LEASE_S)
        assert ran["first"] > 5
        # As a server stops: its sweeps end, then its leases are released and the other's next try takes them.
        stops["first"].set()
        threads[0].join(5)
        first.stop()
        stopped = time.monotonic()
        before = ran["second"]
        while ran["second"] == before:
            assert time.monotonic() - stopped < LEASE_S, "a released lease was not taken at the next try"
            time.sleep(0.01)
    finally:
        for event in stops.values():
            event.set()
        for t in threads:
            t.join(5)
        second.stop()
    assert overlaps == []
    with db.read() as session:
        runs = leases.sweep_runs(session, "sweep:test")
    assert {r.owner for r in runs} == {"first", "second"}
    assert all(r.finished_at is not None for r in runs)
    ordered = sorted(runs, key=lambda r: r.started_at)
    assert all(a.finished_at is not None and a.finished_at <= b.started_at for a, b in itertools.pairwise(ordered))


def test_rate_counters_are_shared_by_every_database_user(db: Database, db_url: str) -> None:
    """Two Database objects (two replicas' engines) count into one window."""
    other = Database(db_url)
    try:
        now = 1_000_000.0
        results = [rate_limits.hit(d, "login:10.0.0.1", limit=3, window_s=60, now=now + i)
                   for i, d in enumerate([db, other, db, other])]
        assert results[:3] == [None, None, None]
        assert results[3] == pytest.approx(60 - 3)  # the window opened at the first hit
        # Another client and the next window start afresh.
        assert rate_limits.hit(other, "login:10.0.0.2", limit=3, window_s=60, now=now) is None
        assert rate_limits.hit(db, "login:10.0.0.1", limit=3, window_s=60, now=now + 60) is None
    finally:
        other.dispose()


def test_an_enqueue_wakes_a_listener_of_another_engine_when_it_commits(pg_url: str) -> None:
    writer = Database(pg_url)
    migrate.upgrade(writer)
    woken = threading.Event()
    listener = notify.Listener(pg_url, woken.set)
    listener.start()
    try:
        assert listener.listening.wait(10)
        time.sleep(0.2)
        woken.clear()  # the wake-up every (re)connect makes
        with writer.write() as session:
            queue.enqueue(session, "job_run", 1, 1, reason="test")
            queue.enqueue(session, "job_run", 2, 1, reason="test")
            session.flush()
            assert not woken.wait(0.5), "woken before the enqueue committed"
        assert woken.wait(2.0), "no wake-up after commit"
        woken.clear()
        with pytest.raises(RuntimeError), writer.write() as session:
            queue.enqueue(session, "job_run", 3, 1)
            raise RuntimeError("rolled back")
        assert not woken.wait(0.5), "a rolled-back enqueue woke the listener"
    finally:
        listener.stop()
        writer.dispose()


def test_a_sweep_starts_only_on_a_freshly_renewed_lease(db: Database) -> None:
    """The keeper renews every third of a period; a run starting near the end of a hold renews first, so a slow
    renewal after it cannot let another replica in while it runs."""
    replica = Replica(db, lease_s=LEASE_S, replica_id="only")
    assert replica.try_hold("sweep:test")  # no keeper thread: nothing renews behind the test's back
    with db.read() as session:
        first_expiry = session.scalar(select(Lease.expires_at).where(Lease.name == "sweep:test"))
    time.sleep(LEASE_S * 0.5)  # the hold has less than half a period left
    with replica.sweep("sweep:test") as mine:
        assert mine
        assert replica._held_for("sweep:test") > LEASE_S * 0.8
        with db.read() as session:
            assert session.scalar(select(Lease.expires_at).where(Lease.name == "sweep:test")) > first_expiry
    with replica.sweep("sweep:test") as mine:  # fresh enough: no renewal needed to start
        assert mine
    replica.stop()
