"""The template library on a real SQLite file: which stored template a prompt uses, compare-and-swap on a set,
and the checks that keep every saved template renderable for every job."""

from __future__ import annotations

from pathlib import Path

import pytest

from optio.control import prompt_templates as rendering
from optio.errors import Conflict, Invalid, NotFound
from optio.services import jobs as job_service
from optio.services import templates as template_service
from optio.store import migrate, workspaces
from optio.store.db import Database
from optio.store.models import Repo


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 't.db'}")
    migrate.upgrade(database)
    with database.write() as s:
        ws = workspaces.ensure_default(s)
        for name in ("app", "lib"):
            s.add(Repo(workspace_id=ws.id, name=name, remote_url=f"/tmp/{name}"))
    return database


def _task_prompt(db: Database, repo: str) -> str:
    with db.read() as s:
        repo_id = s.query(Repo).filter_by(name=repo).one().id
        return rendering.render(s, 1, "task", repo_id, {"prompt": "P", "title": "T", "repo": repo})


def test_repo_override_then_workspace_default_then_builtin(db: Database) -> None:
    assert _task_prompt(db, "app") == "P"
    template_service.save(db, 1, "task", "ws {{title}}: {{prompt}}")
    template_service.save(db, 1, "task", "repo {{repo}}: {{prompt}}{{#if ticket}}!{{/if}}", repo="app")
    assert (_task_prompt(db, "app"), _task_prompt(db, "lib")) == ("repo app: P", "ws T: P")
    assert template_service.show(db, 1, "task", "app").source == "repo"
    assert template_service.show(db, 1, "task", "lib").source == "workspace"
    template_service.delete(db, 1, "task", repo="app")
    assert _task_prompt(db, "app") == "ws T: P"
    template_service.delete(db, 1, "task")
    assert _task_prompt(db, "app") == "P"
    with pytest.raises(NotFound):
        template_service.delete(db, 1, "task")


def test_a_set_based_on_an_old_version_is_refused(db: Database) -> None:
    first = template_service.save(db, 1, "review", "A {{pr_title}}", version=0)
    assert first.version == 1
    with pytest.raises(Conflict) as info:
        template_service.save(db, 1, "review", "B {{pr_title}}", version=0)
    assert info.value.field == "version"
    assert template_service.save(db, 1, "review", "B {{pr_title}}", version=1).version == 2
    with pytest.raises(Conflict):
        template_service.save(db, 1, "review", "C {{pr_title}}", version=1)
    assert template_service.show(db, 1, "review").body == "B {{pr_title}}"


def test_templates_and_jobs_are_kept_consistent_both_ways(db: Database) -> None:
    job_service.create_job(db, 1, {"name": "deploy", "prompt_template": "deploy {{env}}", "agent_type": "script",
                                   "agent_config": {"command": "true"}})
    with pytest.raises(Invalid) as info:
        template_service.save(db, 1, "job", "{{prompt}} {{params.region}}")
    assert info.value.field == "body" and "region" in info.value.message and "deploy" in info.value.message
    template_service.save(db, 1, "job", "[{{job}}] {{prompt}} in {{params.env}}")
    with pytest.raises(Invalid) as refused:
        job_service.create_job(db, 1, {"name": "lint", "prompt_template": "lint {{path}}", "agent_type": "script",
                                       "agent_config": {"command": "true"}})
    assert refused.value.field == "params_schema"
    with pytest.raises(Invalid) as dropped:
        job_service.update_job(db, 1, "deploy", {"prompt_template": "deploy {{zone}}", "params_schema": None})
    assert dropped.value.field == "params_schema"
    run = job_service.start_run(db, 1, "deploy", {"env": "prod"})
    assert run.prompt == "[deploy] deploy prod in prod"


def test_bad_requests_name_their_field(db: Database) -> None:
    for call, field in ((lambda: template_service.save(db, 1, "nope", "x"), "kind"),
                        (lambda: template_service.save(db, 1, "job", "{{prompt}}", repo="app"), "repo"),
                        (lambda: template_service.save(db, 1, "task", "{{#if prompt}}"), "body"),
                        (lambda: template_service.preview(db, 1, "task", values={"nope": 1}), "values.nope")):
        with pytest.raises(Invalid) as info:
            call()
        assert info.value.field == field
    with pytest.raises(NotFound):
        template_service.save(db, 1, "task", "{{prompt}}", repo="missing")
    rendered, source = template_service.preview(db, 1, "review", values={"pr_title": "{{x}}"})
    assert source == "builtin" and "Pull request #<pr_number>: {{x}}" in rendered
