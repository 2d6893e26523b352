"""The prompt template library end to end: a real server, the real CLI, real git remotes and script agents
that keep the prompt they were given. A workspace default and a repo override change what a real task's agent
and review agent are asked, and a workspace job template what a job run's agent is asked."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from tests.support.git_remote import git, make_remote
from tests.support.optio_server import OptioServer

pytestmark = pytest.mark.slow
KEEP_PROMPT = 'cp "$OPTIO_PROMPT_FILE" prompt.txt'
END = {"completed", "failed", "cancelled", "needs_attention"}


def merged_prompt(remote: Path) -> str:
    return git("show", "main:prompt.txt", cwd=remote)


def test_a_workspace_default_and_a_repo_override_change_what_agents_are_asked(optio_server: OptioServer,
                                                                              tmp_path: Path) -> None:
    server = optio_server
    app, lib = make_remote(tmp_path, "app.git"), make_remote(tmp_path, "lib.git")
    server.cli("repo", "add", str(app), "--name", "app", "--review-agent", "script", "--review-command", "true",
               "--review-prompt", "Be strict.", check=True)
    server.cli("repo", "add", str(lib), "--name", "lib", check=True)

    # Nothing saved: the built-in texts, and the variables each kind offers.
    shown = json.loads(server.cli("template", "show", "--kind", "task", "--repo", "app", "--json", check=True).stdout)
    assert (shown["source"], shown["body"], shown["version"]) == ("builtin", "{{prompt}}", None)
    assert "ticket" in shown["variables"]

    # A template naming what its kind does not provide is refused when saved, naming it.
    typo = server.api("PUT", "/api/templates/task", json={"body": "Do {{promt}}"})
    assert (typo.status_code, typo.json()["error"]["field"]) == (422, "body") and "promt" in typo.text
    bad_kind = server.api("PUT", "/api/templates/ticket", json={"body": "x"})
    assert (bad_kind.status_code, bad_kind.json()["error"]["field"]) == (422, "kind")
    job_repo = server.api("PUT", "/api/templates/job", json={"body": "{{prompt}}", "repo": "app"})
    assert (job_repo.status_code, job_repo.json()["error"]["field"]) == (422, "repo")
    refused = server.cli("template", "set", "--kind", "review", "--body", "{{pr_titel}}")
    assert refused.returncode != 0 and "pr_titel" in refused.stdout + refused.stderr

    server.cli("template", "set", "--kind", "task", "--body", "WORKSPACE [{{title}}] {{prompt}}", check=True)
    override = tmp_path / "override.tmpl"
    override.write_text("REPO {{repo}} task {{task_id}} onto {{base_branch}}: {{prompt}}"
                        "{{#if ticket}} closes {{ticket}}{{/if}}.", encoding="utf-8")
    server.cli("template", "set", "--kind", "task", "--repo", "app", "--file", str(override), check=True)
    server.cli("template", "set", "--kind", "review", "--repo", "app", "--body",
               "REVIEW of {{task_title}} (#{{pr_number}}, {{repo}}): {{review_prompt}}", check=True)

    # Compare-and-swap: a set based on an old version is refused.
    stale = server.api("PUT", "/api/templates/task", json={"body": "x {{prompt}}", "version": 0})
    assert (stale.status_code, stale.json()["error"]["field"]) == (409, "version")
    assert server.api("GET", "/api/templates/task").json()["version"] == 1

    assert json.loads(server.cli("template", "show", "--kind", "task", "--repo", "lib", "--json",
                                 check=True).stdout)["source"] == "workspace"
    assert json.loads(server.cli("template", "show", "--kind", "task", "--repo", "app", "--json",
                                 check=True).stdout)["source"] == "repo"
    listing = json.loads(server.cli("template", "list", "--json", check=True).stdout)
    assert sorted((t["kind"], t["source"], t["repo"]) for t in listing if t["source"] != "builtin") == [
        ("review", "repo", "app"), ("task", "repo", "app"), ("task", "workspace", None)]
    preview = server.cli("template", "preview", "--kind", "task", "--repo", "app", "--param", "prompt={{x}} here",
                         "--param", "ticket=ticket #9", check=True).stdout
    assert preview == "REPO <repo> task <task_id> onto <base_branch>: {{x}} here closes ticket #9."

    in_app = json.loads(server.cli("task", "new", "--repo", "app", "--title", "Keep it", "--prompt", "keep {{me}}",
                                   "--command", KEEP_PROMPT, "--json", check=True).stdout)
    in_lib = json.loads(server.cli("task", "new", "--repo", "lib", "--title", "Keep that", "--prompt", "keep that",
                                   "--command", KEEP_PROMPT, "--json", check=True).stdout)
    assert in_app["prompt"] == "keep {{me}}"  # the task keeps what it was asked; the template is applied at launch
    for task in (in_app, in_lib):
        done = server.wait_state(f"/api/repo-tasks/{task['id']}", END, timeout=120)
        assert done["state"] == "completed", (done, server.log()[-3000:])
    assert merged_prompt(app) == f"REPO app task {in_app['id']} onto main: keep {{{{me}}}}."
    assert merged_prompt(lib) == "WORKSPACE [Keep that] keep that"
    with sqlite3.connect(server.data_dir / "optio.db") as db:
        [(review_prompt,)] = db.execute("SELECT prompt FROM review_runs WHERE task_id = ? ORDER BY id LIMIT 1",
                                        (in_app["id"],)).fetchall()
    assert review_prompt.startswith("REVIEW of Keep it (#1, app): Be strict.")

    # Deleting the override brings the workspace default back for the repo.
    server.cli("template", "delete", "--kind", "task", "--repo", "app", check=True)
    assert server.api("GET", "/api/templates/task", params={"repo": "app"}).json()["source"] == "workspace"


def test_a_workspace_job_template_wraps_every_job_runs_prompt(optio_server: OptioServer) -> None:
    server = optio_server
    for name, schema in (("deploy", {"env": {"default": "staging"}}), ("lint", {"env": {}, "path": {}})):
        server.api("POST", "/api/jobs", json={"name": name, "prompt_template": f"{name} {{{{env}}}}",
                                              "params_schema": schema,
                                              "agent_config": {"command": "true"}}).raise_for_status()
    undeclared = server.api("PUT", "/api/templates/job", json={"body": "{{prompt}} at {{params.path}}"})
    assert (undeclared.status_code, undeclared.json()["error"]["field"]) == (422, "body")
    assert "deploy" in undeclared.text and "path" in undeclared.text
    server.cli("template", "set", "--kind", "job", "--body",
               "JOB {{job}}: {{prompt}}{{#if params.env}} (env {{params.env}}){{/if}}", check=True)
    preview = server.cli("template", "preview", "--kind", "job", "--param", "params.env=prod", "--json",
                         check=True).stdout
    assert json.loads(preview)["rendered"] == "JOB <job>: <prompt> (env prod)"
    # A job the template cannot serve (it declares no `env`) is refused while the template reads it.
    lacking = server.api("POST", "/api/jobs", json={"name": "other", "prompt_template": "x {{path}}",
                                                    "agent_config": {"command": "true"}})
    assert (lacking.status_code, lacking.json()["error"]["field"]) == (422, "params_schema"), lacking.text
    run = server.api("POST", "/api/jobs/deploy/runs", json={"params": {}}).json()
    assert run["prompt"] == "JOB deploy: deploy staging (env staging)"
