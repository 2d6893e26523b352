"""A task tells the truth about itself: first start, each attempt's times, every run's output, who it waits for.

Real `optio serve`, the real CLI, real git remotes, real agent, CI and review agent processes.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from pathlib import Path

from tests.support.git_remote import make_remote
from tests.support.optio_server import OptioServer

END = {"completed", "failed", "cancelled", "needs_attention"}
CI = ('c=$(cat fixed.txt 2>/dev/null); '
      'if [ "$c" = ok ]; then echo "ci says pass"; else echo "EXPECTED ok GOT $c"; exit 1; fi')
AGENT = ('echo "agent attempt $OPTIO_ATTEMPT"; '
         'if grep -q "EXPECTED ok" "$OPTIO_PROMPT_FILE"; then echo ok > fixed.txt; fi; '
         '[ -f fixed.txt ] || echo no > fixed.txt; '
         'if grep -q "please add notes" "$OPTIO_PROMPT_FILE"; then echo notes > notes.txt; fi')
REVIEW = ('if [ -f "$OPTIO_PR_HEAD_DIR/notes.txt" ]; then echo "reviewer: looks good"; exit 0; fi; '
          'echo "reviewer: please add notes"; exit 1')


def task_json(server: OptioServer, task_id: int) -> dict:
    return json.loads(server.cli("task", "show", str(task_id), "--json", check=True).stdout)


def events(server: OptioServer, task_id: int) -> list[str]:
    return [e["event"] for e in server.api("GET", f"/api/repo-tasks/{task_id}/events").json()]


def wait_task(server: OptioServer, task_id: int, states: set[str], timeout: float = 120) -> dict:
    return server.wait_state(f"/api/repo-tasks/{task_id}", states, timeout=timeout)


def wait_until(check, timeout: float = 90, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def in_order(text: str, *parts: str) -> None:
    """Every part occurs in `text`, each after the one before."""
    at = 0
    for part in parts:
        found = text.find(part, at)
        assert found >= 0, f"{part!r} not found after position {at} in:\n{text}"
        at = found + len(part)


def test_task_logs_show_attempts_ci_and_reviews_in_order(optio_server: OptioServer, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    optio_server.cli("repo", "add", str(remote), "--name", "facts", "--ci-command", CI, "--review-command", REVIEW,
                     check=True)
    task = json.loads(optio_server.cli("task", "new", "--repo", "facts", "--title", "Fix it", "--prompt", "fix",
                                       "--command", AGENT, "--json", check=True).stdout)
    follow: dict[str, object] = {}

    def follow_logs() -> None:
        follow["res"] = optio_server.cli("task", "logs", str(task["id"]), "--follow", "--poll", "0.2", timeout=170)

    follower = threading.Thread(target=follow_logs)
    follower.start()
    final = wait_task(optio_server, task["id"], END, timeout=150)
    assert final["state"] == "completed", (final, optio_server.log()[-3000:])

    # started_at is the first start; each attempt keeps its own times
    shown = task_json(optio_server, task["id"])
    attempts = shown["attempt_runs"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    started = [when(a["started_at"]) for a in attempts]
    # the task started when its first attempt was launched (its process row is written just after)
    assert when(shown["started_at"]) <= started[0] < started[1] < started[2]
    assert all(a["finished_at"] and a["exit_code"] == 0 for a in attempts)
    assert shown["resume_count"] == 2 and shown["human_resumes"] == 0
    plain = optio_server.cli("task", "show", str(task["id"]), check=True).stdout
    assert "human_resumes: 0" in plain and "ATTEMPT" in plain

    # one command shows every run of the task, each after a separator naming it
    out = optio_server.cli("task", "logs", str(task["id"]), check=True).stdout
    expected = ("===== attempt 1", "agent attempt 1",
                "===== ci #1 on", "EXPECTED ok GOT no",
                "===== attempt 2", "agent attempt 2",
                "===== ci #2 on", "ci says pass",
                "===== review #", "reviewer: please add notes",
                "===== attempt 3", "agent attempt 3",
                "===== ci #3 on", "ci says pass",
                "===== review #", "reviewer: looks good")
    in_order(out, *expected)
    assert "(passing, exit 0" in out and "verdict approve" in out
    # --follow printed the same, as it happened, and stopped when the task ended
    follower.join(timeout=180)
    res = follow["res"]
    assert res.returncode == 0, res  # type: ignore[attr-defined]
    in_order(res.stdout, *expected)  # type: ignore[attr-defined]

    # the API behind it labels each section with its source
    timeline = optio_server.api("GET", f"/api/repo-tasks/{task['id']}/timeline-logs").json()
    assert timeline["done"] is True
    kinds = [s["kind"] for s in timeline["sections"]]
    assert kinds == ["attempt", "ci", "attempt", "ci", "review", "attempt", "ci", "review"]
    review = next(s for s in timeline["sections"] if s["kind"] == "review")
    assert review["source"] == f"review #{review['ref']}" and "verdict request_changes" in review["status"]
    # the agent's own log is unchanged: its lines only
    own = [i["text"] for i in optio_server.api("GET", f"/api/repo-tasks/{task['id']}/logs").json()["items"]]
    assert "agent attempt 1" in own and "reviewer: looks good" not in own

    # review runs are listed as tasks of their own kind
    page = optio_server.api("GET", "/api/tasks", params={"type": "pr_review"})
    assert page.status_code == 200, page.text
    items = page.json()["items"]
    assert len(items) == 2 and all(i["type"] == "pr_review" and i["task_id"] == task["id"] for i in items)
    assert [i["verdict"] for i in items] == ["approve", "request_changes"]  # newest first
    first = optio_server.api("GET", "/api/tasks", params={"type": "pr_review", "limit": 1}).json()
    second = optio_server.api("GET", "/api/tasks", params={"type": "pr_review", "limit": 1,
                                                           "cursor": first["next_cursor"]}).json()
    assert [first["items"][0]["id"], second["items"][0]["id"]] == [i["id"] for i in items]
    assert second["next_cursor"] is None
    default = optio_server.api("GET", "/api/tasks").json()["items"]
    assert {i["type"] for i in default} == {"repo_task"}

    names = events(optio_server, task["id"])
    assert names.count("ci_passed") == 2 and "approved" in names and "review_requested" in names
    assert names.index("ci_passed") < names.index("review_requested") < names.index("approved")
    assert names.index("approved") < names.index("merged")


def test_waiting_for_a_person_and_human_resumes_apart(tmp_path: Path) -> None:
    server = OptioServer(tmp_path / "data", env={"OPTIO_MAX_AUTO_RESUMES": "0"}).start()
    try:
        remote = make_remote(tmp_path)
        server.cli("repo", "add", str(remote), "--name", "gated", "--ci-command", "echo green", "--require-approval",
                   check=True)
        agent = ('if grep -q "use uppercase" "$OPTIO_PROMPT_FILE"; then echo HELLO > hello.txt; '
                 'else echo hello > hello.txt; fi')
        task = json.loads(server.cli("task", "new", "--repo", "gated", "--title", "Hello", "--prompt", "p",
                                     "--command", agent, "--json", check=True).stdout)
        tid = task["id"]
        wait_until(lambda: task_json(server, tid)["review_status"] == "awaiting_approval", what="awaiting_approval")
        shown = task_json(server, tid)
        assert shown["state"] == "pr_opened" and shown["ci_status"] == "passing"
        plain = server.cli("task", "show", str(tid), check=True).stdout
        assert "review_status: awaiting_approval" in plain
        names = events(server, tid)
        assert "ci_passed" in names and names.index("ci_passed") < names.index("review_requested")

        # a person requests changes: with a cap of 0 automatic resumes the agent still gets to answer them
        pr_id = shown["pr_id"]
        res = server.api("POST", f"/api/prs/{pr_id}/request-changes", json={"comment": "use uppercase"})
        assert res.status_code == 200, res.text
        wait_until(lambda: task_json(server, tid)["human_resumes"] == 1, what="a human resume")
        wait_until(lambda: task_json(server, tid)["review_status"] == "awaiting_approval", what="awaiting again")
        shown = task_json(server, tid)
        assert shown["state"] == "pr_opened", shown
        assert shown["resume_count"] == 0 and shown["human_resumes"] == 1
        assert len(shown["attempt_runs"]) == 2

        res = server.api("POST", f"/api/prs/{pr_id}/approve", json={"comment": ""})
        assert res.status_code == 200, res.text
        final = wait_task(server, tid, END)
        assert final["state"] == "completed", final
        names = events(server, tid)
        assert "approved" in names and names.index("approved") < names.index("merged")
        assert names.count("review_requested") == 2
    finally:
        server.stop()
