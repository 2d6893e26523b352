"""Smart-HTTP git for tests: the `git http-backend` CGI bridge every fake serving git uses, and a tiny server
built on it.

`serve_http_backend` runs `git http-backend` for one request and writes its answer; `read_body` reads a
request body whether it came with a length or chunked (git sends large pushes chunked). The fake GitHub and
GitLab serve their repos with these. `GitHttpServer` is a plain remote on a loopback address: it can require
basic auth for pushes (an anonymously readable remote that needs credentials to push) or answer every request
with a redirect, and records the paths it was asked for.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.http_listener import never_blocks_in_accept


def read_body(req: BaseHTTPRequestHandler) -> bytes:
    """The request body, `Transfer-Encoding: chunked` or `Content-Length`."""
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


def serve_http_backend(req: BaseHTTPRequestHandler, *, project_root: Path, path_info: str, query: str, body: bytes,
                       remote_user: str | None, home: Path | None = None,
                       before_reply: Callable[[int], None] | None = None) -> int:
    """Answer one smart-HTTP request with `git http-backend` over the repos under `project_root`; returns the
    status sent. `before_reply(status)` runs after git did its work and before the answer is written (a fake
    that reacts to a push sees the new refs before the client hears back)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": str(project_root),
        "GIT_HTTP_EXPORT_ALL": "1", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(home or project_root),
        "REQUEST_METHOD": req.command, "PATH_INFO": path_info, "QUERY_STRING": query,
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
        elif name and name.lower() != "content-length":
            headers.append((name, value.strip()))
    if before_reply is not None:
        before_reply(status)
    req.send_response(status)
    for name, value in headers:
        req.send_header(name, value)
    req.send_header("Content-Length", str(len(payload)))
    req.end_headers()
    if req.command != "HEAD":
        req.wfile.write(payload)
    return status


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
        never_blocks_in_accept(self.httpd)
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
        serve_http_backend(req, project_root=self.root, path_info=path, query=query, body=read_body(req),
                           remote_user=remote_user)
