"""Mergeability as the agent's rebase sees it: the base tree's ``.gitattributes`` merge drivers count.

Real git throughout: a bare remote, Optio's cache, task clones, a real ``git rebase`` in the task's clone
to check that a reported conflict is exactly one a rebase reproduces.
"""

from __future__ import annotations

from pathlib import Path

from optio.forge.git import RepoCache, branch_for_task, run_git
from optio.forge.gitcmd import LOCAL_TRANSPORT

LINES = "".join(f"line {i}\n" for i in range(1, 21))


def make_remote(root: Path, files: dict[str, str]) -> Path:
    seed = root / "seed"
    seed.mkdir()
    run_git(["init", "--quiet", "-b", "main"], cwd=seed)
    for name, text in files.items():
        (seed / name).parent.mkdir(parents=True, exist_ok=True)
        (seed / name).write_text(text)
    run_git(["add", "-A"], cwd=seed)
    run_git(["commit", "--quiet", "-m", "initial"], cwd=seed)
    remote = root / "remote.git"
    run_git(["init", "--quiet", "--bare", "-b", "main", str(remote)], cwd=root)
    run_git(["push", "--quiet", str(remote), "main"], cwd=seed, config=LOCAL_TRANSPORT)
    return remote


def start_task(cache: RepoCache, root: Path, task_id: int, edit: dict[str, str]) -> tuple[Path, str]:
    """A task's clone with the agent's edits committed and pushed; `edit` maps a file to text appended."""
    wt = root / "worktrees" / str(task_id)
    cache.add_worktree(wt, branch_for_task(task_id), "main")
    for name, text in edit.items():
        path = wt / name
        path.write_text(path.read_text() + text if path.exists() else text)
    assert cache.commit_all(wt, f"task {task_id}") is not None
    return wt, cache.push_branch(wt, branch_for_task(task_id))


def replace_line(wt: Path, name: str, old: str, new: str) -> None:
    path = wt / name
    path.write_text(path.read_text().replace(old, new))


def rebase_conflicts(cache: RepoCache, wt: Path) -> bool:
    """What the agent would see: `git fetch origin && git rebase origin/main` in its clone."""
    cache.sync_clone(wt)
    proc = run_git(["rebase", "origin/main"], cwd=wt, check=False)
    if proc.returncode != 0:
        run_git(["rebase", "--abort"], cwd=wt, check=False)
        return True
    return False


def test_union_file_edited_by_two_tasks_is_no_conflict_and_the_union_lands(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, {".gitattributes": "CHANGES merge=union\n", "CHANGES": "- first entry\n"})
    cache = RepoCache(str(remote), tmp_path / "cache")
    _, sha1 = start_task(cache, tmp_path, 1, {"CHANGES": "- from task one\n", "one.txt": "1\n"})
    wt2, sha2 = start_task(cache, tmp_path, 2, {"CHANGES": "- from task two\n", "two.txt": "2\n"})
    cache.squash_merge("main", sha1, "Task one (#1)")

    result = cache.mergeability("main", sha2)

    assert result.clean and result.conflicting_files == []
    assert not rebase_conflicts(cache, wt2)  # the agent's rebase agrees: nothing to resolve
    landed = cache.squash_merge("main", sha2, "Task two (#2)")
    combined = run_git(["show", f"{landed}:CHANGES"], cwd=remote).stdout
    assert combined == "- first entry\n- from task one\n- from task two\n"
    ci = cache.run_ci(landed, "grep -q 'task one' CHANGES && grep -q 'task two' CHANGES && cat CHANGES",
                      work_root=tmp_path / "ci", env={"PATH": "/usr/bin:/bin"}, inherit_env=False)
    assert ci.status == "passing", ci.output


def test_without_the_attribute_the_same_edits_conflict_and_the_rebase_agrees(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, {"CHANGES": "- first entry\n"})
    cache = RepoCache(str(remote), tmp_path / "cache")
    _, sha1 = start_task(cache, tmp_path, 1, {"CHANGES": "- from task one\n"})
    wt2, sha2 = start_task(cache, tmp_path, 2, {"CHANGES": "- from task two\n"})
    cache.squash_merge("main", sha1, "Task one (#1)")

    assert cache.mergeability("main", sha2).conflicting_files == ["CHANGES"]
    assert rebase_conflicts(cache, wt2)


def test_binary_attribute_makes_a_text_clean_merge_a_conflict_as_the_rebase_does(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, {".gitattributes": "*.dat binary\n", "table.dat": LINES, "notes.txt": LINES})
    cache = RepoCache(str(remote), tmp_path / "cache")
    wt1 = tmp_path / "worktrees" / "1"
    cache.add_worktree(wt1, branch_for_task(1), "main")
    replace_line(wt1, "table.dat", "line 2\n", "line two\n")
    replace_line(wt1, "notes.txt", "line 2\n", "line two\n")
    cache.commit_all(wt1, "task 1")
    sha1 = cache.push_branch(wt1, branch_for_task(1))
    wt2 = tmp_path / "worktrees" / "2"
    cache.add_worktree(wt2, branch_for_task(2), "main")
    replace_line(wt2, "table.dat", "line 19\n", "line nineteen\n")  # far apart: text merge would be clean
    replace_line(wt2, "notes.txt", "line 19\n", "line nineteen\n")
    cache.commit_all(wt2, "task 2")
    sha2 = cache.push_branch(wt2, branch_for_task(2))
    cache.squash_merge("main", sha1, "Task one (#1)")

    assert cache.mergeability("main", sha2).conflicting_files == ["table.dat"]
    assert rebase_conflicts(cache, wt2)


def test_a_nested_gitattributes_applies_below_its_directory_only(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, {
        "docs/.gitattributes": "*.log merge=union\n",
        "docs/deep/news.log": "- start\n",
        "news.log": "- start\n",
    })
    cache = RepoCache(str(remote), tmp_path / "cache")
    _, sha1 = start_task(cache, tmp_path, 1, {"docs/deep/news.log": "- one\n", "news.log": "- one\n"})
    wt2, sha2 = start_task(cache, tmp_path, 2, {"docs/deep/news.log": "- two\n", "news.log": "- two\n"})
    cache.squash_merge("main", sha1, "Task one (#1)")

    assert cache.mergeability("main", sha2).conflicting_files == ["news.log"]
    assert rebase_conflicts(cache, wt2)


def test_a_custom_driver_is_merged_as_text_and_never_run(tmp_path: Path) -> None:
    """`merge=custom` names a driver only a repository's config could define: Optio runs none."""
    marker = tmp_path / "driver-ran"
    remote = make_remote(tmp_path, {".gitattributes": "CHANGES merge=custom\n", "CHANGES": "- first entry\n"})
    # Even a driver configured on the remote itself is not Optio's configuration.
    run_git(["config", "merge.custom.driver", f"touch {marker}; cp %B %A"], cwd=remote)
    cache = RepoCache(str(remote), tmp_path / "cache")
    _, sha1 = start_task(cache, tmp_path, 1, {"CHANGES": "- from task one\n"})
    _, sha2 = start_task(cache, tmp_path, 2, {"CHANGES": "- from task two\n"})
    cache.squash_merge("main", sha1, "Task one (#1)")

    assert cache.mergeability("main", sha2).conflicting_files == ["CHANGES"]
    assert not marker.exists()


def test_a_gitattributes_that_is_a_symlink_counts_for_nothing_as_in_a_checkout(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, {"attrs.txt": "CHANGES merge=union\n", "CHANGES": "- first entry\n"})
    seed = tmp_path / "seed"
    (seed / ".gitattributes").symlink_to("attrs.txt")
    run_git(["add", "-A"], cwd=seed)
    run_git(["commit", "--quiet", "-m", "link the attributes"], cwd=seed)
    run_git(["push", "--quiet", str(remote), "main"], cwd=seed, config=LOCAL_TRANSPORT)
    cache = RepoCache(str(remote), tmp_path / "cache")
    _, sha1 = start_task(cache, tmp_path, 1, {"CHANGES": "- from task one\n"})
    wt2, sha2 = start_task(cache, tmp_path, 2, {"CHANGES": "- from task two\n"})
    cache.squash_merge("main", sha1, "Task one (#1)")

    assert rebase_conflicts(cache, wt2)
    assert cache.mergeability("main", sha2).conflicting_files == ["CHANGES"]
