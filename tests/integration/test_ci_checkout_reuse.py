"""CI checkouts kept between runs: each run still sees exactly its commit, whatever the run before it left.

Real git, real processes, real files under tmp_path. The CI commands here play the part of a hostile run
(without a sandbox, which would only narrow what they can reach): they leave files, rewrite tracked ones
behind git's back, swap a directory for a link and plant configuration in the checkout's ``.git``.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tests.support.git_remote import make_remote

from optio.forge import git as forge_git
from optio.forge.git import RepoCache, branch_for_task
from optio.forge.process_lock import lock_for
from optio.runtime.process_group import TAG_ENV

# Printed by every CI command below: what the next test run must find.
REPORT = (
    'echo "at=$(pwd)"; echo "head=$(git rev-parse HEAD)"; echo "readme-inode=$(stat -c %i README.md)"; '
    'echo "files=$(find . -path ./.git -prune -o -type f -print -o -type l -print | sort | tr "\\n" " ")"; '
    'echo "status=$(git status --porcelain --ignored | tr "\\n" " ")"; echo "readme=$(cat README.md)"; '
    'echo "fsmonitor=$(git config --get core.fsmonitor || echo none)"'
)


@pytest.fixture
def cache(tmp_path: Path) -> RepoCache:
    remote = make_remote(tmp_path, files={"README.md": "demo\n", "src/a.txt": "a\n"})
    return RepoCache(str(remote), tmp_path / "cache")


def commit(cache: RepoCache, tmp_path: Path, task_id: int, files: dict[str, str]) -> str:
    wt = tmp_path / "worktrees" / str(task_id)
    cache.add_worktree(wt, branch_for_task(task_id), "main")
    for name, text in files.items():
        (wt / name).write_text(text)
    assert cache.commit_all(wt, f"task {task_id}") is not None
    return cache.push_branch(wt, branch_for_task(task_id))


def report(cache: RepoCache, tmp_path: Path, sha: str, before: str = "") -> dict[str, str]:
    result = cache.run_ci(sha, f"{before}\n{REPORT}" if before else REPORT, work_root=tmp_path / "ci")
    assert result.status == "passing", result.output
    lines = [line.partition("=") for line in result.output.splitlines() if "=" in line]
    return {key: value.strip() for key, _, value in lines}


@contextmanager
def held_elsewhere(paths: list[Path]) -> Iterator[None]:
    """The slot locks at ``paths`` held by another thread, as a CI run in progress holds one."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        locks = [lock_for(p) for p in paths]
        for lock in locks:
            lock.acquire()
        taken.set()
        done.wait()
        for lock in locks:
            lock.release()

    thread = threading.Thread(target=hold)
    thread.start()
    taken.wait()
    try:
        yield
    finally:
        done.set()
        thread.join()


def test_a_kept_checkout_moves_to_each_commit_rewriting_only_what_differs(tmp_path: Path, cache: RepoCache) -> None:
    first = commit(cache, tmp_path, 1, {"feature.txt": "feature\n"})
    second = commit(cache, tmp_path, 2, {"other.txt": "other\n"})

    one = report(cache, tmp_path, first)
    two = report(cache, tmp_path, second)

    assert one["head"] == first and two["head"] == second
    assert one["files"] == "./README.md ./feature.txt ./src/a.txt"
    assert two["files"] == "./README.md ./other.txt ./src/a.txt"
    assert one["status"] == two["status"] == ""
    assert one["at"] == two["at"] == str(tmp_path / "cache.ci" / "0" / "checkout")
    assert one["readme-inode"] == two["readme-inode"]  # the same file: only what differs was written
    assert list((tmp_path / "ci").iterdir()) == []


def test_whatever_a_run_leaves_in_its_checkout_is_gone_for_the_next(tmp_path: Path, cache: RepoCache) -> None:
    sha = commit(cache, tmp_path, 1, {"feature.txt": "feature\n"})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not Optio's to touch\n")
    pwned = tmp_path / "pwned"
    hostile = (
        "echo junk > junk.txt && printf '*.log\\n' > .gitignore && echo log > run.log"
        " && git init -q nested && echo n > nested/n.txt"
        " && m=$(stat -c %Y README.md) && printf X | dd of=README.md bs=1 count=1 conv=notrunc 2>/dev/null"
        " && touch -d @$m README.md"  # same size, same mtime: only its ctime tells
        " && rm feature.txt"
        f" && rm -r src && ln -s {outside} src"
        f" && git config core.fsmonitor 'touch {pwned}'"
        " && mkdir -p .git/hooks"
        f" && printf '#!/bin/sh\\ntouch {pwned}\\n' > .git/hooks/post-checkout && chmod +x .git/hooks/post-checkout"
    )

    left = cache.run_ci(sha, hostile, work_root=tmp_path / "ci")
    assert left.status == "passing", left.output
    after = report(cache, tmp_path, sha)

    assert after["head"] == sha
    assert after["files"] == "./README.md ./feature.txt ./src/a.txt"
    assert after["status"] == ""
    assert after["readme"] == "demo"
    assert after["fsmonitor"] == "none"
    assert not pwned.exists()
    assert not (tmp_path / "cache.ci" / "0" / "checkout" / "src").is_symlink()
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]


def test_a_kept_checkout_that_cannot_be_brought_back_is_made_afresh(tmp_path: Path, cache: RepoCache) -> None:
    sha = commit(cache, tmp_path, 1, {"feature.txt": "feature\n"})
    first = report(cache, tmp_path, sha)
    (tmp_path / "cache.ci" / "0" / "index").write_bytes(b"not an index")

    again = report(cache, tmp_path, sha)

    assert again["head"] == sha and again["status"] == "" and again["readme"] == "demo"
    assert again["files"] == "./README.md ./feature.txt ./src/a.txt"
    assert again["at"] == first["at"]
    assert (tmp_path / "cache.ci" / "0" / "index").read_bytes()[:4] == b"DIRC"  # made anew with the checkout


def test_a_busy_slot_is_passed_over_and_with_every_slot_busy_a_fresh_clone_is_used(
    tmp_path: Path, cache: RepoCache
) -> None:
    sha = commit(cache, tmp_path, 1, {"feature.txt": "feature\n"})
    slots = tmp_path / "cache.ci"

    with held_elsewhere([slots / "0.lock"]):
        second_slot = report(cache, tmp_path, sha)
    with held_elsewhere([slots / f"{n}.lock" for n in range(forge_git._CI_SLOTS)]):
        fresh = report(cache, tmp_path, sha)

    assert second_slot["at"] == str(slots / "1" / "checkout")
    assert os.path.dirname(fresh["at"]).startswith(str(tmp_path / "ci" / "ci-"))
    assert fresh["head"] == sha and fresh["status"] == ""
    assert list((tmp_path / "ci").iterdir()) == []  # the fresh clone went with its run


def test_a_slot_whose_run_outlived_its_server_is_passed_over_until_that_run_ends(
    tmp_path: Path, cache: RepoCache
) -> None:
    """A killed server leaves the slot's lock free but its command running: the lock file names that run."""
    sha = commit(cache, tmp_path, 1, {"feature.txt": "feature\n"})
    slots = tmp_path / "cache.ci"
    assert report(cache, tmp_path, sha)["at"] == str(slots / "0" / "checkout")
    assert (slots / "0.lock").read_text() == ""  # a finished run leaves no name
    orphan = subprocess.Popen(["sleep", "60"], env={"PATH": os.environ["PATH"], TAG_ENV: "ci-orphan"})
    try:
        (slots / "0.lock").write_text("ci-orphan")  # what a run killed with its server leaves
        assert report(cache, tmp_path, sha)["at"] == str(slots / "1" / "checkout")
    finally:
        orphan.kill()
        orphan.wait()
    assert report(cache, tmp_path, sha)["at"] == str(slots / "0" / "checkout")
