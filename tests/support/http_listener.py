"""The test doubles' HTTP listeners: one that a client giving up cannot hang."""

from __future__ import annotations

import socketserver
import ssl


def never_blocks_in_accept(server: socketserver.TCPServer) -> None:
    """Make `server`'s listener non-blocking.

    A client that gives up between the listener turning readable and the accept (a request that timed out on
    a loaded machine) would leave a blocking accept() waiting for the next connection, and shutdown() waiting
    on it for ever. Non-blocking, that accept fails and serve_forever carries on. `socket.accept` makes the
    sockets it returns blocking again.
    """
    server.socket.setblocking(False)


def never_blocks_in_handshake(server: socketserver.TCPServer, context: ssl.SSLContext) -> None:
    """Serve TLS on `server` with the handshake at each handler thread's first read, not in accept().

    A client that stalls in its handshake then holds only its own thread: with the handshake in accept() it held
    the listener (and shutdown(), which waits on it) for as long as it stalled. The listener is made
    non-blocking too (see `never_blocks_in_accept`).
    """
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    never_blocks_in_accept(server)
