"""Live log streams fanned out by one reader per log: every subscriber gets every line once, in order; a reader
that stops is dropped without holding anyone up and resumes with no gap; new lines wake the reader.

The server's fallback poll is set far beyond every wait here (OPTIO_LOG_STREAM_POLL_S), so a stream that only
polled would stall these tests rather than pass them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from tests.support.optio_server import OptioServer
from tests.support.sse_client import Event, SseStream

POLL_S = 600
# Larger than one read of the loud log below (5,000 lines of 100 characters: 1.1 MB of events), so a reader
# that keeps up is never dropped for having one read waiting behind the one it is taking in.
BUFFER = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OptioServer]:
    server = OptioServer(tmp_path_factory.mktemp("fanout") / "data", env={"OPTIO_LOG_STREAM_POLL_S": str(POLL_S),
                                                 "OPTIO_LOG_STREAM_BUFFER_BYTES": str(BUFFER)}).start()
    try:
        yield server
    finally:
        server.stop()


def start(server: OptioServer, name: str, command: str) -> int:
    server.cli("job", "create", "--name", name, "--prompt", "p", "--command", command, check=True)
    res = server.api("POST", f"/api/jobs/{name}/runs")
    res.raise_for_status()
    return int(res.json()["id"])


def stream(server: OptioServer, run_id: int, after: int = 0, **kwargs: object) -> SseStream:
    return SseStream.open(server.port, f"/api/runs/{run_id}/logs/stream?after={after}", server.admin_key,
                          **kwargs)  # type: ignore[arg-type]


def lines(events: list[Event]) -> list[Event]:
    return [e for e in events if e.event == "line"]


def follow(server: OptioServer, run_id: int, first: SseStream) -> list[Event]:
    """Every event of the run as a reconnecting client sees it: a `dropped` stream is resumed after its last seq.

    A reader that keeps up can still be dropped when the machine is loaded enough that it falls a whole buffer
    behind; that is the designed behaviour, and the client's answer to it is to resume, as an EventSource does.
    """
    events: list[Event] = []
    sub = first
    while True:
        try:
            got = sub.until_end()
        finally:
            sub.close()
        events.extend(e for e in got if e.event != "dropped")
        if got[-1].event != "dropped":
            return events
        sub = stream(server, run_id, after=got[-1].data["last_seq"])


def test_twenty_subscribers_each_get_every_line_exactly_once_in_order(server: OptioServer) -> None:
    # Two bursts with a pause between them, so the subscribers follow a live log rather than replay a finished one.
    run_id = start(server, "bursts", "seq 1 1500; sleep 1; seq 1501 3000")
    subscribers = [stream(server, run_id) for _ in range(20)]
    try:
        with ThreadPoolExecutor(20) as pool:
            got = list(pool.map(SseStream.until_end, subscribers))
    finally:
        for sub in subscribers:
            sub.close()
    for events in got:
        assert events[-1].event == "end" and events[-1].data["state"] == "completed", events[-1]
        received = lines(events)
        assert [e.id for e in received] == list(range(1, len(received) + 1))
        assert [e.data["seq"] for e in received] == [e.id for e in received]
        assert [e.data["text"] for e in received if e.data["stream"] == "stdout"] == [str(i) for i in range(1, 3001)]
        assert events[-1].data["last_seq"] == received[-1].id


def test_a_subscriber_that_stops_reading_is_dropped_and_resumes_with_no_gap(server: OptioServer) -> None:
    # About 9 MB of events: more than the kernel's socket buffers and the stream's bound hold for a reader
    # that reads nothing.
    run_id = start(server, "loud", 'yes "$(printf %0100d 0)" | head -n 40000; echo last')
    stalled = stream(server, run_id, rcvbuf=4096)
    stalled.next_event()  # connected and following; from here on it reads nothing
    readers = [stream(server, run_id) for _ in range(3)]
    try:
        with ThreadPoolExecutor(3) as pool:
            got = list(pool.map(lambda reader: follow(server, run_id, reader), readers))
        # The others and the agent went on: each reader has the whole log, each line once, and the run completed.
        for events in got:
            assert events[-1].event == "end" and events[-1].data["state"] == "completed"
            assert [e.id for e in lines(events)] == list(range(1, len(lines(events)) + 1))
            assert lines(events)[-1].data["text"] == "last"
        total = lines(got[0])[-1].id
        # The stalled reader gets what was sent before it was dropped, then a `dropped` event naming the last seq.
        events = stalled.until_end()
        assert events[-1].event == "dropped", events[-1]
        before = lines(events)
        resume_at = events[-1].data["last_seq"]
        assert [e.id for e in before] == list(range(1, resume_at + 1))
        assert resume_at < total
        # Resuming after that seq yields exactly the rest: no gap, no duplicate.
        resumed = stream(server, run_id, after=resume_at)
        try:
            rest = resumed.until_end()
        finally:
            resumed.close()
        assert rest[-1].event == "end"
        assert [e.id for e in lines(rest)] == list(range(resume_at + 1, total + 1))
    finally:
        stalled.close()
        for reader in readers:
            reader.close()


def test_a_new_line_wakes_the_stream_without_waiting_for_the_poll(server: OptioServer) -> None:
    run_id = start(server, "waits", 'echo first; while [ ! -e "$HOME/go" ]; do sleep 0.05; done; echo second')
    sub = stream(server, run_id, within=POLL_S / 5)  # a stream that waited for the poll would time out
    try:
        first = sub.next_event()
        while first is not None and first.event != "line":
            first = sub.next_event()
        assert first is not None and first.data["text"] == "first"
        (server.data_dir / "homes" / f"job_run-{run_id}" / "go").touch()
        events = sub.until_end()
        assert [e.data["text"] for e in lines(events)] == ["first", "second"]
        assert events[-1].event == "end" and events[-1].data["state"] == "completed"
    finally:
        sub.close()


def test_last_event_id_resumes_after_the_last_line_seen(server: OptioServer) -> None:
    run_id = start(server, "short", "seq 1 50")
    server.wait_state(f"/api/runs/{run_id}", {"completed"})
    # What a browser's EventSource sends when it reconnects by itself.
    headers = {"Authorization": f"Bearer {server.admin_key}", "Last-Event-ID": "40"}
    with httpx.stream("GET", f"{server.url}/api/runs/{run_id}/logs/stream", headers=headers, timeout=60) as res:
        data = [json.loads(line[len("data: "):]) for line in res.iter_lines() if line.startswith("data: ")]
    assert [d["seq"] for d in data[:-1]] == list(range(41, 51)) and data[-1]["state"] == "completed"


def test_subscribers_that_join_behind_the_live_tail_get_the_rest_once_in_order(server: OptioServer) -> None:
    # The first subscriber keeps the log's reader going through the pause; the others join during it, behind
    # the reader (caught up from the events it kept, or from the database) and at its cursor.
    run_id = start(server, "joiners", "seq 1 1500; sleep 1; seq 1501 3000")
    first = stream(server, run_id)
    joined: list[SseStream] = []
    try:
        while (event := first.next_event()) is not None and event.id != 1500:
            pass
        starts = (1499, 1000, 0, 1500)
        joined = [stream(server, run_id, after=after) for after in starts]
        with ThreadPoolExecutor(len(joined) + 1) as pool:
            got = list(pool.map(SseStream.until_end, [first, *joined]))
    finally:
        for sub in [first, *joined]:
            sub.close()
    for after, events in zip((0, *starts), got, strict=True):
        assert events[-1].event == "end" and events[-1].data["last_seq"] == 3000, (after, events[-1])
        assert [e.id for e in lines(events)] == list(range(after + 1, 3001)), after
        assert [e.data["text"] for e in lines(events)] == [str(i) for i in range(after + 1, 3001)]
