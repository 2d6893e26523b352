"""A blueprint's review and merge settings replace its repo's for the tasks it spawns: on a repo that waits for
a person's approval, a task a trigger spawns from a blueprint that needs none merges by itself, while a
hand-made task of the same repo still waits. Real server, CLI, git remote and script agents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.support.git_remote import make_remote
from tests.support.optio_server import OptioServer

pytestmark = pytest.mark.slow
END = {"completed", "failed", "cancelled", "needs_attention"}


def test_a_trigger_spawned_task_obeys_its_blueprints_review_and_merge_settings(optio_server: OptioServer,
                                                                               tmp_path: Path) -> None:
    server = optio_server
    remote = make_remote(tmp_path)
    server.cli("repo", "add", str(remote), "--name", "app", "--require-approval", check=True)
    base = {"repo": "app", "title_template": "Bump {{DEP}}", "prompt_template": "bump {{DEP}}",
            "agent_config": {"command": 'echo "$OPTIO_TASK_ID" > "bump-$OPTIO_TASK_ID.txt"'}}

    # Settings are checked like a repo's.
    for settings, field in (({"review_agent": True}, "review_settings.review_agent"),
                            ({"review_agent": False, "review_agent_type": "script"},
                             "review_settings.review_agent_type"),
                            ({"review_agent_type": "script"}, "review_settings.review_agent_config.command"),
                            ({"review_agent_type": "no-such-agent"}, "review_settings.review_agent_type"),
                            ({"auto_merge": "yes"}, None)):
        res = server.api("POST", "/api/blueprints", json={**base, "name": "bad", "review_settings": settings})
        assert res.status_code == 422, (settings, res.text)
        if field:
            assert res.json()["error"]["field"] == field, (settings, res.text)

    created = json.loads(server.cli(
        "blueprint", "create", "--name", "bump", "--repo", "app", "--title", base["title_template"], "--prompt",
        base["prompt_template"], "--command", base["agent_config"]["command"], "--no-require-approval",
        "--auto-merge", "--review-agent", "none", "--json", check=True).stdout)
    assert created["review_settings"] == {"require_approval": False, "auto_merge": True, "review_agent": False}
    shown = server.cli("blueprint", "show", "bump", check=True).stdout
    assert "require_approval: false" in shown and "review_agent: false" in shown

    by_hand = server.api("POST", "/api/repo-tasks", json={"repo": "app", "title": "By hand", "prompt": "p",
                                                          "agent_config": base["agent_config"]}).json()
    trigger = server.api("POST", "/api/triggers", json={"type": "manual", "target_type": "blueprint",
                                                        "target": "bump"}).json()
    fired = server.api("POST", f"/api/triggers/{trigger['id']}/fire", json={"params": {"DEP": "httpx"}}).json()
    assert fired["run_kind"] == "repo_task"

    spawned = server.wait_state(f"/api/repo-tasks/{fired['run_id']}", END, timeout=120)
    assert (spawned["state"], spawned["pr_state"]) == ("completed", "merged"), (spawned, server.log()[-3000:])
    waiting = server.wait_state(f"/api/repo-tasks/{by_hand['id']}", {"pr_opened"} | END, timeout=60)
    assert (waiting["state"], waiting["pr_state"], waiting["review_status"]) == (
        "pr_opened", "open", "awaiting_approval"), waiting
