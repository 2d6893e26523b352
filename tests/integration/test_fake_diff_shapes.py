"""The fakes' diff routes speak the published shapes: GitHub's `pulls/{n}/files` against `@octokit/openapi`'s
response schema, GitLab's merge request `diffs` against `@gitbeaker/core`'s `MergeRequestDiffSchema`, checked the
way the fakes' other routes are (test_fake_github_openapi.py, test_gitlab_fake_schema.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import jsonschema
from tests.integration.test_fake_github_openapi import load_spec, response_schema
from tests.integration.test_forge_diff_summary import BASE, TOKEN, change, github_pr
from tests.integration.test_gitlab_fake_schema import _get, _problems, models  # noqa: F401  (a fixture)
from tests.support.fake_github import FakeGitHub
from tests.support.fake_gitlab import FakeGitLab
from tests.support.gitlab_optio import GitLabOptio
from tests.support.ts_models import Models

from optio.forge.git import branch_for_task


def test_github_pull_files_match_the_openapi_schema(tmp_path: Path) -> None:
    spec = load_spec()
    with FakeGitHub(tmp_path / "gh") as fake:
        _forge, _repo_id, number = github_pr(tmp_path, fake, change)
        api = httpx.Client(base_url=fake.api_url + "/repos/acme/diff", headers={"Authorization": f"token {TOKEN}"})
        files = api.get(f"/pulls/{number}/files", params={"per_page": 100}).json()
        assert {f["status"] for f in files} == {"modified", "added", "removed", "renamed"}
        schema = response_schema(spec, "GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files", 200)
        jsonschema.validate(files, schema)
        served = [body for _m, template, _s, body in fake.served if template.endswith("/files")]
        assert served, "the route recorded what it served"
        for body in served:
            jsonschema.validate(body, schema)


def test_gitlab_mr_diffs_match_gitbeakers_model(tmp_path: Path, models: Models) -> None:  # noqa: F811
    with FakeGitLab(tmp_path / "gitlab") as fake:
        project = fake.create_project("acme/diff", files=BASE)
        env = GitLabOptio(tmp_path, fake, project)
        task = env.task()
        env.push(task, {"README.md": "demo\n"})
        change(env.data_dir / "worktrees" / f"task-{task}")
        head = env.push(task, {})
        info = env.forge.open_or_update_pr(env.repo_id, task, head_branch=branch_for_task(task), head_sha=head,
                                           title="Change", body="b")
        diffs: list[dict[str, Any]] = _get(fake, f"/projects/{project.id}/merge_requests/{info.number}/diffs")
        assert {d["renamed_file"] for d in diffs} == {True, False}
        errors: list[str] = []
        for i, entry in enumerate(diffs):
            errors += _problems(models, "MergeRequestDiffSchema", entry, where=f"MergeRequestDiffSchema[{i}]")
        assert errors == [], "\n".join(errors)
        env.forge.shutdown()
