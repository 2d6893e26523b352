"""The merge queue's batches through the whole loop, and what a task's end leaves behind.

Real `optio serve` + CLI, real git remotes, real agent and CI processes: a batch in flight survives a
`kill -9` of the server; a person's merge records `merged` on the task's timeline; a failed task leaves no
branch on the remote.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.e2e.test_merge_queue import assert_main_green_and_tested, cache_of, db_rows, pr_id, wait_ci
from tests.support.git_remote import git, make_remote
from tests.support.optio_server import OptioServer

END = {"completed", "failed", "cancelled", "needs_attention"}
CSRF = {"X-Optio-CSRF": "1"}
# Slow enough for the test to see a batch in flight; at most 20 task files together.
SLOW_CI = 'sleep 1.5; n=$(ls task-*.txt 2>/dev/null | wc -l); echo "$n files"; test "$n" -le 20'


def new_task(server: OptioServer, *args: str) -> dict:
    return json.loads(server.cli("task", "new", *args, "--json", check=True).stdout)


def events(server: OptioServer, task_id: int) -> list[str]:
    return [e["event"] for e in server.api("GET", f"/api/repo-tasks/{task_id}/events").json()]


def approve(server: OptioServer, task_id: int) -> None:
    server.api("POST", f"/api/prs/{pr_id(server, task_id)}/approve", json={"comment": "ok"},
               headers=CSRF).raise_for_status()


def remote_branches(remote: Path) -> list[str]:
    return git("for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=remote).split()


def test_a_batch_in_flight_survives_a_kill_and_lands_after_the_restart(optio_server: OptioServer,
                                                                      tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    # Approval holds every PR green on the first main until the test lets them merge.
    optio_server.cli("repo", "add", str(remote), "--name", "batched", "--ci-command", SLOW_CI,
                     "--require-approval", check=True)
    ids = [new_task(optio_server, "--repo", "batched", "--title", f"task {i}", "--prompt", "one file",
                    "--command", 'echo done > "task-$OPTIO_TASK_ID.txt"')["id"] for i in range(4)]
    for task_id in ids:
        wait_ci(optio_server, task_id, "passing", timeout=120)
    approve(optio_server, ids[0])
    assert optio_server.wait_state(f"/api/repo-tasks/{ids[0]}", END, timeout=60)["state"] == "completed"
    # The next one is re-tested alone on the new main; the two behind it queue meanwhile, and are then
    # tested together as one batch.
    for task_id in ids[1:]:
        approve(optio_server, task_id)
    deadline = time.monotonic() + 90
    while not (pending := db_rows(optio_server, "SELECT id, pr_ids FROM merge_batches WHERE status='pending'")):
        assert time.monotonic() < deadline, db_rows(optio_server, "SELECT id, status, pr_ids FROM merge_batches")
        time.sleep(0.05)
    optio_server.kill9()  # mid-batch: its CI is running
    [(batch_id, members)] = pending
    optio_server.start()

    for task_id in ids:
        final = optio_server.wait_state(f"/api/repo-tasks/{task_id}", END, timeout=120)
        assert final["state"] == "completed", (final, optio_server.log()[-3000:])
    landed = db_rows(optio_server, "SELECT id, pr_ids, merged_sha FROM merge_batches WHERE status='landed'")
    assert [(row[0], row[1]) for row in landed] == [(batch_id, members)]  # the same batch, run again and landed
    assert len(json.loads(members)) == 2
    merged = db_rows(optio_server, "SELECT merged_sha FROM pull_requests WHERE id IN (SELECT value FROM "
                                   "json_each(?))", members)
    assert {row[0] for row in merged} == {landed[0][2]} and git("rev-parse", "main", cwd=remote).strip() == \
        landed[0][2]
    for task_id in ids:
        assert events(optio_server, task_id).count("merged") == 1
    assert len(git("log", "--format=%H", "main", cwd=remote).split()) == 4  # initial, two alone, one batch
    assert_main_green_and_tested(optio_server, remote, SLOW_CI, cache_of(optio_server))


def test_a_persons_merge_records_merged_on_the_timeline(optio_server: OptioServer, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    optio_server.cli("repo", "add", str(remote), "--name", "manual", "--ci-command", "true", "--no-auto-merge",
                     check=True)
    task = new_task(optio_server, "--repo", "manual", "--title", "By hand", "--prompt", "p", "--command",
                    "echo a > a.txt")
    wait_ci(optio_server, task["id"], "passing")
    merged = optio_server.api("POST", f"/api/prs/{pr_id(optio_server, task['id'])}/merge", json={}, headers=CSRF)
    assert merged.status_code == 200, merged.text
    final = optio_server.wait_state(f"/api/repo-tasks/{task['id']}", END, timeout=60)
    assert final["state"] == "completed"
    names = events(optio_server, task["id"])
    assert names[-1] == "merged" and "completed" not in names, names
    assert git("log", "--format=%s", "-1", "main", cwd=remote).strip() == "By hand (#1)"


def test_a_failed_task_deletes_its_remote_branch(optio_server: OptioServer, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    optio_server.cli("repo", "add", str(remote), "--name", "closing", "--require-approval", "--no-auto-merge",
                     check=True)
    task = new_task(optio_server, "--repo", "closing", "--title", "Unwanted", "--prompt", "p", "--command",
                    "echo a > a.txt")
    optio_server.wait_state(f"/api/repo-tasks/{task['id']}", {"pr_opened"}, timeout=60)
    branch = f"optio/{task['id']}"
    assert branch in remote_branches(remote)
    # A person closes the PR: the task fails (not cancelled), and with no PR left open its branch goes.
    closed = optio_server.api("POST", f"/api/prs/{pr_id(optio_server, task['id'])}/close", headers=CSRF)
    assert closed.status_code == 200, closed.text
    final = optio_server.wait_state(f"/api/repo-tasks/{task['id']}", END, timeout=60)
    assert final["state"] == "failed", final
    deadline = time.monotonic() + 30
    while branch in remote_branches(remote):
        assert time.monotonic() < deadline, remote_branches(remote)
        time.sleep(0.2)
    assert remote_branches(remote) == ["main"]


# Each PR alone passes on the first main; bad.txt fails once a.txt (the first PR) has landed.
BAD_CI = 'sleep 1; if [ -e a.txt ] && [ -e bad.txt ]; then echo "BAD AND A EXIST TOGETHER"; exit 1; fi; echo ok'


def test_a_red_batch_is_bisected_and_the_bad_pr_goes_back_to_its_agent(optio_server: OptioServer,
                                                                        tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    optio_server.cli("repo", "add", str(remote), "--name", "bisect", "--ci-command", BAD_CI, "--require-approval",
                     check=True)
    first = new_task(optio_server, "--repo", "bisect", "--title", "A", "--prompt", "a", "--command", "echo a > a.txt")
    front = new_task(optio_server, "--repo", "bisect", "--title", "B", "--prompt", "b", "--command", "echo b > b.txt")
    # The bad PR's agent, resumed with the batch's bad news (its own merge result's CI output), gives way.
    bad_script = ('if grep -q "BAD AND A EXIST" "$OPTIO_PROMPT_FILE"; then git rm -q bad.txt; echo c > c.txt; '
                  'else echo bad > bad.txt; fi')
    bad = new_task(optio_server, "--repo", "bisect", "--title", "C", "--prompt", "c", "--command", bad_script)
    rest = [new_task(optio_server, "--repo", "bisect", "--title", t, "--prompt", t.lower(), "--command",
                     f"echo {t} > {t.lower()}.txt") for t in ("D", "E")]
    everyone = [first, front, bad, *rest]
    for task in everyone:
        wait_ci(optio_server, task["id"], "passing", timeout=120)
    bad_head = db_rows(optio_server, "SELECT head_sha FROM pull_requests WHERE id=?", pr_id(optio_server, bad["id"]))
    approve(optio_server, first["id"])
    assert optio_server.wait_state(f"/api/repo-tasks/{first['id']}", END, timeout=60)["state"] == "completed"
    approve(optio_server, front["id"])
    deadline = time.monotonic() + 30  # B is re-tested alone at the front; the others queue behind it
    while not db_rows(optio_server, "SELECT 1 FROM pull_requests WHERE id=? AND merge_queued_at IS NOT NULL",
                      pr_id(optio_server, front["id"])):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for task in (bad, *rest):
        approve(optio_server, task["id"])

    deadline = time.monotonic() + 120
    while True:
        c = optio_server.api("GET", f"/api/repo-tasks/{bad['id']}").json()
        if c["resume_count"] >= 1 and c["ci_status"] == "passing" and c["state"] == "pr_opened":
            break
        assert c["state"] not in END, (c, optio_server.log()[-3000:])
        assert time.monotonic() < deadline, c
        time.sleep(0.2)
    approve(optio_server, bad["id"])  # its new head, as a person would
    for task in everyone:
        final = optio_server.wait_state(f"/api/repo-tasks/{task['id']}", END, timeout=120)
        assert final["state"] == "completed", (final, optio_server.log()[-3000:])

    statuses = [row[0] for row in db_rows(optio_server, "SELECT status FROM merge_batches ORDER BY id")]
    assert statuses[0] == "bisected", statuses  # C, D and E tested together failed, and were split
    red = db_rows(optio_server, "SELECT output FROM ci_runs WHERE pr_id=? AND head_sha=? AND status='failing'",
                  pr_id(optio_server, bad["id"]), bad_head[0][0])
    assert len(red) == 1 and "BAD AND A EXIST TOGETHER" in red[0][0]  # its own merge result, alone
    assert events(optio_server, bad["id"]).count("ci_failed") == 1
    assert "bad.txt" not in git("ls-tree", "--name-only", "main", cwd=remote).split()
    assert_main_green_and_tested(optio_server, remote, BAD_CI, cache_of(optio_server))
