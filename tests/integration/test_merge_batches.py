"""Merge-queue batches on the local forge: several queued PRs tested in one CI run and landed as one commit,
a red batch bisected down to its bad PR, nothing landed on a base that moved outside Optio.

Real SQLite, real git remote, the real local forge and its CI threads. No reconciler: the test asks for merges
as the loop (or a person) would, and `drive` keeps asking, as woken tasks do, until every PR is settled.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from tests.support.forge_db import repo_world
from tests.support.git_remote import git

from optio.errors import Conflict
from optio.forge.git import BaseMovedError, RepoCache, branch_for_task
from optio.forge.local import LocalForge, MergeQueued
from optio.store.db import Database
from optio.store.models import CiRun, MergeBatch, PullRequest, Repo

# A PR adding bad.txt passes alone on the first main, and fails once task1.txt (the first PR) has landed.
CI = 'if [ -e bad.txt ] && [ -e task1.txt ]; then echo "bad.txt AND task1.txt EXIST"; exit 1; fi; echo ok'


@pytest.fixture
def world(tmp_path: Path) -> tuple[Database, Path, int]:
    return repo_world(tmp_path, ci_command=CI, require_approval=False)


def open_pr(forge: LocalForge, tmp_path: Path, repo_id: int, task_id: int, *, name: str | None = None) -> int:
    """Task `task_id`'s agent adds one file (task<N>.txt, or `name`) and its PR is opened; returns its number."""
    with forge.db.read() as session:
        repo = session.get(Repo, repo_id)
        assert repo is not None
    cache = forge.cache(repo)
    cache.ensure()
    wt = tmp_path / "wt" / str(task_id)
    cache.add_worktree(wt, branch_for_task(task_id), "main")
    (wt / (name or f"task{task_id}.txt")).write_text(f"work of task {task_id}\n")
    cache.commit_all(wt, f"task {task_id}")
    head = cache.push_branch(wt, branch_for_task(task_id))
    return forge.open_or_update_pr(repo_id, task_id, head_branch=branch_for_task(task_id), head_sha=head,
                                   title=f"task {task_id}", body="").number


def pr_row(db: Database, number: int) -> PullRequest:
    with db.read() as session:
        return session.query(PullRequest).filter_by(number=number).one()


def ci_rows(db: Database, number: int) -> list[CiRun]:
    with db.read() as session:
        pr = session.query(PullRequest).filter_by(number=number).one()
        return list(session.query(CiRun).filter_by(pr_id=pr.id).order_by(CiRun.id))


def batch_rows(db: Database) -> list[MergeBatch]:
    with db.read() as session:
        return list(session.query(MergeBatch).order_by(MergeBatch.id))


def wait_for(what: str, check, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def green_on(db: Database, number: int, base: str) -> bool:
    return any(r.base_sha == base and r.status == "passing" for r in ci_rows(db, number))


def merge(forge: LocalForge, repo_id: int, number: int, message: str | None = None) -> str | None:
    """Ask to merge as the loop does: the merged sha, or None when the PR waits in the queue."""
    try:
        return forge.merge(repo_id, number, head_sha=pr_row(forge.db, number).head_sha,
                           message=message or f"task {number} (#{number})")
    except MergeQueued:
        return None


def drive(forge: LocalForge, repo_id: int, numbers: list[int], timeout: float = 90) -> None:
    """Keep asking to merge each PR still open and queued, as woken tasks do, until none is left waiting."""
    deadline = time.monotonic() + timeout
    while True:
        waiting = [n for n in numbers if pr_row(forge.db, n).state == "open"
                   and pr_row(forge.db, n).merge_queued_at is not None]
        if not waiting:
            return
        assert time.monotonic() < deadline, [(n, pr_row(forge.db, n).state) for n in waiting]
        for n in waiting:
            try:
                merge(forge, repo_id, n)
            except Conflict:
                pass  # red on the current base: it has left the queue
        time.sleep(0.1)


def main_log(remote: Path) -> list[str]:
    return git("log", "--first-parent", "--format=%H", "main", cwd=remote).split()


def tree(repo: Path, rev: str) -> str:
    return git("rev-parse", f"{rev}^{{tree}}", cwd=repo).strip()


def setup_front(forge: LocalForge, db: Database, remote: Path, repo_id: int, tmp_path: Path,
                queued: list[int | tuple[int, str]]) -> tuple[str, list[int]]:
    """PR 1 merged, PR 2 re-tested alone and green at the queue's front, the PRs `queued` waiting behind it.

    Returns main after PR 1 and the numbers of the queued PRs (all green on the first main).
    """
    initial = git("rev-parse", "main", cwd=remote).strip()
    numbers = [open_pr(forge, tmp_path, repo_id, 1), open_pr(forge, tmp_path, repo_id, 2)]
    for item in queued:
        task, name = (item, None) if isinstance(item, int) else item
        numbers.append(open_pr(forge, tmp_path, repo_id, task, name=name))
    for n in numbers:
        wait_for(f"#{n} green on the first main", lambda n=n: green_on(db, n, initial))
        forge.submit_review(repo_id, n, verdict="approve", comments="ok", author="alice")
    assert merge(forge, repo_id, 1) is not None
    after_one = git("rev-parse", "main", cwd=remote).strip()
    assert merge(forge, repo_id, 2) is None
    wait_for("#2 green on main after #1", lambda: green_on(db, 2, after_one))
    for n in numbers[2:]:
        assert merge(forge, repo_id, n) is None
    assert batch_rows(db) == []  # the front is green: nothing else is tested while it waits for its merge
    return after_one, numbers[2:]


def test_prs_queued_behind_a_merge_are_tested_once_together_and_land_as_one_commit(
    world: tuple[Database, Path, int], tmp_path: Path
) -> None:
    db, remote, repo_id = world
    forge = LocalForge(db, tmp_path / "data")
    try:
        _, queued = setup_front(forge, db, remote, repo_id, tmp_path, [3, 4, 5, 6])
        assert merge(forge, repo_id, 2) is not None
        after_two = git("rev-parse", "main", cwd=remote).strip()
        wait_for("the batch landed", lambda: all(pr_row(db, n).state == "merged" for n in queued))

        [batch] = batch_rows(db)
        assert batch.status == "landed" and batch.base_sha == after_two
        assert batch.pr_ids == [pr_row(db, n).id for n in queued]
        tip = git("rev-parse", "main", cwd=remote).strip()
        assert batch.merged_sha == tip and git("rev-parse", "main^", cwd=remote).strip() == after_two
        assert len(main_log(remote)) == 4  # initial, #1, #2 and ONE commit for the four PRs
        with db.read() as session:
            repo = session.get(Repo, repo_id)
            assert repo is not None
            cache_dir = forge.cache(repo).cache_dir
        assert batch.tested_sha and tree(cache_dir, batch.tested_sha) == tree(remote, "main")  # lands what CI tested
        for n in queued:
            assert pr_row(db, n).merged_sha == tip
            assert [r.base_sha for r in ci_rows(db, n)] == [ci_rows(db, n)[0].base_sha]  # no re-test of its own
        message = git("log", "-1", "--format=%B", "main", cwd=remote)
        trailers = git("log", "-1", "--format=%(trailers:only,unfold)", "main", cwd=remote).splitlines()
        assert message.startswith("Merge 4 pull requests into main")
        for n in queued:
            assert f"task {n} (#{n})" in message
            assert f"Optio-PR: {n}" in trailers and f"Optio-Task: {n}" in trailers
            assert f"Optio-Head: {pr_row(db, n).head_sha}" in trailers
        assert git("ls-tree", "--name-only", "main", cwd=remote).split() == [
            "README.md", *(f"task{n}.txt" for n in range(1, 7))]
        # The merged branches are deleted, as after a single merge.
        wait_for("branches deleted", lambda: git("for-each-ref", "--format=%(refname:short)", "refs/heads",
                                                  cwd=remote).split() == ["main"])
    finally:
        forge.shutdown()


def test_a_red_batch_is_bisected_the_good_prs_land_and_the_bad_one_gets_the_failing_output(
    world: tuple[Database, Path, int], tmp_path: Path
) -> None:
    db, remote, repo_id = world
    forge = LocalForge(db, tmp_path / "data")
    try:
        _, queued = setup_front(forge, db, remote, repo_id, tmp_path, [3, (4, "bad.txt"), 5, 6])
        assert merge(forge, repo_id, 2) is not None
        after_two = git("rev-parse", "main", cwd=remote).strip()
        bad = queued[1]
        drive(forge, repo_id, queued)

        assert [pr_row(db, n).state for n in queued] == ["merged", "open", "merged", "merged"]
        bad_pr = pr_row(db, bad)
        assert bad_pr.merge_queued_at is None  # it left the queue: back to its agent
        red = [r for r in ci_rows(db, bad) if r.status == "failing"]
        assert len(red) == 1 and red[0].head_sha == bad_pr.head_sha
        assert red[0].base_sha == pr_row(db, queued[0]).merged_sha  # tested alone on top of what landed
        assert "bad.txt AND task1.txt EXIST" in red[0].output
        assert forge.ci_for_head(repo_id, bad) is not None and forge.ci_for_head(repo_id, bad).status == "failing"

        rows = batch_rows(db)
        ids = {pr_row(db, n).id: n for n in queued}
        shape = [([ids[i] for i in b.pr_ids], b.status) for b in rows]
        # The batch of four fails; its first half fails; #3 alone passes and lands, #4 alone fails; the second
        # half is tested on top of #3 and lands.
        assert shape[0] == (queued, "bisected") and shape[1] == (queued[:2], "bisected")
        assert ([queued[2], queued[3]], "landed") in shape
        landed = next(b for b in rows if b.status == "landed")
        assert landed.base_sha == pr_row(db, queued[0]).merged_sha
        assert rows[0].base_sha == after_two and "bad.txt AND task1.txt EXIST" in rows[0].output
        # Main: initial, #1, #2, #3 alone, then #5 and #6 together; never the bad file.
        assert len(main_log(remote)) == 5
        assert "bad.txt" not in git("ls-tree", "--name-only", "main", cwd=remote).split()
        assert_every_main_commit_tested(db, remote, forge, repo_id)
    finally:
        forge.shutdown()


def assert_every_main_commit_tested(db: Database, remote: Path, forge: LocalForge, repo_id: int,
                                    outside: tuple[str, ...] = ()) -> None:
    """Every commit of main after the first (but those pushed `outside` Optio) has exactly the tree of a passing
    test merge made on its parent."""
    with db.read() as session:
        repo = session.get(Repo, repo_id)
        assert repo is not None
        cache_dir = forge.cache(repo).cache_dir
        pairs = [(r.base_sha, r.tested_sha) for r in session.query(CiRun).filter_by(status="passing")]
        pairs += [(b.base_sha, b.tested_sha) for b in session.query(MergeBatch)
                  if b.status in ("passing", "landed")]
    tested = {(base, tree(cache_dir, sha)) for base, sha in pairs if sha}
    rows = [line.split() for line in git("log", "--first-parent", "--format=%H %P", "main", cwd=remote).splitlines()]
    for sha, *parents in rows:
        if parents and sha not in outside:
            assert (parents[0], tree(remote, sha)) in tested, f"{sha[:10]} was not tested on its parent"


def push_outside(remote: Path, tmp_path: Path, name: str) -> str:
    """Someone pushes a commit to main behind Optio's back; returns the new main."""
    clone = tmp_path / f"outside-{name}"
    subprocess.run(["git", "clone", "-q", str(remote), str(clone)], check=True, capture_output=True)
    (clone / name).write_text("pushed outside Optio\n")
    git("add", name, cwd=clone)
    git("-c", "user.name=someone", "-c", "user.email=s@example.com", "commit", "-qm", f"outside {name}", cwd=clone)
    git("push", "-q", "origin", "HEAD:main", cwd=clone)
    return git("rev-parse", "HEAD", cwd=clone).strip()


def set_ci(db: Database, repo_id: int, command: str) -> None:
    with db.write() as session:
        repo = session.get(Repo, repo_id)
        assert repo is not None
        repo.ci_command = command


def test_a_batch_green_on_a_base_someone_pushed_to_meanwhile_does_not_land_and_is_tested_again(
    world: tuple[Database, Path, int], tmp_path: Path
) -> None:
    db, remote, repo_id = world
    forge = LocalForge(db, tmp_path / "data")
    try:
        _, queued = setup_front(forge, db, remote, repo_id, tmp_path, [3, 4])
        set_ci(db, repo_id, f"sleep 3; {CI}")  # a slow CI: the push lands while it runs
        assert merge(forge, repo_id, 2) is not None
        after_two = git("rev-parse", "main", cwd=remote).strip()
        wait_for("the batch is running", lambda: [b.status for b in batch_rows(db)] == ["pending"])
        outside = push_outside(remote, tmp_path, "outside.txt")
        wait_for("the batch landed", lambda: all(pr_row(db, n).state == "merged" for n in queued), timeout=60)

        first, second = batch_rows(db)
        assert first.base_sha == after_two and first.status == "dropped"  # green, but main was no longer there
        assert first.tested_sha is not None
        assert second.base_sha == outside and second.status == "landed"
        assert git("rev-parse", "main^", cwd=remote).strip() == outside
        assert git("log", "--format=%s", "-2", "main", cwd=remote).splitlines()[1] == "outside outside.txt"
        assert_every_main_commit_tested(db, remote, forge, repo_id, outside=(outside,))
    finally:
        forge.shutdown()


def test_landing_only_on_the_tested_tip(world: tuple[Database, Path, int], tmp_path: Path) -> None:
    """The squash and the batch commit are a compare-and-swap on the base ref: a moved base lands nothing."""
    db, remote, repo_id = world
    forge = LocalForge(db, tmp_path / "data")
    try:
        number = open_pr(forge, tmp_path, repo_id, 1)
        initial = git("rev-parse", "main", cwd=remote).strip()
        wait_for("green", lambda: green_on(db, number, initial))
        with db.read() as session:
            repo = session.get(Repo, repo_id)
            assert repo is not None
        cache = forge.cache(repo)
        head = pr_row(db, number).head_sha
        tested = next(r.tested_sha for r in ci_rows(db, number) if r.status == "passing")
        assert tested is not None
        outside = push_outside(remote, tmp_path, "outside.txt")
        with pytest.raises(BaseMovedError):
            cache.squash_merge("main", head, "task 1 (#1)", onto=initial,
                               trailers={"Optio-PR": "1", "Optio-Head": head})
        with pytest.raises(BaseMovedError):
            cache.land_tree("main", initial, tested, "batch", trailers=[("Optio-Batch", "1")],
                            landed_if={"Optio-Batch": "1"})
        assert git("rev-parse", "main", cwd=remote).strip() == outside  # nothing landed

        # Through the forge: the merge fetches, finds CI stale on the moved base, and queues the PR for a re-test.
        assert merge(forge, repo_id, number) is None
        wait_for("green on the new main", lambda: green_on(db, number, outside))
        assert merge(forge, repo_id, number) is not None
        assert git("rev-parse", "main^", cwd=remote).strip() == outside
    finally:
        forge.shutdown()


def test_a_pr_closed_mid_batch_drops_out_and_the_rest_land(world: tuple[Database, Path, int],
                                                            tmp_path: Path) -> None:
    db, remote, repo_id = world
    forge = LocalForge(db, tmp_path / "data")
    try:
        _, queued = setup_front(forge, db, remote, repo_id, tmp_path, [3, 4, 5])
        set_ci(db, repo_id, f"sleep 2.5; {CI}")
        assert merge(forge, repo_id, 2) is not None
        wait_for("the batch is running", lambda: [b.status for b in batch_rows(db)] == ["pending"])
        forge.close(repo_id, queued[1])
        wait_for("the rest landed", lambda: pr_row(db, queued[0]).state == pr_row(db, queued[2]).state == "merged")
        first, second = batch_rows(db)
        assert first.status == "dropped" and second.status == "landed"
        assert second.pr_ids == [pr_row(db, queued[0]).id, pr_row(db, queued[2]).id]
        assert pr_row(db, queued[1]).state == "closed"
        assert "task4.txt" not in git("ls-tree", "--name-only", "main", cwd=remote).split()
        assert_every_main_commit_tested(db, remote, forge, repo_id)
    finally:
        forge.shutdown()


def test_batching_off_tests_one_pr_at_a_time(world: tuple[Database, Path, int], tmp_path: Path) -> None:
    db, remote, repo_id = world
    forge = LocalForge(db, tmp_path / "data")
    forge.merge_batch_max = 1
    try:
        _, queued = setup_front(forge, db, remote, repo_id, tmp_path, [3, 4])
        assert merge(forge, repo_id, 2) is not None
        drive(forge, repo_id, queued)
        assert batch_rows(db) == []
        assert len(main_log(remote)) == 5  # each PR its own commit
        assert_every_main_commit_tested(db, remote, forge, repo_id)
    finally:
        forge.shutdown()


def test_a_new_push_mid_batch_drops_the_pr_out_and_the_rest_land(world: tuple[Database, Path, int],
                                                                  tmp_path: Path) -> None:
    db, remote, repo_id = world
    forge = LocalForge(db, tmp_path / "data")
    try:
        _, queued = setup_front(forge, db, remote, repo_id, tmp_path, [3, 4, 5])
        set_ci(db, repo_id, f"sleep 2.5; {CI}")
        assert merge(forge, repo_id, 2) is not None
        wait_for("the batch is running", lambda: [b.status for b in batch_rows(db)] == ["pending"])
        # Task 4's agent pushes again: its PR leaves the queue (a new head is tested afresh before it queues).
        with db.read() as session:
            repo = session.get(Repo, repo_id)
            assert repo is not None
        cache = forge.cache(repo)
        wt = tmp_path / "wt" / "4"
        (wt / "more.txt").write_text("more\n")
        cache.commit_all(wt, "more")
        forge.open_or_update_pr(repo_id, 4, head_branch=branch_for_task(4),
                                head_sha=cache.push_branch(wt, branch_for_task(4)), title="task 4", body="")
        wait_for("the rest landed", lambda: pr_row(db, queued[0]).state == pr_row(db, queued[2]).state == "merged")
        first, second = batch_rows(db)[:2]
        assert first.status == "dropped" and second.status == "landed"
        assert second.pr_ids == [pr_row(db, queued[0]).id, pr_row(db, queued[2]).id]
        four = pr_row(db, queued[1])
        assert four.state == "open" and four.merge_queued_at is None
        assert "more.txt" not in git("ls-tree", "--name-only", "main", cwd=remote).split()
        assert_every_main_commit_tested(db, remote, forge, repo_id)
    finally:
        forge.shutdown()


class Crash(Exception):
    pass


def test_a_restart_after_the_batch_push_and_before_its_record_records_the_landed_commit(
    world: tuple[Database, Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, remote, repo_id = world
    forge = LocalForge(db, tmp_path / "data")
    real_land = RepoCache.land_tree

    def push_then_crash(self: RepoCache, *args: object, **kwargs: object) -> str:
        real_land(self, *args, **kwargs)  # type: ignore[arg-type]
        raise Crash

    try:
        _, queued = setup_front(forge, db, remote, repo_id, tmp_path, [3, 4])
        monkeypatch.setattr(RepoCache, "land_tree", push_then_crash)
        assert merge(forge, repo_id, 2) is not None
        wait_for("the batch pushed", lambda: [b.status for b in batch_rows(db)] == ["passing"]
                 and git("log", "-1", "--format=%s", "main", cwd=remote).startswith("Merge 2 pull requests"))
        time.sleep(0.3)
    finally:
        forge.shutdown()
    monkeypatch.setattr(RepoCache, "land_tree", real_land)
    landed = git("rev-parse", "main", cwd=remote).strip()
    assert [pr_row(db, n).state for n in queued] == ["open", "open"]  # the push landed, the record did not

    forge = LocalForge(db, tmp_path / "data")
    try:
        forge.recover()
        wait_for("recorded", lambda: all(pr_row(db, n).state == "merged" for n in queued))
        assert [pr_row(db, n).merged_sha for n in queued] == [landed, landed]
        assert [(b.status, b.merged_sha) for b in batch_rows(db)] == [("landed", landed)]
        assert git("rev-parse", "main", cwd=remote).strip() == landed  # landed once, not again
    finally:
        forge.shutdown()


def test_a_pr_whose_approval_is_withdrawn_mid_batch_leaves_the_queue_and_the_rest_land(
    tmp_path: Path
) -> None:
    db, remote, repo_id = repo_world(tmp_path, ci_command=CI, require_approval=True)
    forge = LocalForge(db, tmp_path / "data")
    try:
        _, queued = setup_front(forge, db, remote, repo_id, tmp_path, [3, 4, 5])
        set_ci(db, repo_id, f"sleep 2.5; {CI}")
        assert merge(forge, repo_id, 2) is not None
        wait_for("the batch is running", lambda: [b.status for b in batch_rows(db)] == ["pending"])
        forge.submit_review(repo_id, queued[1], verdict="request_changes", comments="not this", author="bob")
        wait_for("the rest landed", lambda: pr_row(db, queued[0]).state == pr_row(db, queued[2]).state == "merged")
        first, second = batch_rows(db)
        assert first.status == "dropped" and second.status == "landed"  # green, but #4 may no longer merge
        assert second.pr_ids == [pr_row(db, queued[0]).id, pr_row(db, queued[2]).id]
        four = pr_row(db, queued[1])
        assert four.state == "open" and four.merge_queued_at is None
        assert "task4.txt" not in git("ls-tree", "--name-only", "main", cwd=remote).split()
        assert_every_main_commit_tested(db, remote, forge, repo_id)
    finally:
        forge.shutdown()
