"""The test merge CI runs on: the head merged onto a given base, with exactly the tree a squash lands."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration.test_forge_git import make_remote, outsider_clone, remote_sha, start_task

from optio.forge.git import MergeConflictError, RepoCache, run_git
from optio.forge.gitcmd import LOCAL_TRANSPORT


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path)


@pytest.fixture
def cache(tmp_path: Path, remote: Path) -> RepoCache:
    return RepoCache(str(remote), tmp_path / "cache")


def push_outsider(remote: Path, tmp_path: Path, files: dict[str, str]) -> str:
    other = outsider_clone(remote, tmp_path / "other")
    for name, text in files.items():
        (other / name).write_text(text)
    run_git(["add", "-A"], cwd=other)
    run_git(["commit", "--quiet", "-m", "theirs"], cwd=other)
    run_git(["push", "--quiet", "origin", "main"], cwd=other, config=LOCAL_TRANSPORT)
    sha = remote_sha(remote, "main")
    assert sha is not None
    return sha


def tree(cwd: Path, rev: str) -> str:
    return run_git(["rev-parse", f"{rev}^{{tree}}"], cwd=cwd).stdout.strip()


def test_test_merge_has_the_tree_the_squash_lands_and_is_not_pushed(
    tmp_path: Path, cache: RepoCache, remote: Path
) -> None:
    _, head = start_task(cache, tmp_path, 1, {"feature.txt": "mine\n"})
    base = push_outsider(remote, tmp_path, {"theirs.txt": "theirs\n"})
    cache.fetch()
    tested = cache.test_merge(base, head)
    parents = run_git(["log", "-1", "--format=%P", tested], cwd=cache.cache_dir).stdout.split()
    assert parents == [base, head]
    assert remote_sha(remote, "main") == base  # nothing pushed
    landed = cache.squash_merge("main", head, "mine (#1)")
    cache.fetch()
    assert tree(cache.cache_dir, tested) == tree(remote, landed)
    # CI runs on it like on any commit: it sees both sides.
    result = cache.run_ci(tested, "test -e feature.txt && test -e theirs.txt", work_root=tmp_path / "ci")
    assert result.status == "passing", result.output


def test_test_merge_onto_a_conflicting_base_names_the_files(
    tmp_path: Path, cache: RepoCache, remote: Path
) -> None:
    _, head = start_task(cache, tmp_path, 1, {"app.txt": "mine\n"})
    base = push_outsider(remote, tmp_path, {"app.txt": "theirs\n"})
    cache.fetch()
    with pytest.raises(MergeConflictError) as exc:
        cache.test_merge(base, head)
    assert exc.value.conflicting_files == ["app.txt"]
