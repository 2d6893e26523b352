"""A real smart-HTTP git server for tests: `git http-backend` behind a tiny HTTP server on a loopback address.

It can require basic auth for pushes (an anonymously readable remote that needs credentials to push) or answer
every request with a redirect, and records the paths it was asked for.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class GitHttpServer:
    def __init__(self, root: Path, *, host: str = "127.0.0.1", user: str = "optio", password: str | None = None,
                 redirect_to: str | None = None) -> None:
        self.root = root
        self.user = user
        self.password = password
        self.redirect_to = redirect_to
        self.requests: list[str] = []
        self.pushes_refused = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self)

            def do_POST(self) -> None:
                server._handle(self)

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.host = host
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> GitHttpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        self.requests.append(req.path)
        if self.redirect_to is not None:
            req.send_response(302)
            req.send_header("Location", self.redirect_to + req.path)
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        path, _, query = req.path.partition("?")
        is_push = path.endswith("/git-receive-pack") or "service=git-receive-pack" in query
        remote_user = "anonymous" if self.password is None else None  # no password: anyone may push
        if is_push and self.password is not None:
            expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            if req.headers.get("Authorization") != expected:
                self.pushes_refused += 1
                req.send_response(401)
                req.send_header("WWW-Authenticate", 'Basic realm="git"')
                req.send_header("Content-Length", "0")
                req.end_headers()
                return
            remote_user = self.user
        body = self._read_body(req)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(self.root),
            "REQUEST_METHOD": req.command, "PATH_INFO": path, "QUERY_STRING": query,
            "CONTENT_TYPE": req.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
        }
        if req.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = req.headers["Content-Encoding"]
        if req.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = req.headers["Git-Protocol"]
        if remote_user is not None:
            env["REMOTE_USER"] = remote_user
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        req.send_response(status)
        for name, value in headers:
            req.send_header(name, value)
        req.send_header("Content-Length", str(len(payload)))
        req.end_headers()
        req.wfile.write(payload)

    @staticmethod
    def _read_body(req: BaseHTTPRequestHandler) -> bytes:
        if req.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(req.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    req.rfile.readline()
                    return b"".join(chunks)
                chunks.append(req.rfile.read(size))
                req.rfile.readline()
        return req.rfile.read(int(req.headers.get("Content-Length") or 0))
