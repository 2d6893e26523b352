"""A crash right after the squash push: the merge retried after restart records the PR's own commit.

Real SQLite, real git remote, the real local forge. The crash is injected at the one point that matters:
the squash commit is on the remote, the database does not know yet.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.forge_db import repo_world
from tests.support.git_remote import git

from optio.forge.git import RepoCache, branch_for_task
from optio.forge.local import LocalForge
from optio.store.db import Database
from optio.store.models import PullRequest, Repo


class Crash(BaseException):
    """The server dying between the push and the write that records it."""


@pytest.fixture
def world(tmp_path: Path) -> tuple[Database, Path, int]:
    return repo_world(tmp_path)


def open_pr(forge: LocalForge, tmp_path: Path, repo_id: int, task_id: int) -> tuple[int, str]:
    """An agent's work for `task_id` pushed to its branch, and its PR opened on the forge."""
    with forge.db.read() as session:
        repo = session.get(Repo, repo_id)
        assert repo is not None
    cache = forge.cache(repo)
    cache.ensure()
    wt = tmp_path / "wt" / str(task_id)
    cache.add_worktree(wt, branch_for_task(task_id), "main")
    (wt / f"task{task_id}.txt").write_text(f"work of task {task_id}\n")
    cache.commit_all(wt, f"task {task_id}")
    head = cache.push_branch(wt, branch_for_task(task_id))
    info = forge.open_or_update_pr(repo_id, task_id, head_branch=branch_for_task(task_id), head_sha=head,
                                   title=f"task {task_id}", body="")
    return info.number, head


def merged_sha(db: Database, repo_id: int, number: int) -> str | None:
    with db.read() as session:
        pr = session.query(PullRequest).filter_by(repo_id=repo_id, number=number).one()
        return pr.merged_sha if pr.state == "merged" else None


def test_merge_after_a_crash_right_after_the_push_records_the_prs_own_commit(
    world: tuple[Database, Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, remote, repo_id = world
    forge = LocalForge(db, tmp_path / "data")
    prs = {task: open_pr(forge, tmp_path, repo_id, task) for task in (11, 12, 13)}

    real_squash = RepoCache.squash_merge

    def push_then_crash(self: RepoCache, *args: object, **kwargs: object) -> str:
        real_squash(self, *args, **kwargs)  # type: ignore[arg-type]
        raise Crash

    monkeypatch.setattr(RepoCache, "squash_merge", push_then_crash)
    number, head = prs[11]
    with pytest.raises(Crash):
        forge.merge(repo_id, number, head_sha=head, message="task 11 (#1)\n\nOptio task #11")
    monkeypatch.setattr(RepoCache, "squash_merge", real_squash)
    assert merged_sha(db, repo_id, number) is None  # the push landed, the record did not
    landed = git("rev-parse", "main", cwd=remote).strip()

    # After the restart, other PRs land first: main's tip is now another PR's commit.
    forge = LocalForge(db, tmp_path / "data")
    for task in (12, 13):
        n, h = prs[task]
        forge.merge(repo_id, n, head_sha=h, message=f"task {task} (#{n})")
    tip = git("rev-parse", "main", cwd=remote).strip()
    assert tip != landed

    recorded = forge.merge(repo_id, number, head_sha=head, message="task 11 (#1)\n\nOptio task #11")
    assert recorded == landed
    assert merged_sha(db, repo_id, number) == landed
    # Exactly one squash commit for the PR on main, carrying its trailers.
    subjects = git("log", "--format=%s", "main", cwd=remote).splitlines()
    assert subjects.count("task 11 (#1)") == 1
    trailers = git("log", "-1", "--format=%(trailers:only,unfold)", landed, cwd=remote)
    assert "Optio-Task: 11" in trailers and f"Optio-PR: {number}" in trailers and f"Optio-Head: {head}" in trailers


def test_a_pr_with_nothing_new_still_records_a_commit_of_its_own(
    world: tuple[Database, Path, int], tmp_path: Path
) -> None:
    db, remote, repo_id = world
    forge = LocalForge(db, tmp_path / "data")
    first, head = open_pr(forge, tmp_path, repo_id, 21)
    forge.merge(repo_id, first, head_sha=head, message="task 21")
    # A second PR whose head brings nothing main lacks (its change already landed).
    with db.write() as session:
        repo = session.get(Repo, repo_id)
        assert repo is not None
        number = repo.next_pr_number
        repo.next_pr_number = number + 1
        session.add(PullRequest(workspace_id=repo.workspace_id, repo_id=repo_id, task_id=22, number=number,
                                title="same", head_branch=branch_for_task(21), head_sha=head, base_branch="main"))
    tip_before = git("rev-parse", "main", cwd=remote).strip()
    own = forge.merge(repo_id, number, head_sha=head, message="task 22")
    assert own != tip_before
    assert "Optio-Task: 22" in git("log", "-1", "--format=%(trailers:only,unfold)", own, cwd=remote)


def test_recovery_records_a_pr_whose_squash_landed_before_the_crash(
    world: tuple[Database, Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Left open (and queued), the PR would be batched by the merge queue and land a second time.
    db, remote, repo_id = world
    forge = LocalForge(db, tmp_path / "data")
    number, head = open_pr(forge, tmp_path, repo_id, 21)
    other, _ = open_pr(forge, tmp_path, repo_id, 22)
    real_squash = RepoCache.squash_merge

    def push_then_crash(self: RepoCache, *args: object, **kwargs: object) -> str:
        real_squash(self, *args, **kwargs)  # type: ignore[arg-type]
        raise Crash

    monkeypatch.setattr(RepoCache, "squash_merge", push_then_crash)
    with pytest.raises(Crash):
        forge.merge(repo_id, number, head_sha=head, message="task 21")
    monkeypatch.setattr(RepoCache, "squash_merge", real_squash)
    landed = git("rev-parse", "main", cwd=remote).strip()

    restarted = LocalForge(db, tmp_path / "data")
    assert restarted.record_landed() == 1
    assert merged_sha(db, repo_id, number) == landed
    assert merged_sha(db, repo_id, other) is None
    assert restarted.record_landed() == 0
