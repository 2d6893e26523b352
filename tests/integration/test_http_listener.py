"""The test doubles' TLS listeners keep serving, and stop, whatever a client does between connect and request.

Real sockets on 127.0.0.1 and a real TLS handshake (a certificate from the test PKI the Kubernetes tests use).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.support.http_listener import never_blocks_in_handshake
from tests.support.kube_cluster import Pki


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, Pki(tmp_path).issue("server", common_name="127.0.0.1", server=True,
                                                          client=False)))
    never_blocks_in_handshake(server, context)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.server_close()


def _get_tls(port: int) -> bytes:
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, client.wrap_socket(raw) as tls:
        tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return tls.recv(100)


def test_a_client_stalled_in_its_tls_handshake_holds_up_neither_other_clients_nor_shutdown(
        tls_server: ThreadingHTTPServer) -> None:
    port = tls_server.server_address[1]
    with socket.create_connection(("127.0.0.1", port)):  # connects and never says a word
        time.sleep(0.2)  # the listener has accepted it by now
        assert _get_tls(port).startswith(b"HTTP/1.0 200")
        stopper = threading.Thread(target=tls_server.shutdown)
        stopper.start()
        stopper.join(timeout=5)
        assert not stopper.is_alive()

