"""The GitHub adapter on its own against the fake GitHub: a review agent's verdict posted as a real review with
line comments (and read back as the agent's), required checks from branch protection, and a token that never
shows in what the adapter raises. The fake speaks GitHub's published shapes (test_fake_github_openapi.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tests.support.fake_github import FakeGitHub

from optio.control.ports import RunRef
from optio.forge.base import ForgeBusy, LineComment
from optio.forge.github import GitHubForge
from optio.forge.github.client import GitHubError
from optio.store import migrate
from optio.store.db import Database
from optio.store.models import Repo, Workspace

TOKEN = "ghp_optio_token_7f3a9c"


class Secrets:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def env_for(self, workspace_id: int, names: list[str], repo_id: int | None = None, *,
                run: RunRef | None = None) -> dict[str, str]:
        return {n: self.values[n] for n in names if n in self.values}


@pytest.fixture
def world(tmp_path: Path):  # type: ignore[no-untyped-def]
    with FakeGitHub(tmp_path / "gh") as fake:
        repo = fake.create_repo("acme", "unit", ci_command="echo fine")
        work = tmp_path / "w"
        url = fake.remote_url(repo).replace("http://", f"http://x:{TOKEN}@")
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
        for args in (["clone", "-q", url, str(work)], ["-C", str(work), "checkout", "-qb", "optio/7"]):
            subprocess.run(["git", *args], check=True, env=env, capture_output=True)
        (work / "a.txt").write_text("a\n")
        for args in (["add", "-A"], ["commit", "-qm", "a"], ["push", "-q", "origin", "optio/7"]):
            subprocess.run(["git", "-C", str(work), *args], check=True, env=env, capture_output=True)
        db = Database(f"sqlite:///{tmp_path / 'optio.db'}")
        migrate.upgrade(db)
        with db.write() as session:
            ws = Workspace(slug="w", name="w")
            session.add(ws)
            session.flush()
            row = Repo(workspace_id=ws.id, name="unit", remote_url=fake.remote_url(repo), forge="github",
                       api_url=fake.api_url, credential_secret="GITHUB_TOKEN", default_branch="main")
            session.add(row)
            session.flush()
            repo_id = row.id
        forge = GitHubForge(db, secrets=Secrets({"GITHUB_TOKEN": TOKEN}), outbound_allowlist=["127.0.0.1"])
        yield fake, repo, forge, repo_id


def test_review_agent_verdict_is_a_real_review_with_line_comments(world) -> None:  # type: ignore[no-untyped-def]
    fake, repo, forge, repo_id = world
    info = forge.open_or_update_pr(repo_id, 7, head_branch="optio/7", head_sha="", title="A", body="do a")
    fake.wait_ci_idle()
    forge.submit_review(repo_id, info.number, verdict="request_changes", comments="Needs a reason",
                        author="review-agent:script", line_comments=(LineComment("a.txt", 1, "say why"),))
    [posted] = repo.pulls[info.number].reviews
    assert posted.state == "CHANGES_REQUESTED" and posted.comments[0]["path"] == "a.txt"
    review = forge.latest_review(repo_id, info.number)
    assert review is not None and review.verdict == "request_changes"
    assert review.author == "review-agent:github", "read back as the agent's review, not a person's"
    assert "Needs a reason" in review.comments and "a.txt:1: say why" in review.comments
    state = forge.pr_for_task(repo_id, 7)
    assert state is not None and state.ci is not None and state.ci.status == "passing"
    assert state.review == review and state.info.head_branch == "optio/7" and state.info.mergeable is True


def test_required_checks_come_from_branch_protection(world) -> None:  # type: ignore[no-untyped-def]
    fake, repo, forge, repo_id = world
    info = forge.open_or_update_pr(repo_id, 7, head_branch="optio/7", head_sha="", title="A", body="do a")
    fake.wait_ci_idle()
    repo.required_checks = ["ci", "lint"]  # "lint" never reports: the PR waits for it
    state = forge.pr_for_task(repo_id, 7)
    assert state is not None and state.ci is not None and state.ci.status == "pending"
    assert forge.ci_for_head(repo_id, info.number).status == "pending"  # type: ignore[union-attr]


def test_errors_and_waits_never_carry_the_token(world) -> None:  # type: ignore[no-untyped-def]
    fake, _repo, forge, repo_id = world
    with pytest.raises(GitHubError) as refused:
        forge.merge(repo_id, 4242, head_sha="0" * 40, message="m")
    assert TOKEN not in str(refused.value)
    fake.fail_5xx_until = 10**12
    with pytest.raises(ForgeBusy) as busy:
        forge.pr_for_task(repo_id, 7)
    assert "502" in busy.value.reason and TOKEN not in busy.value.reason
    fake.fail_5xx_until = 0
    before = len(fake.requests)
    with pytest.raises(ForgeBusy):  # the forge said "not now": no request until the wait is over
        forge.pr_for_task(repo_id, 7)
    assert len(fake.requests) == before
