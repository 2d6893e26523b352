"""The repo-loop scenarios on every forge: the same script, the same expected end, whichever forge hosts the repo.

Each runs `optio serve` + the real CLI against one forge harness (`tests.support.forge_harness`): the local
forge, and the fake GitHub (which speaks GitHub's real REST shapes, checked against its published OpenAPI
description in tests/integration/test_fake_github_openapi.py). Every scenario ends with one squash commit per
task on the remote's default branch. Another forge joins by adding its harness to `HARNESSES`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from tests.support.forge_harness import HARNESSES, ForgeHarness

CI_NEEDS_OK = (
    'c=$(cat fixed.txt 2>/dev/null); if [ "$c" = ok ]; then echo pass; else echo "EXPECTED ok GOT $c"; exit 1; fi'
)
AGENT_READS_CI = 'if grep -q "EXPECTED ok" "$OPTIO_PROMPT_FILE"; then echo ok > fixed.txt; else echo no > fixed.txt; fi'
END = {"completed", "failed", "cancelled", "needs_attention"}


@pytest.fixture(scope="module", params=sorted(HARNESSES))
def forge(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForgeHarness]:
    """One server per forge for the whole module: every scenario uses its own repos, so they do not meet (the
    kill -9 scenario restarts it, as an operator would), and the suite pays one start per forge, not per test."""
    harness = HARNESSES[request.param](tmp_path_factory.mktemp(f"forge-{request.param}"),
                                       {"OPTIO_MAX_AUTO_RESUMES": "2"})
    try:
        yield harness
    finally:
        harness.close()


def new_task(forge: ForgeHarness, repo: str, title: str, command: str, *extra: str) -> int:
    import json

    res = forge.server.cli("task", "new", "--repo", repo, "--title", title, "--prompt", title, "--command", command,
                           "--json", *extra, check=True)
    return int(json.loads(res.stdout)["id"])


def wait(forge: ForgeHarness, task_id: int, states: set[str], timeout: float = 150) -> dict:
    return forge.server.wait_state(f"/api/repo-tasks/{task_id}", states, timeout=timeout)


def events(forge: ForgeHarness, task_id: int) -> list[str]:
    return [e["event"] for e in forge.server.api("GET", f"/api/repo-tasks/{task_id}/events").json()]


def titles(forge: ForgeHarness, repo: str) -> list[str]:
    """The default branch's commit subjects without their PR numbers (which differ per forge), the seed
    commit (named differently per fake) as ``initial``."""
    lines = [line.rsplit(" (#", 1)[0] for line in forge.main_log(repo)]
    return [*lines[:-1], "initial"] if lines else lines


def test_red_ci_resumes_the_agent_with_the_output_until_merged(forge: ForgeHarness) -> None:
    forge.add_repo("demo", ci=CI_NEEDS_OK)
    task_id = new_task(forge, "demo", "Make CI green", AGENT_READS_CI)
    task = wait(forge, task_id, END)
    assert task["state"] == "completed", (task, forge.server.log()[-3000:])
    assert task["resume_count"] == 1
    assert titles(forge, "demo") == ["Make CI green", "initial"]
    assert forge.show("demo", "fixed.txt") == "ok\n"
    names = events(forge, task_id)
    assert names.index("ci_failed") < names.index("resumed") < names.index("merged")


def test_human_review_is_waited_for_then_merged(forge: ForgeHarness) -> None:
    forge.add_repo("reviewed", require_approval=True)
    task_id = new_task(forge, "reviewed", "Needs a person", "echo done > out.txt")
    wait(forge, task_id, {"pr_opened"})
    time.sleep(2)
    assert wait(forge, task_id, END | {"pr_opened"})["state"] == "pr_opened", "merged without the approval"
    forge.approve("reviewed", task_id)
    task = wait(forge, task_id, END)
    assert task["state"] == "completed", (task, forge.server.log()[-3000:])
    assert titles(forge, "reviewed") == ["Needs a person", "initial"]


def test_conflict_after_the_first_merge_is_resumed_to_rebase(forge: ForgeHarness) -> None:
    forge.add_repo("shared", files={"shared.txt": "base\n"})
    # B's branch starts from the old main and waits (for the word through its HOME) until A has merged, so
    # its change collides with A's and the forge reports a conflict.
    first = new_task(forge, "shared", "A", 'until [ -f "$HOME/gate" ]; do sleep 0.1; done; echo A > shared.txt')
    second = new_task(forge, "shared", "B", (
        'if grep -qi "conflict" "$OPTIO_PROMPT_FILE"; then '
        'git fetch -q origin && (git rebase origin/main || '
        '{ printf "A\\nB\\n" > shared.txt; git add shared.txt; GIT_EDITOR=true git rebase --continue; }); '
        'else touch "$HOME/started"; until [ -f "$HOME/go" ]; do sleep 0.1; done; echo B > shared.txt; fi'))
    homes = forge.server.data_dir / "homes"
    deadline = time.monotonic() + 60
    while not (homes / f"repo_task-{second}" / "started").exists():
        assert time.monotonic() < deadline, "B's agent did not start"
        time.sleep(0.1)
    (homes / f"repo_task-{first}" / "gate").touch()
    a = wait(forge, first, END)
    assert a["state"] == "completed", a
    (homes / f"repo_task-{second}" / "go").touch()
    b = wait(forge, second, END)
    assert b["state"] == "completed", (b, forge.server.log()[-3000:])
    assert "conflict" in events(forge, second)
    assert forge.show("shared", "shared.txt") == "A\nB\n"
    assert titles(forge, "shared") == ["B", "A", "initial"]


def test_a_dependent_task_starts_after_its_parent_merged(forge: ForgeHarness) -> None:
    forge.add_repo("deps")
    parent = new_task(forge, "deps", "Parent", "sleep 1; echo p > parent.txt")
    child = new_task(forge, "deps", "Child", "test -f parent.txt && echo c > child.txt", "--depends-on", str(parent))
    assert wait(forge, child, END)["state"] == "completed"
    assert titles(forge, "deps") == ["Child", "Parent", "initial"]


def test_never_green_ends_needs_attention_at_the_cap(forge: ForgeHarness) -> None:
    forge.add_repo("red", ci="echo always red; exit 1")
    task_id = new_task(forge, "red", "Hopeless", "date +%s%N > attempt.txt")
    task = wait(forge, task_id, END, timeout=180)
    assert task["state"] == "needs_attention", task
    assert "2" in task["error"] and "resume" in task["error"]
    assert titles(forge, "red") == ["initial"]


def test_kill_9_while_waiting_for_review_loses_nothing(forge: ForgeHarness) -> None:
    forge.add_repo("sturdy", require_approval=True)
    task_id = new_task(forge, "sturdy", "Survive", "echo done > out.txt")
    wait(forge, task_id, {"pr_opened"})
    forge.server.kill9()
    forge.server.start()
    forge.approve("sturdy", task_id)
    task = wait(forge, task_id, END)
    assert task["state"] == "completed", (task, forge.server.log()[-3000:])
    assert titles(forge, "sturdy") == ["Survive", "initial"]
