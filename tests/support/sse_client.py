"""A bare HTTP/1.1 server-sent-events client on a socket, for tests that need to control reading.

A general client reads ahead into its own buffers; this one reads only when asked, so a test can make a
subscriber that stops reading (with a small receive buffer, so the kernel does not read for it either).
"""

from __future__ import annotations

import json
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Event:
    event: str
    id: int | None
    data: Any


@dataclass
class SseStream:
    sock: socket.socket
    _buf: bytes = b""
    _body: bytes = b""
    _done: bool = False
    deadline: float = float("inf")  # time.monotonic() past which reading fails, keep-alive comments or not
    events: list[Event] = field(default_factory=list)
    _pending: deque[Event] = field(default_factory=deque)

    @classmethod
    def open(cls, port: int, path: str, token: str, *, rcvbuf: int | None = None, timeout: float = 60.0,
             within: float = 300.0) -> SseStream:
        """`timeout` bounds each read, `within` the whole stream (a keep-alive comment resets only the first)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: fixes the window
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
                     "Accept: text/event-stream\r\n\r\n".encode())
        stream = cls(sock, deadline=time.monotonic() + within)
        head = stream._until(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise AssertionError(f"stream refused: {head!r}")
        return stream

    def _fill(self) -> bool:
        if time.monotonic() > self.deadline:
            raise TimeoutError("the stream did not end in time")
        data = self.sock.recv(1 << 16)
        self._buf += data
        return bool(data)

    def _until(self, mark: bytes) -> bytes:
        while mark not in self._buf:
            if not self._fill():
                raise EOFError("connection closed")
        head, self._buf = self._buf.split(mark, 1)
        return head

    def _exactly(self, n: int) -> bytes:
        parts = [self._buf]
        have = len(self._buf)
        while have < n:
            if time.monotonic() > self.deadline:
                raise TimeoutError("the stream did not end in time")
            data = self.sock.recv(1 << 16)
            if not data:
                raise EOFError("connection closed")
            parts.append(data)
            have += len(data)
        joined = b"".join(parts)
        self._buf = joined[n:]
        return joined[:n]

    def next_event(self) -> Event | None:
        """The next event (comments skipped), or None once the response ended."""
        while not self._pending:
            if self._done:
                return None
            size = int(self._until(b"\r\n").strip(), 16)  # the body is chunked
            if size == 0:
                self._done = True
                continue
            parts = (self._body + self._exactly(size + 2)[:-2]).split(b"\n\n")
            self._body = parts.pop()
            self._pending.extend(event for raw in parts if (event := _parse(raw)) is not None)
        event = self._pending.popleft()
        self.events.append(event)
        return event

    def until_end(self) -> list[Event]:
        """Every event up to the stream's last (`end` or `dropped`)."""
        while (event := self.next_event()) is not None and event.event not in ("end", "dropped"):
            pass
        return self.events

    def close(self) -> None:
        self.sock.close()


def _parse(raw: bytes) -> Event | None:
    fields: dict[str, str] = {}
    for line in raw.decode().split("\n"):
        if line and not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value
    if not fields:
        return None  # a comment (keep-alive)
    return Event(fields.get("event", "message"), int(fields["id"]) if "id" in fields else None,
                 json.loads(fields["data"]) if "data" in fields else None)
