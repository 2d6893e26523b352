"""A TCP proxy on 127.0.0.1 whose live connections a test can cut, to drop a browser's stream for real."""

from __future__ import annotations

import socket
import threading


class CuttableProxy:
    def __init__(self, upstream_port: int, port: int) -> None:
        self.upstream_port = upstream_port
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._listener = socket.create_server(("127.0.0.1", port))
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._live |= {client, upstream}
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self._lock:
                self._live -= {src, dst}

    def cut(self) -> int:
        """Reset every open connection (both sides); returns how many sockets were cut."""
        with self._lock:
            live = list(self._live)
            self._live.clear()
        for s in live:
            # shutdown() wakes the pipe thread blocked in recv() (a bare close() would not) and ends the stream
            # mid-response, as a dropped connection does.
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        return len(live)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()
