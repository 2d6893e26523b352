"""Live run logs: one reader per followed log fans already serialised events out to all its subscribers.

Each subscriber used to poll the database and serialise every line itself, so twenty of them read and encoded
each line twenty times and lagged far behind the agent. Now the first subscriber of a log starts its hub: a task
that reads new lines once, encodes each SSE event once, and appends the bytes to every subscriber's bounded
queue. The hub sleeps until lines arrive: a commit that appended to the log wakes it (`Database.on_commit`,
in this process; `LISTEN` on PostgreSQL, for lines another replica stored), with a slow poll as the fallback.
A commit in this process also hands the hub the lines it stored, when the hub's `Scope` says they are exactly
what its page would read: the hub sends those without reading them back, and reads the database only for
the rest (lines stored elsewhere, a gap, the run's end).

The agent never waits for a reader: ingestion only commits and sets a flag. A subscriber whose queue grows past
its bound (it stopped reading) is dropped: its stream ends with a `dropped` event carrying the last seq it was
sent, and reconnecting with `?after=` that seq (or `Last-Event-ID`) replays the rest and joins the live tail,
with no gap and no duplicate. A subscriber that joins behind the hub catches up the same way: from the events
the hub keeps (as many bytes as one subscriber may have waiting) when they reach back far enough, else from
the database. Twenty viewers opening a busy log a moment apart would otherwise each read and encode everything
it printed so far again.
"""

from __future__ import annotations

import asyncio
import json
import threading
import weakref
from bisect import bisect_right
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from contextlib import suppress
from datetime import datetime
from typing import Any, Protocol

import structlog
from fastapi.concurrency import run_in_threadpool
from pydantic import TypeAdapter

from optio.store import logs as store_logs
from optio.store.db import Database
from optio.store.notify import Listener

log = structlog.get_logger("optio.log_hub")

Page = Callable[[int], "Slice"]
Topic = tuple[str, int]  # (run kind, run id): what a commit that appended lines names
# (run kind, run id, workspace id): a log whose page reads every line appended to that run in that workspace,
# and nothing else, so the lines a commit appended can be sent as they are.
Scope = tuple[str, int, int]
KEEP_ALIVE = b": keep-alive\n\n"
KEEP_ALIVE_S = 10.0


class Line(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def attempt(self) -> int: ...
    @property
    def stream(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


class Slice(Protocol):
    """A page of a log as the services read it (`LogSlice`, `TurnLogSlice`)."""

    @property
    def lines(self) -> Sequence[Any]: ...  # of `Line`s (store rows)
    @property
    def last_seq(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def done(self) -> bool: ...


_json = json.JSONEncoder(ensure_ascii=False).encode
_quote = json.encoder.encode_basestring  # what `_json` does with a str, without the method call around it
_stamp = TypeAdapter(datetime)


def _events(lines: Sequence[Line]) -> list[str]:
    """The `line` events of `lines`, their data the same JSON as the `LogLine` of the logs page, encoded without
    building one: every line of a live log passes through here once, so it is one f-string per line, with the
    timestamps and stream names (which a batch shares) encoded once each."""
    stamps: dict[datetime, str] = {}
    streams: dict[str, str] = {}
    events = []
    for line in lines:
        seq, created, stream = line.seq, line.created_at, line.stream
        stamp = stamps.get(created)
        if stamp is None:
            stamp = stamps[created] = _json(_stamp.dump_python(created, mode="json"))
        quoted = streams.get(stream)
        if quoted is None:
            quoted = streams[stream] = _quote(stream)
        events.append(f'id: {seq}\nevent: line\ndata: {{"seq":{seq},"attempt":{line.attempt},"stream":{quoted},'
                      f'"text":{_quote(line.text)},"created_at":{stamp}}}\n\n')
    return events


def encode(lines: Sequence[Line]) -> bytes:
    """The `line` events of `lines`, joined."""
    return "".join(_events(lines)).encode()


def end_event(state: str, last_seq: int) -> bytes:
    return f"event: end\ndata: {json.dumps({'state': state, 'last_seq': last_seq})}\n\n".encode()


def dropped_event(last_seq: int) -> bytes:
    """Ends a stream that fell too far behind; the client reconnects with `?after=last_seq`."""
    data = json.dumps({"last_seq": last_seq, "reason": "the client fell behind; reconnect with ?after=last_seq"})
    return f"event: dropped\ndata: {data}\n\n".encode()


class _Batch:
    """One read of the hub (the lines after `start`), encoded once: their seqs, and all the events joined (one
    str encoded once), which is what every subscriber is sent."""

    def __init__(self, start: int, lines: Sequence[Line]) -> None:
        self.start = start
        self.seqs = [line.seq for line in lines]
        self.data = "".join(_events(lines)).encode()

    def after(self, cursor: int) -> bytes:
        """The events with seq > cursor (for a subscriber that joined in the middle of the batch)."""
        if cursor < self.seqs[0]:
            return self.data
        at = bisect_right(self.seqs, cursor)
        if at == len(self.seqs):
            return b""
        # An event's fields hold no raw newline (the JSON escapes them), so a blank line followed by its id
        # is where it starts, and nowhere else.
        return self.data[self.data.index(b"\n\nid: %d\n" % self.seqs[at]) + 2:]


class _Subscriber:
    def __init__(self, cursor: int, limit: int) -> None:
        self.cursor = cursor  # the last seq queued for it
        self.sent = cursor  # the last seq handed to its response
        self.limit = limit
        self.chunks: deque[tuple[bytes, int]] = deque()
        self.size = 0
        self.ready = asyncio.Event()
        self.end: bytes | None = None
        self.dropped = False

    def offer(self, batch: _Batch) -> bool:
        """Queue the batch's events past the cursor; False if that would pass the bound (it is then dropped)."""
        if batch.seqs[-1] <= self.cursor:
            return True
        data = batch.after(self.cursor)
        if self.chunks and self.size + len(data) > self.limit:
            return False
        self.chunks.append((data, batch.seqs[-1]))
        self.size += len(data)
        self.cursor = batch.seqs[-1]
        self.ready.set()
        return True

    def drop(self) -> None:
        self.dropped = True
        self.chunks.clear()
        self.size = 0
        self.ready.set()

    def finish(self, end: bytes) -> None:
        self.end = end
        self.ready.set()


class LogHub:
    """The one reader of one log on one event loop; see the module docstring."""

    def __init__(self, hubs: LogHubs, key: Hashable, topic: Topic, page: Page, cursor: int,
                 scope: Scope | None) -> None:
        self.hubs = hubs
        self.key = key
        self.topic = topic
        self.page = page
        self.scope = scope
        self.handed: deque[tuple[store_logs.Appended, int]] = deque()  # lines appended here, not sent yet
        self.handed_size = 0  # their text, at most `hubs.buffer_bytes`: past it the hub is behind, and reads
        self.cursor = cursor  # every line up to here has been offered to the subscribers
        self.loop = asyncio.get_running_loop()
        self.subscribers: set[_Subscriber] = set()
        self.recent: deque[_Batch] = deque()  # the last batches, at most `hubs.buffer_bytes` (or the last one)
        self.recent_bytes = 0
        self.wake = asyncio.Event()
        self.closed = False
        self.task: asyncio.Task[None] | None = None

    def add(self, sub: _Subscriber) -> None:
        self.subscribers.add(sub)
        if self.task is None:
            self.task = self.loop.create_task(self._run())

    def replay(self, cursor: int) -> list[bytes] | None:
        """The events after `cursor` up to the hub's, from the batches it kept; None if they do not reach back
        that far."""
        if not self.recent or cursor < self.recent[0].start:
            return None
        return [batch.after(cursor) for batch in self.recent if batch.seqs[-1] > cursor]

    def keep(self, batch: _Batch) -> None:
        self.recent.append(batch)
        self.recent_bytes += len(batch.data)
        while self.recent_bytes > self.hubs.buffer_bytes and len(self.recent) > 1:
            self.recent_bytes -= len(self.recent.popleft().data)

    def hand(self, appended: list[store_logs.Appended]) -> None:
        """Lines a commit appended to this hub's scope (on the hub's loop, before the wake-up it comes with)."""
        for lines in appended:
            size = sum(len(text) for _, text in lines.entries)
            self.handed.append((lines, size))
            self.handed_size += size
        if self.handed_size > self.hubs.buffer_bytes:
            self.handed.clear()  # the database has them all
            self.handed_size = 0

    def _take_handed(self) -> list[store_logs.LogRow]:
        """The handed lines that continue the log right after the cursor (none if what comes next was not
        handed: a gap, read from the database)."""
        rows: list[store_logs.LogRow] = []
        cursor = self.cursor
        while self.handed:
            lines, size = self.handed[0]
            if lines.first_seq > cursor + 1:
                break
            self.handed.popleft()
            self.handed_size -= size
            skip = cursor + 1 - lines.first_seq  # sent already: read from the database before they were handed
            rows.extend(store_logs.LogRow(seq, lines.attempt, stream, text, lines.created_at)
                        for seq, (stream, text) in enumerate(lines.entries[skip:], cursor + 1))
            cursor = max(cursor, lines.first_seq + len(lines.entries) - 1)
        return rows

    def remove(self, sub: _Subscriber) -> None:
        self.subscribers.discard(sub)
        if not self.subscribers:
            self.wake.set()  # let the reader see it has nobody left and stop

    async def _offer(self, lines: Sequence[Line], last_seq: int) -> None:
        batch = _Batch(self.cursor, lines)
        self.keep(batch)
        self.cursor = last_seq
        for sub in list(self.subscribers):
            if not sub.offer(batch):
                self.subscribers.discard(sub)
                sub.drop()
                log.info("log_subscriber_dropped", key=str(self.key), last_seq=sub.sent)
        # Let the subscribers take it before anything more is offered: handed lines can follow at once, and a
        # subscriber that had no turn to take this would look as if it had stopped reading.
        await asyncio.sleep(0)

    async def _run(self) -> None:
        try:
            while self.subscribers:
                # Cleared before the read: a commit during the read sets it again, so no wake-up is lost.
                self.wake.clear()
                handed = self._take_handed()
                if handed:
                    await self._offer(handed, handed[-1].seq)
                    continue
                # Still read after handed lines: for lines stored elsewhere, and whether the log is done.
                current = await run_in_threadpool(self.page, self.cursor)
                if current.lines:
                    await self._offer(current.lines, current.last_seq)
                    continue
                if current.done:
                    end = end_event(current.state, self.cursor)
                    for sub in self.subscribers:
                        sub.finish(end)
                    return
                with suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.hubs.poll_s)
        except Exception:
            log.exception("log_hub_failed", key=str(self.key))
            for sub in self.subscribers:
                sub.drop()  # they reconnect and replay from the database
        finally:
            self.closed = True
            self.hubs.forget(self)


class LogHubs:
    """The hubs of one database, per event loop and log; woken by commits that appended to their log."""

    def __init__(self, db: Database, *, buffer_bytes: int, poll_s: float) -> None:
        self.db = db
        self.buffer_bytes = buffer_bytes
        self.poll_s = poll_s
        self._hubs: dict[tuple[asyncio.AbstractEventLoop, Hashable], LogHub] = {}
        self._lock = threading.Lock()  # commits arrive on any thread
        self._listener: Listener | None = None
        db.on_commit(self._committed)

    def _committed(self, session: Any) -> None:
        changed = session.info.pop(store_logs.CHANGED, None)
        appended: list[store_logs.Appended] = session.info.pop(store_logs.APPENDED, None) or []
        if changed:
            self._wake(lambda hub: hub.topic in changed, appended)

    def _wake(self, which: Callable[[LogHub], bool], appended: Sequence[store_logs.Appended] = ()) -> None:
        with self._lock:
            hubs = [hub for hub in self._hubs.values() if which(hub)]
        for hub in hubs:
            mine = [lines for lines in appended
                    if (lines.kind, lines.run_id, lines.workspace_id) == hub.scope] if hub.scope else []
            with suppress(RuntimeError):  # its loop has closed
                if mine:
                    hub.loop.call_soon_threadsafe(hub.hand, mine)
                hub.loop.call_soon_threadsafe(hub.wake.set)

    def _listen(self) -> None:
        """On PostgreSQL, lines stored by another replica wake the hubs too (the poll stays the fallback)."""
        if self._listener is None and self.db.dialect == "postgresql":
            self._listener = Listener(self.db.url, lambda: self._wake(lambda hub: True),
                                      channel=store_logs.LOG_CHANNEL)
            self._listener.start()

    def forget(self, hub: LogHub) -> None:
        with self._lock:
            if self._hubs.get((hub.loop, hub.key)) is hub:
                del self._hubs[(hub.loop, hub.key)]

    def _hub(self, key: Hashable, topic: Topic, page: Page, cursor: int, scope: Scope | None) -> LogHub:
        loop = asyncio.get_running_loop()
        with self._lock:
            hub = self._hubs.get((loop, key))
            if hub is None or hub.closed:
                hub = self._hubs[(loop, key)] = LogHub(self, key, topic, page, cursor, scope)
        self._listen()
        return hub

    async def follow(self, key: Hashable, topic: Topic, page: Page, after: int,
                     scope: Scope | None = None) -> AsyncIterator[bytes]:
        """The SSE bytes of one subscriber: lines after `after` (replayed, then live), then `end` or `dropped`.

        `key` names the log as the page reads it (the same for every subscriber allowed to read it); `topic`
        is the run whose appends wake it; `scope`, if the page reads exactly the lines appended to one run in
        one workspace, lets a commit hand them over.
        """
        cursor = after
        replay: list[bytes] = []
        while True:
            hub = self._hub(key, topic, page, cursor, scope)
            # No await between the check and joining: the hub offers everything after its cursor from here.
            if cursor >= hub.cursor:
                sub = _Subscriber(cursor, self.buffer_bytes)
                hub.add(sub)
                break
            # Behind the hub (joined late, or resuming): catch up from what it kept, or else from the database.
            kept = hub.replay(cursor)
            if kept is not None:
                replay = kept
                sub = _Subscriber(hub.cursor, self.buffer_bytes)
                hub.add(sub)
                break
            current = await run_in_threadpool(page, cursor)
            if current.lines:
                yield encode(current.lines)
                cursor = current.last_seq
            if current.done:
                yield end_event(current.state, cursor)
                return
        try:
            for data in replay:
                yield data
            while True:
                if not sub.chunks and sub.end is None and not sub.dropped:
                    sub.ready.clear()
                    try:
                        await asyncio.wait_for(sub.ready.wait(), KEEP_ALIVE_S)
                    except TimeoutError:
                        yield KEEP_ALIVE
                        continue
                while sub.chunks:
                    data, last = sub.chunks.popleft()
                    sub.size -= len(data)
                    yield data
                    sub.sent = last
                if sub.dropped:
                    yield dropped_event(sub.sent)
                    return
                if sub.end is not None:
                    yield sub.end
                    return
        finally:
            hub.remove(sub)


_registries: weakref.WeakKeyDictionary[Database, LogHubs] = weakref.WeakKeyDictionary()
_registries_lock = threading.Lock()


def hubs_for(db: Database, *, buffer_bytes: int, poll_s: float) -> LogHubs:
    """The log hubs of `db` (one set per database, made on first use)."""
    with _registries_lock:
        hubs = _registries.get(db)
        if hubs is None:
            hubs = _registries[db] = LogHubs(db, buffer_bytes=buffer_bytes, poll_s=poll_s)
        return hubs
