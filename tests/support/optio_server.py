"""Starts a real `optio serve` subprocess on 127.0.0.1 and drives the real CLI against it."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import string
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from tests.support import http_client, sandbox

OPTIO = [sys.executable, "-m", "optio.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_api_key() -> str:
    return "optio_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))


class OptioServer:
    """One server process over a data dir; `restart()` reuses the same dir like a real restart would.

    Auth is on, as in production: the server is started with a preset bootstrap admin key
    (`OPTIO_ADMIN_API_KEY`), which the CLI gets as `OPTIO_TOKEN` and `api()` sends by default. Local git
    remotes are allowed under the test's temporary directory (the data dir's parent, where tests make their
    remotes), as an administrator would allow a directory of repositories (`OPTIO_LOCAL_REMOTE_ROOTS`).
    """

    def __init__(self, data_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_key = new_api_key()
        self.extra_env = dict(env or {})
        self.serve_args: list[str] = []  # extra `optio serve` options, e.g. ["--role", "api"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIO_")}
        env.update({"OPTIO_DATA_DIR": str(self.data_dir), "OPTIO_PORT": str(self.port), "OPTIO_URL": self.url,
                    "OPTIO_ADMIN_API_KEY": self.admin_key, "OPTIO_TOKEN": self.admin_key,
                    "OPTIO_CONFIG_DIR": str(self.data_dir / "cli-config"),
                    "OPTIO_LOCAL_REMOTE_ROOTS": str(self.data_dir.resolve().parent),
                    "OPTIO_SANDBOX": sandbox.server_mode()})
        env.update(self.extra_env)
        return env

    def spawn(self) -> OptioServer:
        """Start the server process without waiting for it to answer (e.g. to kill it at any moment)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen([*OPTIO, "serve", *self.serve_args], env=self.env(), stdout=log, stderr=log)
        return self

    def start(self, timeout: float = 60.0) -> OptioServer:
        return self.spawn().wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 60.0) -> OptioServer:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"optio serve exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if http_client.get(self.url + "/api/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"optio serve did not become healthy:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def restart(self) -> OptioServer:
        self.stop()
        return self.start()

    def cli(self, *args: str, check: bool = False, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([*OPTIO, "--url", self.url, *args], env=self.env(), capture_output=True, text=True,
                             timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"optio {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def api(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> httpx.Response:
        """A request as the bootstrap admin, or as the holder of `token` (pass "" for none at all)."""
        headers = dict(kwargs.pop("headers", None) or {})
        key = self.admin_key if token is None else token
        if key and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {key}"
        return http_client.request(method, self.url + path, headers=headers, **kwargs)

    def wait_state(self, path: str, states: set[str], timeout: float = 60.0) -> dict[str, Any]:
        """Polls quickly at first, then every 0.4 s at most: a loop that takes tens of seconds is not asked
        hundreds of times (each ask costs the server as much CPU as a short agent command)."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        pause = 0.05
        while time.monotonic() < deadline:
            last = self.api("GET", path).json()
            if last.get("state") in states:
                return last
            time.sleep(pause)
            pause = min(pause * 1.3, 0.4)
        raise AssertionError(f"{path} did not reach {states} in {timeout}s; last: {last}\n{self.log()[-3000:]}")
