"""The fake GitLab speaks GitLab's published shapes, not a dialect of its own.

GitLab's own OpenAPI description (``doc/api/openapi/openapi_v2.yaml`` in the GitLab repository) is not
published on any package registry CI can reach, so the fake is checked against the API models that are:
the TypeScript response models of ``@gitbeaker/core`` (the maintained GitLab REST client on npm, one
interface per GitLab API entity) and the webhook payload models of ``gitlab-event-types``. Every kind of
response and webhook the adapter reads is fetched from a fake in a lived-in state (a red pipeline, diff
notes, an approval, a protected branch) and must carry every field the model requires with the JSON type
it declares. Where a model is stricter than GitLab itself (it types as non-null a field GitLab documents as
null when unset), the exception is listed below with the reason, field by field.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.support.fake_gitlab import FakeGitLab
from tests.support.gitlab_optio import GitLabOptio
from tests.support.ts_models import Models

PACKAGES = {"@gitbeaker/core": "43.8.0", "gitlab-event-types": "2.0.1"}

# Fields where the model is stricter than what GitLab documents and sends: (model, field) -> why.
LENIENT: dict[tuple[str, str], str] = {
    ("ProjectSchema", "permissions.group_access"): "GitLab sends null when the user has no group membership",
    ("IssueSchema", "due_date"): "GitLab sends null for an issue without a due date",
    ("IssueSchema", "discussion_locked"): "GitLab sends null for an issue whose discussion was never locked",
    ("IssueSchema", "closed_by"): "GitLab sends the closing user as a user object (null while open); the model "
                                  "types it as a string",
    ("JobSchema", "artifacts_file"): "GitLab sends artifacts_file only for a job with an artifacts archive",
    ("JobSchema", "user"): "GitLab's job entity carries the basic user, not the admin-only expanded user",
    ("MergeRequestEvent", "object_attributes.assignee"): "GitLab leaves assignee out of an unassigned MR's hook",
    ("MergeRequestEvent", "object_attributes.milestone_id"): "GitLab sends null without a milestone",
    ("NoteEvent", "object_attributes.st_diff"): "GitLab sends null for notes not on a diff (st_diff is legacy)",
    ("NoteEvent", "object_attributes.line_code"): "GitLab sends null for notes not on a diff line",
    ("PipelineEvent", "builds.artifacts_file"): "GitLab sends artifacts_file with null fields when none exist",
    ("PipelineEvent", "builds.runner"): "GitLab sends null before a runner picked the job up",
    ("PipelineEvent", "object_attributes.finished_at"): "GitLab sends null until the pipeline finishes",
    ("PipelineEvent", "object_attributes.duration"): "GitLab sends null until the pipeline finishes",
    ("NoteEvent", "merge_request.assignee"): "GitLab leaves assignee out of an unassigned MR's hook",
    ("NoteEvent", "merge_request.milestone_id"): "GitLab sends null without a milestone",
    ("NoteEvent", "merge_request.assignee_id"): "GitLab sends null for an unassigned MR",
    ("MergeRequestEvent", "object_attributes.source.avatar_url"): "GitLab sends null for a project without one",
    ("MergeRequestEvent", "object_attributes.target.avatar_url"): "GitLab sends null for a project without one",
    ("NoteEvent", "merge_request.source.avatar_url"): "GitLab sends null for a project without one",
    ("NoteEvent", "merge_request.target.avatar_url"): "GitLab sends null for a project without one",
    ("PushEvent", "project.avatar_url"): "GitLab sends null for a project without an avatar",
    ("MergeRequestEvent", "project.avatar_url"): "GitLab sends null for a project without an avatar",
    ("NoteEvent", "project.avatar_url"): "GitLab sends null for a project without an avatar",
    ("PipelineEvent", "project.avatar_url"): "GitLab sends null for a project without an avatar",
    ("IssueEvent", "project.avatar_url"): "GitLab sends null for a project without an avatar",
    ("IssueEvent", "assignee"): "GitLab leaves assignee out of an unassigned issue's hook",
    ("IssueEvent", "labels.group_id"): "GitLab sends null for a project (not group) label",
    ("IssueEvent", "object_attributes.assignee_id"): "GitLab sends null for an unassigned issue",
    ("IssueEvent", "object_attributes.branch_name"): "GitLab sends null when no branch was made from the issue",
    ("IssueEvent", "object_attributes.milestone_id"): "GitLab sends null without a milestone",
}


def _cache() -> Path:
    return Path(os.environ.get("OPTIO_CI_CACHE") or Path.home() / ".cache" / "optio-ci") / "gitlab-api-models"


@pytest.fixture(scope="module")
def models() -> Models:
    prefix = _cache()
    modules = prefix / "node_modules"

    def installed() -> bool:
        for name, version in PACKAGES.items():
            manifest = modules / name / "package.json"
            if not manifest.is_file() or json.loads(manifest.read_text()).get("version") != version:
                return False
        return True

    if not installed():
        npm = shutil.which("npm")
        if npm is None:
            if os.environ.get("CI"):
                pytest.fail("npm is needed to fetch GitLab's API models (@gitbeaker/core, gitlab-event-types)")
            pytest.skip("npm not installed: cannot fetch GitLab's API models")
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error",
                        *(f"{n}@{v}" for n, v in PACKAGES.items())], check=True, timeout=600,
                       capture_output=True)
    return Models.load(modules / "@gitbeaker/core/dist/index.d.ts", modules / "gitlab-event-types/dist/event.d.ts",
                       modules / "gitlab-event-types/dist/common.d.ts")


class Recorder:
    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.got.append((self.headers["X-Gitlab-Event"], json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"


@pytest.fixture
def lived_in(tmp_path: Path) -> Iterator[tuple[FakeGitLab, GitLabOptio, Recorder, dict[str, Any]]]:
    """A fake GitLab with one of everything the adapter reads, and the ids to reach them."""
    recorder = Recorder()
    with FakeGitLab(tmp_path / "gitlab") as fake:
        project = fake.create_project("acme/widget", files={"app.py": "x = 1\n"}, ci_script="echo boom; exit 1")
        fake.add_hook(project, recorder.url, "hook-token")
        fake.protect(project, "main", merge_level=40)
        project.approvals_required = 1
        env = GitLabOptio(tmp_path, fake, project)
        issue = fake.create_issue(project, "Broken", description="It breaks", labels=["bug", "optio"])
        fake.set_labels(project, issue, ["optio"])
        _post(fake, f"/projects/{project.id}/issues/{issue.iid}/notes", {"body": "picked up"})
        task = env.task()
        number, _ = env.open(task, {"app.py": "x = 2\n"})
        mr = project.mrs[number]
        fake.wait_idle()
        fake.comment(project, mr, "general remark")
        fake.comment(project, mr, "on a line", path="app.py", line=1)
        fake.approve_as_person(project, mr)
        fake.request_changes_as_reviewer(project, mr)
        fake.wait_idle()
        pipeline = project.pipelines[-1]
        ids = {"project": project.id, "mr": number, "pipeline": pipeline.id, "job": pipeline.jobs[0].id,
               "issue": issue.iid}
        yield fake, env, recorder, ids
        env.forge.shutdown()
    recorder.httpd.shutdown()


def _get(fake: FakeGitLab, path: str) -> Any:
    req = urllib.request.Request(f"{fake.base_url}/api/v4{path}", headers={"PRIVATE-TOKEN": fake.bot.token})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _post(fake: FakeGitLab, path: str, data: dict[str, Any]) -> Any:
    req = urllib.request.Request(f"{fake.base_url}/api/v4{path}", data=json.dumps(data).encode(), method="POST",
                                 headers={"PRIVATE-TOKEN": fake.bot.token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _put(fake: FakeGitLab, path: str, data: dict[str, Any]) -> Any:
    req = urllib.request.Request(f"{fake.base_url}/api/v4{path}", data=json.dumps(data).encode(), method="PUT",
                                 headers={"PRIVATE-TOKEN": fake.bot.token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _problems(models: Models, model: str, value: Any, *, where: str | None = None, partial: bool = False) -> list[str]:
    """What ``value`` gets wrong against ``model``; ``partial`` checks only the fields the fake sends."""
    members = models.all_members(model) if model in models.interfaces else models._members_of_type(model)
    if partial:
        members = {k: v for k, v in members.items() if k in value}
    errors = models.check_object(value, members, where or model)
    return [e for e in errors if not _lenient(e)]


def _lenient(error: str) -> bool:
    where = re.sub(r"\[\d+\]", "", error.split(":", 1)[0])
    return any(where == f"{m}.{f}" or where.startswith(f"{m}.{f}.") for m, f in LENIENT)


def test_rest_responses_match_gitlabs_published_models(models: Models, lived_in: Any) -> None:
    fake, _env, _rec, ids = lived_in
    p, mr = f"/projects/{ids['project']}", f"/projects/{ids['project']}/merge_requests/{ids['mr']}"
    checks: list[tuple[str, Any, bool]] = [
        ("SimpleProjectSchema", _get(fake, "/projects/acme%2Fwidget"), False),
        # The fake sends the project settings the adapter reads, not all ~100 of ProjectSchema: each one sent
        # must have the model's type.
        ("ProjectSchema", _get(fake, p), True),
        ("ExpandedMergeRequestSchema", _get(fake, mr), False),
        ("ExpandedPipelineSchema", _get(fake, mr)["head_pipeline"], False),
        ("DiffRefsSchema", _get(fake, mr)["diff_refs"], False),
        ("MergeRequestLevelMergeRequestApprovalSchema", _get(fake, f"{mr}/approvals"), False),
        ("BranchSchema", _get(fake, f"{p}/repository/branches/main"), False),
        ("ProtectedBranchSchema", _get(fake, f"{p}/protected_branches/main"), False),
        ("ExpandedPipelineSchema", _get(fake, f"{p}/pipelines/{ids['pipeline']}"), False),
        ("IssueSchema", _get(fake, f"{p}/issues/{ids['issue']}"), False),
        ("IssueNoteSchema", _post(fake, f"{p}/issues/{ids['issue']}/notes", {"body": "a note"}), False),
        ("IssueSchema", _put(fake, f"{p}/issues/{ids['issue']}", {"state_event": "close"}), False),
        ("MergeRequestNoteSchema", _post(fake, f"{mr}/notes", {"body": "a note"}), False),
        ("DiscussionSchema", _post(fake, f"{mr}/discussions", {"body": "a thread"}), False),
    ]
    lists = [
        ("MergeRequestSchema", _get(fake, f"{p}/merge_requests?state=all")),
        ("PipelineSchema", _get(fake, f"{p}/pipelines")),
        ("JobSchema", _get(fake, f"{p}/pipelines/{ids['pipeline']}/jobs?scope[]=failed")),
        ("DiscussionSchema", _get(fake, f"{mr}/discussions")),
        ("DiscussionNoteSchema", [n for d in _get(fake, f"{mr}/discussions") for n in d["notes"]]),
        ("MergeRequestDiffVersionsSchema", _get(fake, f"{mr}/versions")),
        ("MergeRequestReviewerSchema", _get(fake, f"{mr}/reviewers")),
        ("IssueSchema", _get(fake, f"{p}/issues?state=all&labels=optio")),
        ("IssueNoteSchema", _get(fake, f"{p}/issues/{ids['issue']}/notes")),
    ]
    errors: list[str] = []
    for model, value, partial in checks:
        assert model in models.interfaces, f"{model} is not in the published models"
        errors += _problems(models, model, value, partial=partial)
    for model, values in lists:
        assert values, f"nothing to check for {model}"
        for i, value in enumerate(values):
            errors += _problems(models, model, value, where=f"{model}[{i}]")
    assert errors == [], "\n".join(errors)
    assert isinstance(_get(fake, f"{p}/merge_requests?state=all")[0]["iid"], int)


def test_webhook_payloads_match_the_published_event_models(models: Models, lived_in: Any) -> None:
    fake, env, recorder, _ids = lived_in
    env.fake.push_to_default(env.project, {"other.txt": "x\n"})
    fake.wait_idle()
    by_event = {"Push Hook": "PushEvent", "Merge Request Hook": "MergeRequestEvent",
                "Pipeline Hook": "PipelineEvent", "Note Hook": "NoteEvent", "Issue Hook": "IssueEvent"}
    seen = {event for event, _ in recorder.got}
    assert set(by_event) <= seen, seen
    errors: list[str] = []
    for event, payload in recorder.got:
        model = by_event[event]
        errors += _problems(models, model, payload)
    assert errors == [], "\n".join(sorted(set(errors)))


def test_the_checker_catches_a_private_dialect(models: Models) -> None:
    """The check can fail: a renamed field, a wrong type or a value outside an enum is reported."""
    good = {"user": {"id": 1, "name": "n", "username": "u", "state": "active", "avatar_url": "", "web_url": ""},
            "state": "approved", "created_at": "2026-01-01T00:00:00Z"}
    assert _problems(models, "MergeRequestReviewerSchema", good) == []
    assert _problems(models, "MergeRequestReviewerSchema", {**good, "state": "lgtm"})
    assert _problems(models, "MergeRequestReviewerSchema", {**good, "created_at": 5})
    renamed = {k: v for k, v in good.items() if k != "state"} | {"status": "approved"}
    assert _problems(models, "MergeRequestReviewerSchema", renamed)
