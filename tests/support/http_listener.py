"""The test doubles' HTTP listeners: one that a client giving up cannot hang."""

from __future__ import annotations

import socketserver


def never_blocks_in_accept(server: socketserver.TCPServer) -> None:
    """Make `server`'s listener non-blocking.

    A client that gives up between the listener turning readable and the accept (a request that timed out on
    a loaded machine) would leave a blocking accept() waiting for the next connection, and shutdown() waiting
    on it for ever. Non-blocking, that accept fails and serve_forever carries on. `socket.accept` makes the
    sockets it returns blocking again.
    """
    server.socket.setblocking(False)
