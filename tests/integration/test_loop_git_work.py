"""The loop's git work without waste: shared fetches, merges without checkouts, one refresh of a repo's PRs.

Real remotes, real caches, the real local forge on a real SQLite file.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest
from tests.support.forge_db import repo_world
from tests.support.git_remote import git, make_remote

from optio.forge.git import BatchConflictError, MergeConflictError, RepoCache, branch_for_task, run_git
from optio.forge.local import LocalForge
from optio.forge.process_lock import forget_lock, lock_for
from optio.store.db import Database
from optio.store.models import PullRequest, ReconcileItem, Repo


def push_to_main(remote: Path, tmp_path: Path, name: str, text: str) -> str:
    """Someone else's commit on the remote's main, made outside Optio."""
    clone = tmp_path / f"outside-{name}"
    if not clone.exists():
        git("clone", "-q", str(remote), str(clone), cwd=tmp_path)
    git("pull", "-q", "origin", "main", cwd=clone)
    (clone / name).write_text(text)
    git("add", "-A", cwd=clone)
    git("commit", "-qm", f"outside {name}", cwd=clone)
    git("push", "-q", "origin", "main", cwd=clone)
    return git("rev-parse", "HEAD", cwd=clone).strip()


def branch_with(cache: RepoCache, tmp_path: Path, task_id: int, files: dict[str, str]) -> str:
    """A task's commit of `files` on main, pushed to its branch; returns the head sha."""
    wt = tmp_path / "wt" / str(task_id)
    cache.add_worktree(wt, branch_for_task(task_id), "main")
    for name, text in files.items():
        (wt / name).write_text(text)
    cache.commit_all(wt, f"task {task_id}")
    return cache.push_branch(wt, branch_for_task(task_id))


def blocked_on(thread: threading.Thread, lock_frame: str) -> bool:
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == lock_frame:
            return True
        frame = frame.f_back
    return False


def test_callers_waiting_for_a_fetch_share_the_next_one_and_see_what_was_pushed_before_they_asked(
        tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    cache = RepoCache(str(remote), tmp_path / "cache.git")
    cache.ensure()
    pushed = push_to_main(remote, tmp_path, "new.txt", "new\n")
    seen: list[str] = []
    with cache._lock:  # another fetch (or clone) holds the cache: every caller below has to wait
        before = cache.fetch_count
        threads = [threading.Thread(target=lambda: (cache.fetch(), seen.append(cache.resolve("origin/main"))))
                   for _ in range(6)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while not all(blocked_on(t, "acquire") for t in threads):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    for t in threads:
        t.join(30)
    assert cache.fetch_count == before + 1  # one fetch served all six
    assert seen == [pushed] * 6


def test_a_recent_fetch_serves_an_advisory_read_while_a_plain_fetch_always_sees_a_new_push(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    cache = RepoCache(str(remote), tmp_path / "cache.git")
    cache.fetch()
    count = cache.fetch_count
    pushed = push_to_main(remote, tmp_path, "later.txt", "later\n")
    cache.fetch(max_age_s=300)  # the fetch just made is recent enough for an advisory read
    assert cache.fetch_count == count
    assert cache.resolve("origin/main") != pushed
    cache.fetch()  # a fetch that must see everything pushed before it was asked for fetches
    assert cache.fetch_count == count + 1
    assert cache.resolve("origin/main") == pushed
    cache.fetch()
    assert cache.fetch_count == count + 2  # sequential callers each get their own fetch


def test_test_merges_and_squashes_check_nothing_out_and_name_the_conflicting_files(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, files={"README.md": "demo\n", "shared.txt": "one\n"})
    cache = RepoCache(str(remote), tmp_path / "cache.git")
    cache.ensure()
    base = cache.resolve("origin/main")
    mine = branch_with(cache, tmp_path, 1, {"shared.txt": "mine\n", "mine.txt": "m\n"})
    other = branch_with(cache, tmp_path, 2, {"other.txt": "o\n"})
    clashing = branch_with(cache, tmp_path, 3, {"shared.txt": "theirs\n"})

    tested = cache.test_merge_many(base, [mine, other])
    files = run_git(["ls-tree", "--name-only", tested], cwd=cache.cache_dir).stdout.split()
    assert sorted(files) == ["README.md", "mine.txt", "other.txt", "shared.txt"]
    with pytest.raises(BatchConflictError) as batch:
        cache.test_merge_many(base, [mine, clashing])
    assert batch.value.head_sha == clashing and batch.value.conflicting_files == ["shared.txt"]

    landed = cache.squash_merge("main", mine, "mine (#1)", trailers={"Optio-PR": "1"})
    assert git("rev-parse", "main", cwd=remote).strip() == landed
    assert git("rev-parse", "main^", cwd=remote).strip() == base  # one commit, one parent
    assert git("show", "main:shared.txt", cwd=remote) == "mine\n"
    assert "Optio-PR: 1" in git("log", "-1", "--format=%B", "main", cwd=remote)
    assert cache.mergeability("main", clashing).conflicting_files == ["shared.txt"]
    with pytest.raises(MergeConflictError) as single:
        cache.test_merge(landed, clashing)
    assert single.value.conflicting_files == ["shared.txt"]
    with pytest.raises(MergeConflictError):
        cache.squash_merge("main", clashing, "theirs (#3)")
    assert git("rev-parse", "main", cwd=remote).strip() == landed  # nothing landed

    # No checkout was made for any of it: the cache has no worktree.
    listed = run_git(["worktree", "list", "--porcelain"], cwd=cache.cache_dir).stdout
    assert listed.count("worktree ") == 1 and "bare" in listed


def open_with(forge: LocalForge, tmp_path: Path, repo_id: int, task_id: int, files: dict[str, str]) -> tuple[int, str]:
    with forge.db.read() as session:
        repo = session.get(Repo, repo_id)
        assert repo is not None
    head = branch_with(forge.cache(repo), tmp_path, task_id, files)
    info = forge.open_or_update_pr(repo_id, task_id, head_branch=branch_for_task(task_id), head_sha=head,
                                   title=f"task {task_id}", body="")
    return info.number, head


def drain(forge: LocalForge) -> None:
    """Wait for the forge's background work (a job there may schedule one more behind it)."""
    for _ in range(3):
        forge._bg.submit(lambda: None).result(60)


def pr_of(db: Database, number: int) -> PullRequest:
    with db.read() as session:
        pr = session.query(PullRequest).filter_by(number=number).one()
        session.expunge(pr)
        return pr


def test_after_a_merge_the_repos_open_prs_are_refreshed_together_and_only_a_changed_pr_wakes_its_task(
        tmp_path: Path) -> None:
    db, _remote, repo_id = repo_world(tmp_path, ci_command=None, require_approval=False)
    forge = LocalForge(db, tmp_path / "data")
    try:
        first, first_head = open_with(forge, tmp_path, repo_id, 1, {"README.md": "first\n"})
        clean, _ = open_with(forge, tmp_path, repo_id, 2, {"two.txt": "2\n"})
        clash, _ = open_with(forge, tmp_path, repo_id, 3, {"README.md": "third\n"})
        drain(forge)
        assert pr_of(db, clean).mergeable is True and pr_of(db, clash).mergeable is True
        with db.write() as session:
            session.query(ReconcileItem).delete()

        forge.merge(repo_id, first, head_sha=first_head, message="first")
        drain(forge)  # the merge schedules the refresh of the repo's open PRs
        tip = forge.cache(_repo(db, repo_id)).resolve("origin/main")
        assert pr_of(db, clash).mergeable is False and pr_of(db, clash).conflicting_files == ["README.md"]
        assert pr_of(db, clean).mergeable is True and pr_of(db, clean).base_sha == tip
        with db.read() as session:
            woken = {item.run_id: item.reason for item in session.query(ReconcileItem)}
        assert woken.get(3) == "mergeability changed"
        assert 2 not in woken  # its base moved but it still merges cleanly: nothing for its task to do

        # The PR watcher's pass: one fetch for the repo, whatever its number of open PRs.
        cache = forge.cache(_repo(db, repo_id))
        count = cache.fetch_count
        assert forge.poll_open_prs() == 2
        assert cache.fetch_count == count + 1
    finally:
        forge.shutdown()


def _repo(db: Database, repo_id: int) -> Repo:
    with db.read() as session:
        repo = session.get(Repo, repo_id)
        assert repo is not None
        session.expunge(repo)
        return repo


def test_a_lock_nobody_holds_is_forgotten_and_one_held_is_kept_and_still_excludes(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "ci-pr-1.lock"
    lock = lock_for(path)
    with lock:
        forget_lock(path)  # held: kept
        assert lock_for(path) is lock
    forget_lock(path)
    again = lock_for(path)
    assert again is not lock  # nothing of a finished PR's lock stays in the server
    with again:
        taken: list[bool] = []
        thread = threading.Thread(target=lambda: taken.append(lock.acquire(blocking=False)))
        thread.start()
        thread.join(10)
        assert taken == [False]  # the old object still cannot take the lock the new one holds


def test_mergeability_test_merge_and_squash_of_one_pair_merge_once_and_attributes_files_are_written_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import optio.forge.git as forge_git

    remote = make_remote(tmp_path, files={"README.md": "demo\n", ".gitattributes": "*.log merge=union\n"})
    cache = RepoCache(str(remote), tmp_path / "cache.git")
    cache.ensure()
    base = cache.resolve("origin/main")
    head = branch_with(cache, tmp_path, 1, {"mine.txt": "m\n"})
    merges: list[list[str]] = []
    real_run_git = forge_git.run_git

    def counting(args: list[str], **kwargs):  # type: ignore[no-untyped-def]
        if "merge-tree" in args:
            merges.append(args)
        return real_run_git(args, **kwargs)

    monkeypatch.setattr(forge_git, "run_git", counting)
    tested = cache.test_merge(base, head)
    assert len(merges) == 1
    assert cache.mergeability(base, head, fetch=False).clean and len(merges) == 1  # the same merge again
    landed = cache.squash_merge("main", head, "mine (#1)", onto=base, trailers={"Optio-PR": "1"})
    assert len(merges) == 1  # the same two commits: the test merge's tree is the squash's
    tested_tree = real_run_git(["rev-parse", f"{tested}^{{tree}}"], cwd=cache.cache_dir).stdout
    assert git("rev-parse", f"{landed}^{{tree}}", cwd=remote) == tested_tree
    assert cache.mergeability("main", head).clean
    # One attributes file for the base's one .gitattributes text, named for it, however many merges read it.
    written = list((cache.cache_dir / "optio-attributes").iterdir())
    assert [p.read_text() for p in written] == ["*.log merge=union\n"]
