"""The live log stream's events: each line's data is the logs page's `LogLine` JSON, and a batch cut after any
seq gives exactly the events after it (what a subscriber joining in the middle of one is sent)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from optio.api.log_hub import _Batch, encode
from optio.api.schemas import LogLine
from optio.store.logs import LogRow

AWKWARD = ['plain', 'quote " and backslash \\', 'tab\tcr\rbell\x07nul\x00esc\x1bdel\x7f', 'é ünïcödé 🚀 \u2028 \u00a0',
           '{"json": [1, 2]}', 'id: 5', '', 'data: x\\n\\nid: 3', ' leading and trailing ']
STAMPS = [datetime(2026, 12, 2, 11, 9, 23, 123456, tzinfo=UTC), datetime(2026, 12, 2, 11, 9, 24, tzinfo=UTC)]


def rows(seqs: list[int]) -> list[LogRow]:
    return [LogRow(seq, 1 + seq % 2, ("stdout", "stderr", "event")[seq % 3], AWKWARD[seq % len(AWKWARD)],
                   STAMPS[seq % 2]) for seq in seqs]


def expected(lines: list[LogRow]) -> bytes:
    return b"".join(f"id: {line.seq}\nevent: line\ndata: ".encode()
                    + LogLine.model_validate(line).model_dump_json().encode() + b"\n\n" for line in lines)


def test_every_line_event_carries_the_logs_page_json_of_its_line() -> None:
    lines = rows(list(range(1, 40)))
    data = encode(lines)
    assert data == expected(lines)
    events = data.decode().split("\n\n")[:-1]
    assert [json.loads(event.split("\ndata: ", 1)[1]) for event in events] == [
        LogLine.model_validate(line).model_dump(mode="json") for line in lines]


@pytest.mark.parametrize("seqs", [list(range(11, 31)), [3, 4, 7, 8, 9, 15, 40, 41, 42, 90]])
def test_a_batch_after_any_cursor_holds_exactly_the_later_events(seqs: list[int]) -> None:
    lines = rows(seqs)
    batch = _Batch(seqs[0] - 1, lines)
    assert batch.data == expected(lines)
    for cursor in range(seqs[0] - 2, seqs[-1] + 2):
        assert batch.after(cursor) == expected([line for line in lines if line.seq > cursor]), cursor
