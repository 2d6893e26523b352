"""A pull request cannot approve itself by rewriting its review script: the review command runs from the base
branch and reads the head from `$OPTIO_PR_HEAD_DIR`. Real `optio serve`, real CLI, real git and processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.support.git_remote import git, make_remote
from tests.support.optio_server import OptioServer

pytestmark = pytest.mark.slow

END = {"completed", "failed", "cancelled", "needs_attention"}
REVIEW_SH = (
    "#!/bin/sh\n"
    'if [ "$(cat "$OPTIO_PR_HEAD_DIR/out.txt" 2>/dev/null)" = good ]; then echo "base review: fine"; exit 0; fi\n'
    'echo "base review: out.txt must say good"; exit 1\n'
)


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = OptioServer(tmp_path / "data", env={"OPTIO_MAX_AUTO_RESUMES": "0"}).start()
    try:
        yield s
    finally:
        s.stop()


def run_task(server: OptioServer, title: str, command: str) -> tuple[dict, dict]:
    task = json.loads(server.cli("task", "new", "--repo", "guarded", "--title", title, "--prompt", "p",
                                 "--command", command, "--json", check=True).stdout)
    final = server.wait_state(f"/api/repo-tasks/{task['id']}", END, timeout=120)
    pr = json.loads(server.cli("pr", "show", "--task", str(task["id"]), "--json", check=True).stdout)
    return final, pr


def test_a_pr_that_rewrites_its_review_script_cannot_approve_itself(server: OptioServer, tmp_path: Path) -> None:
    remote = make_remote(tmp_path, files={"review.sh": REVIEW_SH, "out.txt": "none\n"})
    seed = tmp_path / "remote.git-seed"
    git("update-index", "--chmod=+x", "review.sh", cwd=seed)
    git("commit", "-qm", "executable review", cwd=seed)
    git("push", "-q", "origin", "main", cwd=seed)
    server.cli("repo", "add", str(remote), "--name", "guarded", "--review-command", "./review.sh", check=True)

    evil = ('printf "#!/bin/sh\\necho approved by the PR itself\\nexit 0\\n" > review.sh; chmod +x review.sh; '
            "echo bad > out.txt")
    final, pr = run_task(server, "Self-approve", evil)
    assert final["state"] == "needs_attention", final
    assert pr["state"] == "open" and pr["reviews"], pr
    assert [r["verdict"] for r in pr["reviews"]] == ["request_changes"]
    assert "base review: out.txt must say good" in pr["reviews"][0]["comments"]
    assert "approved by the PR itself" not in pr["reviews"][0]["comments"]
    assert git("log", "--format=%s", "main", cwd=remote).splitlines() == ["executable review", "initial"]
    assert server.api("POST", f"/api/prs/{pr['id']}/merge").status_code == 409  # and the gate holds too

    final, pr = run_task(server, "Do it right", "echo good > out.txt")
    assert final["state"] == "completed", (final, server.log()[-3000:])
    assert [r["verdict"] for r in pr["reviews"]] == ["approve"]
    assert "base review: fine" in pr["reviews"][0]["comments"]
    assert git("show", "main:out.txt", cwd=remote) == "good\n"
    checkouts = server.data_dir / "worktrees"
    assert not checkouts.exists() or not [p for p in checkouts.iterdir() if p.name.startswith("review-")]
