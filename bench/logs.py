"""Run logs at volume: ingestion of one agent printing N lines, and 20 live SSE subscribers following it.

A real `optio serve` subprocess (SQLite, auth and the sandbox as configured by default) runs a job whose command
is `seq N`, through the real runtime, output relay and `DbSink`.

- Ingestion: lines / (agent process row created -> process finished), both read from the database; the process
  is marked finished only after its last line was stored, so this is "agent started -> every line stored".
- Fan-out: SUBSCRIBERS streaming clients (bare HTTP/1.1 on asyncio sockets, in this process) follow
  `/api/runs/{id}/logs/stream` from before the agent starts; each checks it got every seq exactly once, in order.
  Per subscriber: lines / (agent started -> its `end` event); and the time from the agent's end to the last
  subscriber done.
- Baselines, in the same run: `seq N > file` (the physical floor) and the same through Optio's output relay
  (`seq N` behind the relay > file: what the agent side costs before Optio reads a byte).

usage: .venv/bin/python bench/logs.py [N_LINES] [SUBSCRIBERS]
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.optio_server import OptioServer  # noqa: E402

from optio.control import output_relay  # noqa: E402

# Every SSE field starts after a newline (the client keeps the one that ends the previous event), and a line's
# JSON text cannot hold a raw newline: a literal prefix the regex engine scans for fast.
ID = re.compile(rb"\nid: (\d+)\nevent: line\n")


def timed_shell(argv: list[str], target: Path) -> float:
    with target.open("wb") as out:
        started = time.perf_counter()
        subprocess.run(argv, stdout=out, check=True)
        return time.perf_counter() - started


def epoch(value: str) -> float:
    return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()


def process_times(server: OptioServer, run_id: int, timeout: float = 600) -> tuple[float, float]:
    """(started, finished) of the run's agent process, epoch seconds, once it finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(server.data_dir / "optio.db") as db:
            row = db.execute("SELECT started_at, finished_at FROM agent_processes WHERE run_kind = 'job_run' "
                             "AND run_id = ? AND purpose = 'agent'", (run_id,)).fetchone()
        if row is not None and row[1] is not None:
            return epoch(row[0]), epoch(row[1])
        time.sleep(0.05)
    raise RuntimeError(f"run {run_id}'s process did not finish:\n{server.log()[-3000:]}")


def start_run(server: OptioServer, job: str) -> int:
    res = server.api("POST", f"/api/jobs/{job}/runs")
    res.raise_for_status()
    return int(res.json()["id"])


async def subscribe(server: OptioServer, run_id: int, n_lines: int, ids: list[bytes]) -> tuple[int, float, float]:
    """Follow the run's live log to its `end`; (lines received, epoch time connected, epoch time done).

    A bare HTTP/1.1 client on an asyncio socket (a general client's parsing, twenty times over in one process,
    would measure the client); it checks that every seq arrives exactly once, in order: the ids of the `line`
    events it got, compared with `ids` (every seq, as digits: made once for all the subscribers)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, limit=1 << 20)
    writer.write((f"GET /api/runs/{run_id}/logs/stream HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                  f"Authorization: Bearer {server.admin_key}\r\nAccept: text/event-stream\r\n\r\n").encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
        raise AssertionError(f"unexpected response: {head!r}")
    connected = time.time()
    expected = 1
    rest = b"\n"  # every event's fields follow a newline, the first event's too
    try:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                break
            data = rest + await reader.readexactly(size + 2)  # the chunk and its "\r\n"
            end = len(data) - 2
            cut = data.rfind(b"\n\n", 0, end) + 1  # the events before the cut (searched in place: no copies)
            if cut == 0:
                rest = data[:end]
                continue
            rest = data[cut:end]  # starts with "\n"
            got = ID.findall(data, 0, cut)
            if got != ids[expected - 1:expected - 1 + len(got)]:
                raise AssertionError(f"subscriber got seqs out of order (or unexpected ones) after {expected - 1}")
            expected += len(got)
            if data.find(b"\nevent: end\n", 0, cut) >= 0:
                break
            if data.find(b"\nevent: dropped\n", 0, cut) >= 0:
                raise AssertionError("subscriber was dropped")
    finally:
        writer.close()
    if expected - 1 < n_lines:
        raise AssertionError(f"subscriber got {expected - 1} lines, expected at least {n_lines}")
    return expected - 1, connected, time.time()


async def fan_out(server: OptioServer, job: str, n_lines: int, subscribers: int
                  ) -> tuple[int, list[tuple[int, float, float]]]:
    """Start a run and follow it with `subscribers` clients (one connection each) from before its agent starts."""
    ids = [b"%d" % seq for seq in range(1, n_lines + 10_000)]  # room for lines Optio may add (none for `seq`)
    run_id = await asyncio.to_thread(start_run, server, job)
    done = await asyncio.gather(*(subscribe(server, run_id, n_lines, ids) for _ in range(subscribers)))
    return run_id, list(done)


def main() -> None:
    n_lines = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    subscribers = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    with tempfile.TemporaryDirectory(prefix="optio-bench-logs-") as tmp:
        base = Path(tmp)
        seq_s = timed_shell(["seq", str(n_lines)], base / "seq.out")
        relay_s = timed_shell(output_relay.wrap(["seq", str(n_lines)]), base / "relay.out")
        server = OptioServer(base / "data", env={"OPTIO_MAX_RUN_LOG_BYTES": str(1 << 30)}).start()
        try:
            server.cli("job", "create", "--name", "loud", "--prompt", "p", "--command", f"seq {n_lines}",
                       check=True)
            # 1. ingestion alone
            run_id = start_run(server, "loud")
            started, finished = process_times(server, run_id)
            ingest_s = finished - started
            # 2. the same with live subscribers, connected before the agent starts printing
            run_id, done = asyncio.run(fan_out(server, "loud", n_lines, subscribers))
            started2, finished2 = process_times(server, run_id)
            load = os.getloadavg()
        finally:
            server.stop()
    rates = sorted(count / (at - started2) for count, _, at in done)
    last_done = max(at for _, _, at in done)
    last_connected = max(at for _, at, _ in done)
    print(f"lines: {n_lines}, subscribers: {subscribers}, load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"baseline  seq N > file:                {n_lines / seq_s:12,.0f} lines/s ({seq_s * 1000:.0f} ms)")
    print(f"baseline  seq N behind the relay:      {n_lines / relay_s:12,.0f} lines/s ({relay_s * 1000:.0f} ms)")
    print(f"ingestion (agent start -> all stored): {n_lines / ingest_s:12,.0f} lines/s ({ingest_s:.2f} s)"
          f"  = {seq_s / ingest_s:.3f}x seq, {relay_s / ingest_s:.3f}x relay")
    ingest2 = finished2 - started2
    print(f"ingestion with {subscribers} subscribers:       {n_lines / ingest2:12,.0f} lines/s ({ingest2:.2f} s)")
    print(f"per subscriber (agent start -> end):   min {rates[0]:,.0f}  median {rates[len(rates) // 2]:,.0f}  "
          f"max {rates[-1]:,.0f} lines/s  = {rates[0] * seq_s / n_lines:.3f}x seq (min)")
    print(f"agent end -> last subscriber done:     {last_done - finished2:.2f} s "
          f"(the last subscriber connected {last_connected - started2:+.2f} s after the agent started)")


if __name__ == "__main__":
    main()
