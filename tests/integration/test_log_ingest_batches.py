"""Ingestion in large batches keeps every guarantee of line-by-line ingestion: redaction, the cap, dense seqs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.job_runs import running_job_runs

from optio.config import Settings
from optio.control.output_relay import TAG
from optio.control.processes import DbSink, redact_all
from optio.security.redact import MASK, Redactor, _may_match, registry_for
from optio.store import logs, migrate
from optio.store import processes as store
from optio.store.db import Database

SECRET = "s3cr3t-Value-0123456789"
TOKEN = "ghp_" + "a1" * 18

fragments = st.sampled_from(["plain words", SECRET, SECRET[:12], "Authorization: Bearer x1y2z3w4v5", TOKEN, "sk-",
                             "AKIA" + "Z" * 16, "é", "\u212a", "eyJhbGciOi.eyJzdWIiOi.sig", "bearer", "\t", ""])
texts = st.lists(st.lists(fragments, max_size=4).map(" ".join), max_size=30)
REDACTOR = Redactor([SECRET])


@settings(max_examples=300)
@given(lines=texts)
def test_a_batch_is_redacted_as_each_line_would_be(lines: list[str]) -> None:
    assert redact_all(REDACTOR.redact, lines) == [REDACTOR.redact(line) for line in lines]


@settings(max_examples=300)
@given(text=st.lists(st.one_of(fragments, st.text(max_size=12)), max_size=8).map("".join))
def test_text_the_prefilter_passes_over_has_nothing_the_pattern_would_find(text: str) -> None:
    pattern, _, literals = REDACTOR._compiled()
    if not _may_match(text, literals):
        assert pattern.search(text) is None


def setup(tmp_path: Path, cap: int) -> tuple[Database, DbSink, int, int]:
    config = Settings(data_dir=tmp_path / "data", max_run_log_bytes=cap)
    db = Database(config.resolved_database_url)
    migrate.upgrade(db)
    ws, [run_id] = running_job_runs(db)
    with db.write() as session:
        store.add(session, workspace_id=ws, key="k", kind="job_run", run_id=run_id, attempt=1, purpose="agent",
                  agent_type="script", log_dir=str(tmp_path))
    registry_for(str(db.engine.url)).put((ws, None, "API_TOKEN"), SECRET)
    return db, DbSink(db, config), ws, run_id


def stored(db: Database, run_id: int, ws: int) -> list[Any]:
    with db.read() as session:
        return logs.read(session, "job_run", run_id, ws, limit=100_000)


def test_a_large_batch_is_stored_redacted_in_order(tmp_path: Path) -> None:
    db, sink, ws, run_id = setup(tmp_path, cap=1 << 30)
    printed = [f"line {i}" for i in range(5000)]
    printed[2500] = f"export API_TOKEN={SECRET}"
    printed[4000] = f"token {TOKEN} leaked"
    sink.on_output("k", "stdout", [TAG + "o" + line for line in printed[:4999]] + [TAG + "e" + printed[4999]], 1)
    sink.on_output("k", "stdout", [TAG + "o" + "after"], 2)
    rows = stored(db, run_id, ws)
    assert [r.seq for r in rows] == list(range(1, 5002))
    assert rows[2500].text == f"export API_TOKEN={MASK}" and rows[4000].text == f"token {MASK} leaked"
    assert [r.text for r in rows[:2500]] == printed[:2500]
    assert [r.stream for r in rows[4998:]] == ["stdout", "stderr", "stdout"] and rows[-1].text == "after"
    assert all(SECRET not in r.text and TOKEN not in r.text for r in rows)


def test_a_batch_crossing_the_cap_keeps_a_prefix_and_one_marker(tmp_path: Path) -> None:
    db, sink, ws, run_id = setup(tmp_path, cap=1024)
    sink.on_output("k", "stdout", [TAG + "o" + f"{i:09d}" for i in range(5000)], 1)  # 10 bytes a line
    sink.on_output("k", "stdout", [TAG + "o" + "more"], 2)
    rows = stored(db, run_id, ws)
    assert [r.text for r in rows[:-1]] == [f"{i:09d}" for i in range(102)]
    assert rows[-1].stream == logs.MARKER_STREAM and "log size cap" in rows[-1].text
    with db.read() as session:
        kept, dropped = store.log_counters(session, "job_run", run_id)
    assert kept == 1020 and dropped == (5000 - 102) * 10 + 5
