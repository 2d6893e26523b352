"""A review agent on a hosted forge: its verdict and line comments are posted on the PR through the forge's API.

Hosted forges keep no local PR row, so the review run names the repo and PR number; the PR head reaches the
review from the repo cache Optio pushes the task's branch from. The review here is the repo's script review
agent: its exit code is the verdict, and the review file it writes (`$OPTIO_REVIEW_FILE`) adds the summary and
a line comment, which the fake forge records as a real review comment and the coding agent reads on resume.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.forge_harness import GitHubHarness, GitLabHarness

REPORT = {"verdict": "request_changes", "summary": "Notes need a reason.",
          "comments": [{"path": "notes.txt", "line": 1, "body": "say why"}]}
# Approves a head whose notes.txt was fixed; otherwise writes its review file and exits 1 (changes requested).
REVIEW = ('if grep -q fixed "$OPTIO_PR_HEAD_DIR/notes.txt"; then echo looks good; exit 0; fi; '
          f"printf '%s' '{json.dumps(REPORT)}' > \"$OPTIO_REVIEW_FILE\"; echo needs work; exit 1")
AGENT = ('cat "$OPTIO_PROMPT_FILE"; '
         'if grep -q "notes.txt:1: say why" "$OPTIO_PROMPT_FILE"; then echo fixed > notes.txt; '
         'else echo draft > notes.txt; fi')
END = {"completed", "failed", "cancelled", "needs_attention"}


@pytest.fixture(params=["github", "gitlab"])
def forge(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GitHubHarness | GitLabHarness]:
    harness = (GitHubHarness if request.param == "github" else GitLabHarness)(tmp_path, {})
    try:
        yield harness
    finally:
        harness.close()


def log_texts(forge: GitHubHarness | GitLabHarness, task_id: int) -> str:
    items = forge.server.api("GET", f"/api/repo-tasks/{task_id}/logs").json()["items"]
    return "\n".join(line["text"] for line in items)


def test_script_review_agent_requests_changes_with_a_line_comment(forge: GitHubHarness | GitLabHarness) -> None:
    server = forge.server
    forge.add_repo("demo", files={"README.md": "demo\n"})
    resp = server.api("PATCH", "/api/repos/demo", json={"review_agent_type": "script",
                                                         "review_agent_config": {"command": REVIEW}})
    assert resp.status_code == 200, resp.text
    resp = server.api("POST", "/api/repo-tasks", json={"repo": "demo", "title": "Write notes", "prompt": "write",
                                                       "agent_type": "script", "agent_config": {"command": AGENT}})
    assert resp.status_code == 201, resp.text
    task_id = int(resp.json()["id"])
    deadline = time.monotonic() + 150
    while "notes.txt:1: say why" not in log_texts(forge, task_id):
        task = server.api("GET", f"/api/repo-tasks/{task_id}").json()
        assert time.monotonic() < deadline and task["state"] not in END, (task, server.log()[-4000:])
        time.sleep(1)
    task = server.wait_state(f"/api/repo-tasks/{task_id}", END, timeout=150)
    assert task["state"] == "completed", (task, server.log()[-4000:])
    assert forge.show("demo", "notes.txt") == "fixed\n"

    if isinstance(forge, GitHubHarness):
        repo = forge.repos["demo"]
        pull = forge.github.pull_of_branch(repo, f"optio/{task_id}")
        assert pull is not None
        states = [r.state for r in pull.reviews]
        assert states[0] == "CHANGES_REQUESTED" and "APPROVED" in states[1:], states
        first = pull.reviews[0]
        assert "Notes need a reason." in first.body
        assert [(c["path"], c.get("line"), c["body"]) for c in first.comments] == [("notes.txt", 1, "say why")]
    else:
        project = forge.projects["demo"]
        mr = forge.gitlab.mr_of_branch(project, f"optio/{task_id}")
        assert mr is not None
        notes = [n for d in mr.discussions for n in d.notes]
        assert any("Notes need a reason." in n.body for n in notes), [n.body for n in notes]
        line = [n for n in notes if n.position is not None]
        assert len(line) == 1 and line[0].body.endswith("say why"), [(n.body, n.position) for n in notes]
        assert line[0].position is not None and line[0].position["new_path"] == "notes.txt"
        assert line[0].position["new_line"] == 1
