"""Follow a growing log file and cut it into complete lines with exact byte offsets.

Agents write to files rather than pipes (a pipe whose reader died would kill the writer with
SIGPIPE), so output is collected by tailing. Every batch carries the byte offset just after its
last line; a reader that persists that offset can resume in a new process without duplicating
or skipping a line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

READ_CHUNK = 256 * 1024
# A line longer than this is cut: buffering without bound would let one runaway line exhaust memory.
MAX_LINE_BYTES = 1024 * 1024
# Lines per batch: each batch is one transaction of the sink, whose fixed cost (looking up the process, moving
# its offset and the run's counters) a few hundred lines did not amortise; a few thousand do.
MAX_BATCH_LINES = 5000


@dataclass(frozen=True)
class LineBatch:
    lines: list[str]
    end_offset: int


class FileTail:
    """Tails one file from a starting offset.

    Use :meth:`peek` to get the next batch and :meth:`commit` once it was accepted; a batch that
    was not committed is offered again, which is what makes delivery retryable.
    """

    def __init__(
        self,
        path: Path,
        offset: int = 0,
        *,
        max_lines: int = MAX_BATCH_LINES,
        max_bytes: int = 1024 * 1024,
    ) -> None:
        self.path = path
        self.offset = offset
        self._max_lines = max_lines
        self._max_bytes = max_bytes
        self._buf = b""
        self._fh: BinaryIO | None = None
        self._pending: tuple[LineBatch, int] | None = None

    def _read_more(self) -> None:
        """Read what the file has beyond the buffer, keeping the buffer bounded."""
        if self._fh is None:
            try:
                self._fh = self.path.open("rb")
            except FileNotFoundError:
                return
            self._fh.seek(self.offset)
        limit = max(self._max_bytes, MAX_LINE_BYTES) * 2
        while len(self._buf) < limit:
            data = self._fh.read(READ_CHUNK)
            if not data:
                return
            self._buf += data

    def peek(self, *, final: bool = False) -> LineBatch | None:
        """The next batch of complete lines, or None when there is none yet.

        With ``final`` (the writer has ended), a trailing line without newline counts as complete.
        """
        if self._pending is not None:
            return self._pending[0]
        self._read_more()
        lines: list[bytes] = []
        consumed = 0
        buf = self._buf
        while len(lines) < self._max_lines and consumed < self._max_bytes:
            nl = buf.find(b"\n", consumed)
            if nl < 0:
                rest = len(buf) - consumed
                if rest and (final or rest >= MAX_LINE_BYTES):
                    cut = consumed + min(rest, MAX_LINE_BYTES)
                    lines.append(buf[consumed:cut])
                    consumed = cut
                    continue
                break
            if nl - consumed > MAX_LINE_BYTES:
                lines.append(buf[consumed : consumed + MAX_LINE_BYTES])
                consumed += MAX_LINE_BYTES
                continue
            lines.append(buf[consumed:nl])
            consumed = nl + 1
        if not lines:
            return None
        batch = LineBatch([line.decode("utf-8", errors="replace") for line in lines], self.offset + consumed)
        self._pending = (batch, consumed)
        return batch

    def commit(self) -> None:
        """Mark the batch returned by :meth:`peek` as delivered."""
        if self._pending is None:
            return
        batch, consumed = self._pending
        self._buf = self._buf[consumed:]
        self.offset = batch.end_offset
        self._pending = None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
