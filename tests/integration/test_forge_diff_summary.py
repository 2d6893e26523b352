"""A PR's diff summary is the same change on every forge: the local forge's git (numstat and name-status of
base...head), GitHub's `pulls/{n}/files` and GitLab's merge request `diffs`, each served by a fake that computes
them from its real repos. One change set (a modification, an addition, a deletion, a rename with an edit, a
binary file, an awkward file name) must read identically everywhere; a long list pages, and a capped one says so.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.support.fake_github import FakeGitHub
from tests.support.fake_gitlab import FakeGitLab
from tests.support.gitlab_optio import GitLabOptio

from optio.control.ports import RunRef
from optio.forge import diffstat
from optio.forge.base import DiffSummary
from optio.forge.git import branch_for_task
from optio.forge.github import GitHubForge
from optio.forge.github import forge as github_forge
from optio.store import migrate
from optio.store.db import Database
from optio.store.models import Repo, Workspace

TOKEN = "ghp_optio_token_7f3a9c"
OLD = "".join(f"line {i}\n" for i in range(10))
BASE = {"a.txt": "a\n", "gone.txt": "x\ny\n", "old name.txt": OLD, "README.md": "demo\n"}
EXPECTED = {
    ("a.txt", "modified", 1, 1, False, None),
    ("new.txt", "added", 3, 0, False, None),
    ("gone.txt", "deleted", 0, 2, False, None),
    ("renamed.txt", "renamed", 1, 1, False, "old name.txt"),
    ("img.bin", "added", 0, 0, True, None),
    ("tab\there.txt", "added", 1, 0, False, None),
}
GIT_ENV = {"PATH": "/usr/bin:/bin", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_TERMINAL_PROMPT": "0"}


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={**GIT_ENV, "HOME": str(cwd)}).stdout


def change(work: Path) -> None:
    """The change set every forge is asked about (written into a checkout of BASE)."""
    (work / "a.txt").write_text("b\n")
    (work / "new.txt").write_text("1\n2\n3\n")
    (work / "gone.txt").unlink()
    (work / "old name.txt").unlink()
    (work / "renamed.txt").write_text(OLD.replace("line 9\n", "line nine\n"))
    (work / "img.bin").write_bytes(b"\x00\x01\x02binary\x00" * 20)
    (work / "tab\there.txt").write_text("t\n")


def rows(summary: DiffSummary) -> set[tuple[Any, ...]]:
    return {(f.path, f.status, f.additions, f.deletions, f.binary, f.old_path) for f in summary.files}


def test_local_git_summary_of_base_to_head(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    for name, text in BASE.items():
        (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "-qm", "base", cwd=work)
    git("checkout", "-qb", "optio/1", cwd=work)
    change(work)
    git("add", "-A", cwd=work)
    git("commit", "-qm", "change", cwd=work)
    # The base moves on after the branch left it: three dots show only what the head brings.
    git("checkout", "-q", "main", cwd=work)
    (work / "later.txt").write_text("on main only\n")
    git("add", "-A", cwd=work)
    git("commit", "-qm", "later", cwd=work)
    summary = diffstat.summarize(work, "main", "optio/1")
    assert rows(summary) == EXPECTED
    assert (summary.additions, summary.deletions, summary.changed_files, summary.truncated) == (6, 4, 6, False)
    capped = diffstat.summarize(work, "main", "optio/1", limit=2)
    assert capped.changed_files == 2 and capped.truncated is True


class Secrets:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def env_for(self, workspace_id: int, names: list[str], repo_id: int | None = None, *,
                run: RunRef | None = None) -> dict[str, str]:
        return {n: self.values[n] for n in names if n in self.values}


def github_pr(tmp_path: Path, fake: FakeGitHub, files: Any) -> tuple[GitHubForge, int, int]:
    """A repo on the fake with BASE, a pushed `optio/7` made by `files(work)`, its PR opened by the forge."""
    repo = fake.create_repo("acme", "diff", files=BASE)
    work = tmp_path / "w"
    git("clone", "-q", fake.remote_url(repo).replace("http://", f"http://x:{TOKEN}@"), str(work), cwd=tmp_path)
    git("checkout", "-qb", "optio/7", cwd=work)
    files(work)
    git("add", "-A", cwd=work)
    git("commit", "-qm", "change", cwd=work)
    git("push", "-q", "origin", "optio/7", cwd=work)
    db = Database(f"sqlite:///{tmp_path / 'optio.db'}")
    migrate.upgrade(db)
    with db.write() as session:
        ws = Workspace(slug="w", name="w")
        session.add(ws)
        session.flush()
        row = Repo(workspace_id=ws.id, name="diff", remote_url=fake.remote_url(repo), forge="github",
                   api_url=fake.api_url, credential_secret="GITHUB_TOKEN", default_branch="main")
        session.add(row)
        session.flush()
        repo_id = row.id
    forge = GitHubForge(db, secrets=Secrets({"GITHUB_TOKEN": TOKEN}), outbound_allowlist=["127.0.0.1"])
    info = forge.open_or_update_pr(repo_id, 7, head_branch="optio/7", head_sha="", title="A", body="b")
    return forge, repo_id, info.number


def test_github_lists_the_same_files(tmp_path: Path) -> None:
    with FakeGitHub(tmp_path / "gh") as fake:
        forge, repo_id, number = github_pr(tmp_path, fake, change)
        summary = forge.diff_summary(repo_id, number)
        assert rows(summary) == EXPECTED and summary.truncated is False
        assert any("/pulls/1/files" in path for _m, path, _s in fake.requests)


def many(work: Path) -> None:
    for i in range(130):
        (work / f"f{i:03}.txt").write_text(f"{i}\n")


def test_github_pages_through_a_long_list_and_marks_a_capped_one(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeGitHub(tmp_path / "gh") as fake:
        forge, repo_id, number = github_pr(tmp_path, fake, many)
        summary = forge.diff_summary(repo_id, number)
        assert summary.changed_files == 130 and summary.additions == 130 and not summary.truncated
        monkeypatch.setattr(github_forge, "DIFF_FILES_MAX", 100)
        capped = forge.diff_summary(repo_id, number)
        assert capped.changed_files == 100 and capped.truncated is True


def test_gitlab_lists_the_same_files(tmp_path: Path) -> None:
    with FakeGitLab(tmp_path / "gitlab") as fake:
        project = fake.create_project("acme/diff", files=BASE)
        env = GitLabOptio(tmp_path, fake, project)
        task = env.task()
        env.push(task, {"README.md": "demo\n"})
        change(env.data_dir / "worktrees" / f"task-{task}")
        head = env.push(task, {})
        info = env.forge.open_or_update_pr(env.repo_id, task, head_branch=branch_for_task(task), head_sha=head,
                                           title="Change", body="b")
        fake.wait_idle()
        summary = env.forge.diff_summary(env.repo_id, info.number)
        assert rows(summary) == EXPECTED and summary.truncated is False
        many_task = env.task("many")
        env.push(many_task, {f"f{i:03}.txt": f"{i}\n" for i in range(130)})
        more = env.forge.open_or_update_pr(env.repo_id, many_task, head_branch=branch_for_task(many_task),
                                           head_sha="", title="Many", body="b")
        assert env.forge.diff_summary(env.repo_id, more.number).changed_files == 130
        env.forge.shutdown()
