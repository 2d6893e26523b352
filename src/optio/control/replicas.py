"""This process among the replicas sharing one database: its id, its liveness, and single-owner work.

Each replica holds a lease on its own name (`replica:<id>`) for as long as it lives. Work that must have one
owner at a time (a sweep) is a named lease too: every replica wants it, one holds it. A keeper thread renews
what this replica holds and tries to take what it wants every third of a lease period, so when a holder
dies its work moves to another replica within one lease period (plus a third). A graceful stop releases
everything at once.

`holds(name)` answers from this process's own clock: true only until the last successful renewal's lease
would have run out, so a replica cut off from the database stops believing it owns the work before
another replica can take it over.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from optio.store import leases
from optio.store.db import Database
from optio.store.types import utcnow

log = structlog.get_logger("optio.replicas")

REPLICA_PREFIX = "replica:"
# Sweeps with one owner at a time across replicas.
RESYNC = "sweep:resync"
PR_WATCHER = "sweep:pr-watcher"
TRIGGER_SCHEDULER = "sweep:trigger-scheduler"
NOTIFIER = "sweep:notifier"
TICKET_POLLER = "sweep:ticket-poller"


def new_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Replica:
    def __init__(self, db: Database, *, lease_s: float, replica_id: str | None = None) -> None:
        self.db = db
        self.lease_s = lease_s
        self.id = replica_id or new_replica_id()
        self._wanted: set[str] = set()
        self._held: dict[str, float] = {}  # name -> monotonic time until which this replica may act as holder
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lease_name(self) -> str:
        return REPLICA_PREFIX + self.id

    def start(self) -> None:
        """Announce this replica (its liveness lease) and keep its leases from now on."""
        self.want(self.lease_name)
        self.renew()
        self._thread = threading.Thread(target=self._keep, name="optio-leases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Release every lease: the other replicas take the work over at their next renewal."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        with self._lock:
            names = set(self._held) | set(self._wanted)
            self._held.clear()
            self._wanted.clear()
        try:
            with self.db.write() as session:
                for name in names:
                    leases.release(session, name, self.id)
        except Exception:
            log.exception("lease_release_failed", replica=self.id)

    def want(self, name: str) -> None:
        """Ask for `name`: taken at once if free, else whenever its holder lets it run out."""
        with self._lock:
            self._wanted.add(name)

    def try_hold(self, name: str) -> bool:
        """Take or renew `name` now; whether this replica holds it."""
        self.want(name)
        return self._renew_one(name)

    def holds(self, name: str) -> bool:
        return self._held_for(name) > 0

    def _held_for(self, name: str) -> float:
        """Seconds this replica may still act as `name`'s owner without another renewal (0 when it may not)."""
        with self._lock:
            until = self._held.get(name)
        return max(0.0, until - time.monotonic()) if until is not None else 0.0

    def release(self, name: str) -> None:
        with self._lock:
            self._wanted.discard(name)
            self._held.pop(name, None)
        with self.db.write() as session:
            leases.release(session, name, self.id)

    def renew(self) -> None:
        with self._lock:
            names = sorted(self._wanted)
        for name in names:
            self._renew_one(name)

    def _renew_one(self, name: str) -> bool:
        started = time.monotonic()
        try:
            with self.db.write() as session:
                held = leases.acquire(session, name, self.id, ttl_s=self.lease_s, now=utcnow())
        except Exception:
            log.exception("lease_renew_failed", lease=name, replica=self.id)
            return self.holds(name)
        with self._lock:
            before = name in self._held
            if held and name in self._wanted:
                # A margin below the lease: this replica stops acting before any other may take over.
                self._held[name] = started + self.lease_s * 0.9
            else:
                self._held.pop(name, None)
        if held != before and not name.startswith(REPLICA_PREFIX):
            log.info("lease_taken" if held else "lease_lost", lease=name, replica=self.id)
        return held

    def _keep(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            self.renew()

    def live_replicas(self) -> set[str]:
        """The ids of the replicas whose liveness lease has not run out (this one included).

        SQLite has one server: one that restarts at once does not wait for its former self's lease to run out.
        """
        if self.db.dialect == "sqlite":
            return {self.id}
        with self.db.read() as session:
            live = {name.removeprefix(REPLICA_PREFIX) for name in
                    leases.live_owners(session, REPLICA_PREFIX, now=utcnow())}
        return live | {self.id}

    def others_alive(self) -> bool:
        return bool(self.live_replicas() - {self.id})

    @contextmanager
    def sweep(self, name: str) -> Iterator[bool]:
        """Run the body as `name`'s owner when this replica holds it (yields False, and records nothing, else).

        Each run is recorded with its replica and start and end times, so overlaps would show.
        """
        # A run starts only on a lease renewed within the last half period, so it has most of a period before
        # any other replica may take the work even when the renewals after it are slow (a loaded database).
        if self._held_for(name) < self.lease_s * 0.5 and not self.try_hold(name):
            yield False
            return
        with self.db.write() as session:
            sweep_id = leases.sweep_started(session, name, self.id, now=utcnow())
        try:
            yield True
        finally:
            ended = utcnow()  # when the work ended, not when the database got round to recording it
            with self.db.write() as session:
                leases.sweep_finished(session, sweep_id, now=ended)
