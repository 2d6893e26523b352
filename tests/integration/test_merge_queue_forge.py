"""The local forge's merge queue: one re-test at a time per base, in order, and a front nobody merges moves aside.

Real SQLite, real git remote, the real local forge and its CI threads; no reconciler (the test merges as
a person would).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.integration.test_merge_recovery import open_pr
from tests.support.forge_db import repo_world
from tests.support.git_remote import git

from optio.forge import local
from optio.forge.git import branch_for_task
from optio.forge.local import LocalForge, MergeQueued
from optio.store.db import Database
from optio.store.models import CiRun, PullRequest, Repo


@pytest.fixture
def world(tmp_path: Path) -> tuple[Database, Path, int]:
    return repo_world(tmp_path, ci_command="true", require_approval=False)


def runs(db: Database, number: int) -> list[tuple[str | None, str]]:
    with db.read() as session:
        pr = session.query(PullRequest).filter_by(number=number).one()
        return [(r.base_sha, r.status) for r in session.query(CiRun).filter_by(pr_id=pr.id).order_by(CiRun.id)]


def wait_run(db: Database, number: int, base: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (base, "passing") not in runs(db, number):
        assert time.monotonic() < deadline, runs(db, number)
        time.sleep(0.05)


def test_queue_retests_one_pr_at_a_time_in_order(world: tuple[Database, Path, int], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    db, remote, repo_id = world
    forge = LocalForge(db, tmp_path / "data")
    forge.merge_batch_max = 1  # the serial queue (OPTIO_MERGE_BATCH_MAX=1): batches are tested elsewhere
    try:
        initial = git("rev-parse", "main", cwd=remote).strip()
        opened = {task: open_pr(forge, tmp_path, repo_id, task) for task in (1, 2, 3)}
        for number, _ in opened.values():
            wait_run(db, number, initial)
        forge.merge(repo_id, opened[1][0], head_sha=opened[1][1], message="one")
        after_one = git("rev-parse", "main", cwd=remote).strip()

        for task in (2, 3):
            number, head = opened[task]
            with pytest.raises(MergeQueued):
                forge.merge(repo_id, number, head_sha=head, message=str(task))
        assert git("rev-parse", "main", cwd=remote).strip() == after_one  # nothing landed untested
        wait_run(db, opened[2][0], after_one)
        time.sleep(0.5)
        assert [b for b, _ in runs(db, opened[3][0])] == [initial]  # the second in line waits its turn

        # Nobody merges the green front: after the grace it moves aside and the next PR is tested.
        monkeypatch.setattr(local, "QUEUE_FRONT_GRACE_S", 0.0)
        time.sleep(0.05)
        forge.poll_open_prs()
        wait_run(db, opened[3][0], after_one)
        forge.merge(repo_id, opened[3][0], head_sha=opened[3][1], message="three")
        after_three = git("rev-parse", "main", cwd=remote).strip()
        assert git("rev-parse", "main^", cwd=remote).strip() == after_one

        # The front that moved aside is re-queued when asked again, and tested on the new base first.
        with pytest.raises(MergeQueued):
            forge.merge(repo_id, opened[2][0], head_sha=opened[2][1], message="two")
        wait_run(db, opened[2][0], after_three)
        forge.merge(repo_id, opened[2][0], head_sha=opened[2][1], message="two")
        assert git("log", "--format=%s", "main", cwd=remote).splitlines() == ["two", "three", "one", "initial"]
    finally:
        forge.shutdown()


def test_a_new_pr_opens_while_a_merge_holds_the_base_and_a_moved_head_waits_for_it(
        world: tuple[Database, Path, int], tmp_path: Path) -> None:
    """Opening a PR takes no merge-queue lock: it is in no queue or batch yet, and the merges of the repo's
    other PRs hold that lock for the whole of their git work. Its number comes from one atomic increment,
    so PRs opened together are numbered apart. Moving an open PR to a new head still waits for the lock: a
    batch being landed sees the PR either before that push or after it."""
    db, _, repo_id = world
    forge = LocalForge(db, tmp_path / "data")
    try:
        open_pr(forge, tmp_path, repo_id, 1)
        base_lock = forge._base_lock(repo_id, "main")
        with ThreadPoolExecutor(4) as pool:
            base_lock.acquire()  # a merge of main is under way
            try:
                opening = [pool.submit(open_pr, forge, tmp_path, repo_id, task) for task in (2, 3, 4, 5)]
                opened = [future.result(timeout=30) for future in opening]  # all while the merge holds main
                assert sorted(number for number, _ in opened) == [2, 3, 4, 5]
                wt = tmp_path / "wt" / "1"
                (wt / "more.txt").write_text("a second commit\n")
                with db.read() as session:
                    repo = session.get(Repo, repo_id)
                    assert repo is not None
                cache = forge.cache(repo)
                cache.commit_all(wt, "more")
                head = cache.push_branch(wt, branch_for_task(1))
                moved = pool.submit(forge.open_or_update_pr, repo_id, 1, head_branch=branch_for_task(1),
                                    head_sha=head, title="task 1", body="")
                time.sleep(0.5)
                assert not moved.done()
            finally:
                base_lock.release()
            assert moved.result(timeout=30).head_sha == head
    finally:
        forge.shutdown()
