"""A followed log's reader sends the lines a commit in this process hands it without reading them back, and
still reads the database for the lines it was not handed (stored by another process), with no gap and no
duplicate where the two meet, and for the run's end."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.support.job_runs import running_job_runs

from optio.api.log_hub import LogHubs
from optio.services import runs as run_service
from optio.store import logs, migrate, runs
from optio.store.db import Database

TERMINAL = frozenset({"completed", "failed", "cancelled"})
IDS = re.compile(rb"(?:^|\n\n)id: (\d+)\n")


def test_handed_lines_are_sent_unread_and_lines_stored_elsewhere_are_read(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optio.db'}"
    db, elsewhere = Database(url), Database(url)  # `elsewhere`: another process's view (no hooks of ours)
    migrate.upgrade(db)
    ws, [run_id] = running_job_runs(db)
    reads: list[list[int]] = []  # the seqs each page read from the database, once it returned

    def page(cursor: int) -> run_service.LogSlice:
        # A page smaller than what is stored elsewhere, so a read can stop inside the lines handed after it.
        got = run_service.log_slice(db, "job_run", run_id, ws, noun="job run", terminal=TERMINAL, after=cursor,
                                    limit=150)
        reads.append([line.seq for line in got.lines])
        return got

    def append(database: Database, first: int, count: int) -> None:
        with database.write() as session:
            logs.append(session, workspace_id=ws, kind="job_run", run_id=run_id, attempt=1,
                        entries=[("stdout", f"line {n}") for n in range(first, first + count)])

    async def follow() -> bytes:
        hubs = LogHubs(db, buffer_bytes=1 << 20, poll_s=600)  # the poll never comes: commits must wake it
        stream = hubs.follow(("job_run", run_id, ws), ("job_run", run_id), page, 0, ("job_run", run_id, ws))
        got = b""

        async def until(seq: int) -> None:
            nonlocal got
            while f"id: {seq}\n".encode() not in got:
                got += await anext(stream)

        first = asyncio.ensure_future(until(100))
        while not reads:  # the reader's first read (of an empty log) is over before anything is stored
            await asyncio.sleep(0.01)
        await asyncio.to_thread(append, db, 1, 100)  # handed
        await first
        await asyncio.to_thread(append, elsewhere, 101, 100)  # not handed, and no wake-up
        await asyncio.to_thread(append, db, 201, 100)  # handed, after a gap: the reader reads from 101 on
        await until(300)
        with db.write() as session:
            assert runs.cas_update(session, "job_run", run_id, None, {"state": "completed"})
        async for data in stream:
            got += data
        return got

    got = asyncio.run(follow())
    assert [int(seq) for seq in IDS.findall(got)] == list(range(1, 301))
    assert [text.decode() for text in re.findall(rb'"text":"([^"]*)"', got)] == [f"line {n}" for n in range(1, 301)]
    assert got.endswith(b'event: end\ndata: {"state": "completed", "last_seq": 300}\n\n')
    read = [seq for seqs in reads for seq in seqs]
    assert len(read) == len(set(read))
    # 101-200 came only from the database; 1-100 and 251-300 only from the commits that stored them; 201-250
    # either way, depending on whether the read after the gap began before or after their commit.
    assert set(range(101, 201)) <= set(read) <= set(range(101, 251)), read
