"""A private remote through the real server: Optio pushes and merges with the repo's credential secret, never
with a credential helper from the operator's home. The remote is `git http-backend` on loopback, readable by
anyone, writable only with basic auth."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.support.git_http import GitHttpServer
from tests.support.git_remote import git, make_remote
from tests.support.optio_server import OptioServer

PASSWORD = "s3cret-push-pass-9"


def test_task_merges_with_the_repos_credential_and_never_the_operators(tmp_path: Path) -> None:
    home = tmp_path / "operator-home"
    home.mkdir()
    marker = tmp_path / "operator-helper-ran"
    (home / ".gitconfig").write_text(
        f"[credential]\n\thelper = \"!f() {{ touch '{marker}'; echo username=optio; echo password={PASSWORD}; }}; f\"\n"
    )
    served = tmp_path / "served"
    served.mkdir()
    remote = make_remote(served)
    with GitHttpServer(served, password=PASSWORD) as http:
        server = OptioServer(tmp_path / "data", env={"HOME": str(home), "OPTIO_OUTBOUND_ALLOWLIST": "127.0.0.1"})
        server.start()
        try:
            url = f"{http.base_url}/remote.git"
            missing = server.api("POST", "/api/repos", json={"remote_url": url, "credential_secret": "GIT_PUSH"})
            assert missing.status_code == 422 and "credential_secret" in missing.text

            server.cli("secret", "set", "GIT_PUSH", "--value", PASSWORD, check=True)
            added = server.cli("repo", "add", url, "--name", "demo", "--credential-secret", "GIT_PUSH", "--json",
                               check=True)
            assert json.loads(added.stdout)["credential_secret"] == "GIT_PUSH"
            res = server.cli("task", "new", "--repo", "demo", "--title", "Add a file", "--prompt", "add it",
                             "--command", "echo pushed-with-the-repo-credential > added.txt", "--wait", "--json",
                             timeout=120)
            task = json.loads(res.stdout)
            assert task["state"] == "completed" and task["pr_state"] == "merged", (task, server.log()[-3000:])
        finally:
            server.stop()
    assert git("show", "main:added.txt", cwd=remote) == "pushed-with-the-repo-credential\n"
    assert not marker.exists()
    assert PASSWORD not in server.log()


def test_every_fetch_asks_the_ssrf_guard_not_only_registration(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    make_remote(served)
    with GitHttpServer(served) as http:
        server = OptioServer(tmp_path / "data", env={"OPTIO_OUTBOUND_ALLOWLIST": "127.0.0.1"})
        server.start()
        try:
            server.cli("repo", "add", f"{http.base_url}/remote.git", "--name", "demo", check=True)
            # The operator narrows the allowlist: the registered remote is now an internal address.
            server.extra_env["OPTIO_OUTBOUND_ALLOWLIST"] = ""
            server.restart()
            asked = len(http.requests)
            created = server.cli("task", "new", "--repo", "demo", "--title", "T", "--prompt", "p", "--command",
                                 "echo x > x.txt", "--json", check=True)
            task_id = json.loads(created.stdout)["id"]
            deadline = time.monotonic() + 60
            task = {}
            while time.monotonic() < deadline:
                task = server.api("GET", f"/api/repo-tasks/{task_id}").json()
                if "refusing to contact the remote" in (task.get("error") or ""):
                    break
                time.sleep(0.3)
            assert "refusing to contact the remote" in (task.get("error") or ""), (task, server.log()[-2000:])
            assert len(http.requests) == asked
        finally:
            server.stop()
