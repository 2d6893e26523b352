"""Real git, real processes: the git work behind a repo task, end to end.

Every repository lives under tmp_path and every git call names its cwd, so
nothing here ever touches the repository the tests are run from.
"""

from __future__ import annotations

import stat
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from optio.forge.git import (
    CI_OUTPUT_CAP_BYTES,
    GitError,
    MergeConflictError,
    RepoCache,
    branch_for_task,
    run_git,
)
from optio.forge.gitcmd import LOCAL_TRANSPORT, git_env

APP_LINES = "alpha\nbravo\ncharlie\n"


# -- helpers --------------------------------------------------------------


def make_remote(root: Path) -> Path:
    """A bare repo with one commit on main, like a freshly created project."""
    seed = root / "seed"
    seed.mkdir()
    run_git(["init", "--quiet", "-b", "main"], cwd=seed)
    (seed / "README.md").write_text("# demo\n")
    (seed / "app.txt").write_text(APP_LINES)
    run_git(["add", "-A"], cwd=seed)
    run_git(["commit", "--quiet", "-m", "initial"], cwd=seed)
    remote = root / "remote.git"
    run_git(["init", "--quiet", "--bare", "-b", "main", str(remote)], cwd=root)
    run_git(["push", "--quiet", str(remote), "main"], cwd=seed, config=LOCAL_TRANSPORT)
    return remote


def remote_sha(remote: Path, branch: str) -> str | None:
    proc = run_git(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], cwd=remote, check=False)
    return proc.stdout.strip() or None


def remote_show(remote: Path, ref: str, path: str) -> str:
    return run_git(["show", f"{ref}:{path}"], cwd=remote).stdout


def remote_count(remote: Path, ref: str) -> int:
    return int(run_git(["rev-list", "--count", ref], cwd=remote).stdout.strip())


def outsider_clone(remote: Path, dest: Path) -> Path:
    """Someone other than Optio working on the same remote."""
    run_git(["clone", "--quiet", str(remote), str(dest)], cwd=dest.parent, config=LOCAL_TRANSPORT)
    return dest


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path)


@pytest.fixture
def cache(tmp_path: Path, remote: Path) -> RepoCache:
    return RepoCache(str(remote), tmp_path / "cache")


def start_task(cache: RepoCache, tmp_path: Path, task_id: int, files: dict[str, str]) -> tuple[Path, str]:
    """Worktree, agent edits, commit, push: a task up to the point its PR opens."""
    wt = tmp_path / "worktrees" / str(task_id)
    cache.add_worktree(wt, branch_for_task(task_id), "main")
    for name, text in files.items():
        (wt / name).write_text(text)
    assert cache.commit_all(wt, f"task {task_id}") is not None
    return wt, cache.push_branch(wt, branch_for_task(task_id))


# -- run_git ---------------------------------------------------------------


def test_run_git_ignores_repository_and_identity_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_git(["init", "--quiet", "-b", "main"], cwd=elsewhere)
    repo = tmp_path / "repo"
    repo.mkdir()
    run_git(["init", "--quiet", "-b", "main"], cwd=repo)
    monkeypatch.setenv("GIT_DIR", str(elsewhere / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(elsewhere))
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Somebody Else")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "else@example.com")

    git_dir = run_git(["rev-parse", "--absolute-git-dir"], cwd=repo).stdout.strip()
    assert Path(git_dir).resolve() == (repo / ".git").resolve()

    (repo / "f.txt").write_text("x\n")
    run_git(["add", "f.txt"], cwd=repo)
    run_git(["commit", "--quiet", "-m", "one"], cwd=repo)
    who = run_git(["log", "-1", "--format=%an <%ae>|%cn <%ce>"], cwd=repo).stdout.strip()
    assert who == "Optio <optio@localhost>|Optio <optio@localhost>"
    assert run_git(["rev-list", "--all"], cwd=elsewhere, check=False).stdout == ""


def test_git_error_is_readable_and_carries_details(tmp_path: Path) -> None:
    tmp_path.joinpath("r").mkdir()
    run_git(["init", "--quiet"], cwd=tmp_path / "r")
    with pytest.raises(GitError) as info:
        run_git(["rev-parse", "--verify", "no-such-ref"], cwd=tmp_path / "r")
    err = info.value
    assert err.returncode == 128
    assert err.argv[0] == "git" and err.argv[-1] == "no-such-ref"
    assert "git rev-parse --verify no-such-ref failed (exit 128)" in str(err)
    assert "fatal" in err.stderr_tail

    assert run_git(["rev-parse", "--verify", "no-such-ref"], cwd=tmp_path / "r", check=False).returncode == 128


def test_branch_for_task() -> None:
    assert branch_for_task(42) == "optio/42"


# -- cache and worktrees ------------------------------------------------------


def test_cache_is_created_once_and_reused(tmp_path: Path, remote: Path) -> None:
    first = RepoCache(str(remote), tmp_path / "cache")
    first.ensure()
    (tmp_path / "cache" / "kept-marker").write_text("still here")
    second = RepoCache(str(remote), tmp_path / "cache")
    second.ensure()
    assert (tmp_path / "cache" / "kept-marker").read_text() == "still here"
    assert second.resolve("origin/main") == remote_sha(remote, "main")
    assert second.resolve("main") == remote_sha(remote, "main")


def test_half_made_cache_is_rebuilt(tmp_path: Path, remote: Path) -> None:
    cache_dir = tmp_path / "cache"
    run_git(["init", "--quiet", "--bare", str(cache_dir)], cwd=tmp_path)
    cache = RepoCache(str(remote), cache_dir)
    cache.ensure()
    assert cache.resolve("origin/main") == remote_sha(remote, "main")


def test_cache_refuses_a_directory_that_is_not_a_cache(tmp_path: Path, remote: Path) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "precious.txt").write_text("do not delete")
    with pytest.raises(GitError, match="not an Optio repo cache"):
        RepoCache(str(remote), cache_dir).ensure()
    assert (cache_dir / "precious.txt").read_text() == "do not delete"


def test_worktrees_of_two_tasks_are_isolated(tmp_path: Path, cache: RepoCache, remote: Path) -> None:
    wt1, wt2 = tmp_path / "wt" / "1", tmp_path / "wt" / "2"
    base1 = cache.add_worktree(wt1, branch_for_task(1), "main")
    base2 = cache.add_worktree(wt2, branch_for_task(2), "origin/main")
    assert base1 == base2 == remote_sha(remote, "main")

    (wt1 / "only-in-one.txt").write_text("1\n")
    (wt1 / "app.txt").write_text("changed by task 1\n")

    assert not (wt2 / "only-in-one.txt").exists()
    assert (wt2 / "app.txt").read_text() == APP_LINES
    assert cache.has_changes(wt1)
    assert not cache.has_changes(wt2)
    branch1 = run_git(["symbolic-ref", "HEAD"], cwd=wt1).stdout.strip()
    branch2 = run_git(["symbolic-ref", "HEAD"], cwd=wt2).stdout.strip()
    assert (branch1, branch2) == ("refs/heads/optio/1", "refs/heads/optio/2")
    assert {p.resolve() for p in cache.list_worktrees()} == {wt1.resolve(), wt2.resolve()}


def test_worktree_has_a_working_origin_remote(tmp_path: Path, cache: RepoCache, remote: Path) -> None:
    wt = tmp_path / "wt"
    cache.add_worktree(wt, branch_for_task(1), "main")
    # The clone's origin is itself (no remote URL, no credential): `git fetch origin` works in a sandbox that
    # cannot see the cache, and Optio keeps origin/<branch> current with sync_clone before each agent launch.
    assert run_git(["remote", "get-url", "origin"], cwd=wt).stdout.strip() == "."
    run_git(["fetch", "--quiet", "origin"], cwd=wt, config=LOCAL_TRANSPORT)
    tracked = run_git(["rev-parse", "origin/main"], cwd=wt).stdout.strip()
    assert tracked == remote_sha(remote, "main")
    other = outsider_clone(remote, tmp_path / "other")
    (other / "moved.txt").write_text("main moved\n")
    run_git(["add", "-A"], cwd=other)
    run_git(["commit", "--quiet", "-m", "move main"], cwd=other)
    run_git(["push", "--quiet", "origin", "main"], cwd=other, config=LOCAL_TRANSPORT)
    cache.fetch()
    cache.sync_clone(wt)
    assert run_git(["rev-parse", "origin/main"], cwd=wt).stdout.strip() == remote_sha(remote, "main")
    # A standalone repository: its own config and hooks, the cache's objects borrowed read-only.
    assert (wt / ".git").is_dir() and not (wt / ".git" / "commondir").exists()
    alternates = (wt / ".git" / "objects" / "info" / "alternates").read_text().split()
    assert alternates == [str(cache.cache_dir / "objects")]


def test_has_changes_sees_untracked_files(tmp_path: Path, cache: RepoCache) -> None:
    wt = tmp_path / "wt"
    cache.add_worktree(wt, branch_for_task(1), "main")
    assert not cache.has_changes(wt)
    (wt / "new" / "deep").mkdir(parents=True)
    (wt / "new" / "deep" / "file.txt").write_text("x\n")
    assert cache.has_changes(wt)


def test_commit_all_returns_none_when_nothing_changed(tmp_path: Path, cache: RepoCache) -> None:
    wt = tmp_path / "wt"
    base = cache.add_worktree(wt, branch_for_task(1), "main")
    assert cache.commit_all(wt, "nothing") is None
    assert cache.head_sha(wt) == base
    assert cache.commits_ahead(wt, "main") == 0

    (wt / "feature.txt").write_text("feature\n")
    (wt / "README.md").unlink()
    sha = cache.commit_all(wt, "Add feature")
    assert sha is not None and sha == cache.head_sha(wt)
    assert not cache.has_changes(wt)
    assert cache.commits_ahead(wt, "main") == 1
    assert cache.commits_ahead(wt, "origin/main") == 1
    files = run_git(["ls-tree", "--name-only", "HEAD"], cwd=wt).stdout.split()
    assert sorted(files) == ["app.txt", "feature.txt"]
    assert cache.commit_all(wt, "again") is None


def test_a_same_size_rewrite_right_after_a_commit_is_committed(tmp_path: Path, cache: RepoCache) -> None:
    """git compares whole seconds of mtime: a file rewritten with the same size in the second of the last
    commit, and looked at in a later second, looks unchanged unless the racy-entry check runs against the
    index the stat data came from (an agent resumed within a second of its last commit does exactly this)."""
    wt = tmp_path / "wt"
    cache.add_worktree(wt, branch_for_task(1), "main")
    for i in range(5):
        stamp = wt / "attempt.txt"
        stamp.write_text(f"{i:019d}\n")
        second = int(stamp.stat().st_mtime)
        sha = cache.commit_all(wt, f"attempt {i}")
        stamp.write_text(f"{i + 1:019d}\n")
        if int(stamp.stat().st_mtime) != second:
            continue  # crossed a second boundary: try again, the case needs both writes in one second
        while int(time.time()) == second:
            time.sleep(0.05)
        assert cache.has_changes(wt)
        again = cache.commit_all(wt, f"attempt {i} again")
        assert again is not None and again != sha
        assert run_git(["show", "HEAD:attempt.txt"], cwd=wt).stdout == f"{i + 1:019d}\n"
        return
    pytest.fail("no two writes landed in one second")


def test_push_shows_up_on_the_remote(tmp_path: Path, cache: RepoCache, remote: Path) -> None:
    wt, pushed = start_task(cache, tmp_path, 7, {"feature.txt": "seven\n"})
    assert pushed == cache.head_sha(wt)
    assert remote_sha(remote, "optio/7") == pushed
    assert remote_show(remote, "optio/7", "feature.txt") == "seven\n"
    assert cache.resolve("origin/optio/7") == pushed


def test_push_refuses_to_overwrite_someone_elses_commit(tmp_path: Path, cache: RepoCache, remote: Path) -> None:
    wt, first = start_task(cache, tmp_path, 1, {"feature.txt": "mine\n"})
    other = outsider_clone(remote, tmp_path / "other")
    run_git(["checkout", "--quiet", "optio/1"], cwd=other)
    (other / "human.txt").write_text("a human fixup\n")
    run_git(["add", "-A"], cwd=other)
    run_git(["commit", "--quiet", "-m", "human fixup"], cwd=other)
    run_git(["push", "--quiet", "origin", "optio/1"], cwd=other, config=LOCAL_TRANSPORT)
    human = remote_sha(remote, "optio/1")

    (wt / "feature.txt").write_text("mine, amended\n")
    run_git(["commit", "--quiet", "--amend", "-a", "--no-edit"], cwd=wt)
    with pytest.raises(GitError):
        cache.push_branch(wt, branch_for_task(1))
    assert remote_sha(remote, "optio/1") == human != first


def test_remove_worktree_is_idempotent(tmp_path: Path, cache: RepoCache) -> None:
    wt = tmp_path / "wt" / "1"
    cache.add_worktree(wt, branch_for_task(1), "main")
    (wt / "junk.txt").write_text("uncommitted\n")
    cache.remove_worktree(wt)
    assert not wt.exists()
    assert cache.list_worktrees() == []
    local = run_git(["branch", "--list", "optio/1"], cwd=cache.cache_dir).stdout
    assert local.strip() == ""
    cache.remove_worktree(wt)
    cache.remove_worktree(tmp_path / "never-existed")
    assert cache.list_worktrees() == []


def test_remove_worktree_whose_directory_vanished(tmp_path: Path, cache: RepoCache) -> None:
    wt = tmp_path / "wt" / "1"
    cache.add_worktree(wt, branch_for_task(1), "main")
    subprocess.run(["rm", "-rf", str(wt)], check=True)
    assert cache.list_worktrees() == []
    cache.remove_worktree(wt)
    cache.add_worktree(wt, branch_for_task(1), "main")
    assert cache.list_worktrees() == [wt]


def test_readding_a_pushed_branch_checks_out_its_remote_tip(tmp_path: Path, cache: RepoCache, remote: Path) -> None:
    wt, pushed = start_task(cache, tmp_path, 3, {"feature.txt": "three\n"})
    base = remote_sha(remote, "main")
    cache.remove_worktree(wt)

    # A fresh cache, as after a restart on another machine, and a fresh path.
    fresh = RepoCache(str(remote), tmp_path / "cache-after-restart")
    again = tmp_path / "resumed"
    assert fresh.add_worktree(again, branch_for_task(3), "main") == base
    assert fresh.head_sha(again) == pushed
    assert (again / "feature.txt").read_text() == "three\n"

    # The original cache too, after its local branch was deleted.
    back = tmp_path / "back"
    assert cache.add_worktree(back, branch_for_task(3), "main") == base
    assert cache.head_sha(back) == pushed
    assert cache.commits_ahead(back, "main") == 1


def test_existing_worktree_of_the_branch_is_reused(tmp_path: Path, cache: RepoCache) -> None:
    wt = tmp_path / "wt"
    base = cache.add_worktree(wt, branch_for_task(1), "main")
    (wt / "work-in-progress.txt").write_text("keep me\n")
    assert cache.add_worktree(wt, branch_for_task(1), "main") == base
    assert (wt / "work-in-progress.txt").read_text() == "keep me\n"
    with pytest.raises(GitError, match="already a worktree"):
        cache.add_worktree(wt, branch_for_task(2), "main")


def test_half_made_clone_of_a_killed_server_is_made_again(tmp_path: Path, cache: RepoCache) -> None:
    # `kill -9` between the clone's `git init` and its checkout leaves a clone of ours on an unborn branch.
    wt = tmp_path / "wt"
    cache.ensure()
    wt.mkdir()
    cache._init_clone(wt)
    base = cache.add_worktree(wt, branch_for_task(1), "main")
    assert cache.head_sha(wt) == base and (wt / "README.md").exists()


def test_add_worktree_refuses_a_foreign_directory(tmp_path: Path, cache: RepoCache) -> None:
    target = tmp_path / "occupied"
    target.mkdir()
    (target / "data.txt").write_text("not ours\n")
    with pytest.raises(GitError):
        cache.add_worktree(target, branch_for_task(1), "main")
    assert (target / "data.txt").read_text() == "not ours\n"


def test_add_worktree_fetches_the_latest_base(tmp_path: Path, cache: RepoCache, remote: Path) -> None:
    cache.ensure()
    other = outsider_clone(remote, tmp_path / "other")
    (other / "later.txt").write_text("landed after the cache was made\n")
    run_git(["add", "-A"], cwd=other)
    run_git(["commit", "--quiet", "-m", "later"], cwd=other)
    run_git(["push", "--quiet", "origin", "main"], cwd=other, config=LOCAL_TRANSPORT)

    wt = tmp_path / "wt"
    assert cache.add_worktree(wt, branch_for_task(1), "main") == remote_sha(remote, "main")
    assert (wt / "later.txt").exists()


def test_concurrent_add_worktree_on_one_cache(tmp_path: Path, remote: Path) -> None:
    cache_dir = tmp_path / "cache"
    count = 8
    errors: list[BaseException] = []
    results: dict[int, str] = {}
    barrier = threading.Barrier(count)

    def task(task_id: int) -> None:
        try:
            own = RepoCache(str(remote), cache_dir)  # separate objects must still share the lock
            barrier.wait()
            wt = tmp_path / "wt" / str(task_id)
            own.add_worktree(wt, branch_for_task(task_id), "main")
            (wt / f"task-{task_id}.txt").write_text(f"{task_id}\n")
            own.commit_all(wt, f"task {task_id}")
            results[task_id] = own.push_branch(wt, branch_for_task(task_id))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=task, args=(i,)) for i in range(1, count + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    cache = RepoCache(str(remote), cache_dir)
    assert sorted(p.name for p in cache.list_worktrees()) == sorted(str(i) for i in range(1, count + 1))
    for task_id, sha in results.items():
        assert remote_sha(remote, f"optio/{task_id}") == sha
        names = run_git(["ls-tree", "--name-only", sha], cwd=remote).stdout.split()
        assert [n for n in names if n.startswith("task-")] == [f"task-{task_id}.txt"]


def test_clones_made_while_the_base_moves_and_the_cache_fetches_are_whole(tmp_path: Path, remote: Path) -> None:
    """A task's clone is made outside the cache's lock, reading the cache while other tasks' provisioning
    fetches into it: every clone still has its branch at exactly the base it was given, a clean checkout of
    it, and every object it needs."""
    cache = RepoCache(str(remote), tmp_path / "cache")
    cache.ensure()
    other = outsider_clone(remote, tmp_path / "other")
    count = 12
    stop = threading.Event()
    errors: list[BaseException] = []
    bases: dict[int, str] = {}

    def move_base() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            (other / f"moved-{n}.txt").write_text(f"{n}\n")
            run_git(["add", "-A"], cwd=other)
            run_git(["commit", "--quiet", "-m", f"moved {n}"], cwd=other)
            run_git(["push", "--quiet", "origin", "main"], cwd=other, config=LOCAL_TRANSPORT)
            cache.fetch()

    def provision(task_id: int) -> None:
        try:
            bases[task_id] = cache.add_worktree(tmp_path / "wt" / str(task_id), branch_for_task(task_id), "main")
        except BaseException as exc:
            errors.append(exc)

    mover = threading.Thread(target=move_base)
    mover.start()
    try:
        threads = [threading.Thread(target=provision, args=(i,)) for i in range(1, count + 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        stop.set()
        mover.join()
    assert errors == []
    for task_id, base in bases.items():
        wt = tmp_path / "wt" / str(task_id)
        assert run_git(["rev-parse", "HEAD"], cwd=wt).stdout.strip() == base
        assert run_git(["symbolic-ref", "HEAD"], cwd=wt).stdout.strip() == f"refs/heads/{branch_for_task(task_id)}"
        assert run_git(["status", "--porcelain"], cwd=wt).stdout == ""
        run_git(["fsck", "--connectivity-only", "--no-progress"], cwd=wt)
        names = set(run_git(["ls-tree", "--name-only", base], cwd=remote).stdout.split())
        assert {p.name for p in wt.iterdir() if p.name != ".git"} == names


# -- CI ------------------------------------------------------------------------


def test_run_ci_passing_in_a_clean_checkout(tmp_path: Path, cache: RepoCache) -> None:
    wt, sha = start_task(cache, tmp_path, 1, {"feature.txt": "feature\n"})
    (wt / "junk.txt").write_text("left behind by the agent, never committed\n")
    (wt / "feature.txt").write_text("uncommitted edit\n")
    work_root = tmp_path / "ci"

    result = cache.run_ci(
        sha,
        'test ! -e junk.txt && echo "feature: $(cat feature.txt)" && echo "on: $(git rev-parse HEAD)"',
        work_root=work_root,
    )

    assert result.status == "passing"
    assert result.exit_code == 0
    assert "feature: feature\n" in result.output
    assert f"on: {sha}\n" in result.output
    assert result.duration_s >= 0
    assert [p.resolve() for p in cache.list_worktrees()] == [wt.resolve()]
    assert list(work_root.iterdir()) == []


def test_run_ci_failing_captures_stdout_and_stderr(tmp_path: Path, cache: RepoCache) -> None:
    _, sha = start_task(cache, tmp_path, 1, {"feature.txt": "feature\n"})
    result = cache.run_ci(
        sha, "echo to-stdout; echo to-stderr >&2; test -f missing.txt || exit 3", work_root=tmp_path / "ci"
    )
    assert result.status == "failing"
    assert result.exit_code == 3
    assert "to-stdout\n" in result.output
    assert "to-stderr\n" in result.output


def test_run_ci_does_not_see_untracked_files_that_would_make_it_pass(tmp_path: Path, cache: RepoCache) -> None:
    wt, sha = start_task(cache, tmp_path, 1, {"feature.txt": "feature\n"})
    (wt / "generated.txt").write_text("only in the agent's worktree\n")
    result = cache.run_ci(sha, "test -f generated.txt", work_root=tmp_path / "ci")
    assert result.status == "failing"
    assert result.exit_code == 1


def test_run_ci_passes_extra_env(tmp_path: Path, cache: RepoCache) -> None:
    _, sha = start_task(cache, tmp_path, 1, {"feature.txt": "feature\n"})
    result = cache.run_ci(
        sha, 'test "$CI_FLAVOUR" = strict && echo ok', work_root=tmp_path / "ci", env={"CI_FLAVOUR": "strict"}
    )
    assert (result.status, result.output) == ("passing", "ok\n")


def test_run_ci_timeout_fails_and_kills_the_process_group(tmp_path: Path, cache: RepoCache) -> None:
    _, sha = start_task(cache, tmp_path, 1, {"feature.txt": "feature\n"})
    pid_file = tmp_path / "background.pid"
    result = cache.run_ci(
        sha,
        'sleep 300 & echo $! > "$PID_FILE"; echo started; wait',
        work_root=tmp_path / "ci",
        timeout_s=1,
        env={"PID_FILE": str(pid_file)},
    )
    assert result.status == "failing"
    assert result.exit_code is None
    assert "started\n" in result.output
    assert "timed out after 1s" in result.output.splitlines()[-1]

    background = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(background):
        time.sleep(0.05)
    assert not _alive(background)


def test_run_ci_ends_what_left_its_process_group(tmp_path: Path, cache: RepoCache) -> None:
    _, sha = start_task(cache, tmp_path, 1, {"feature.txt": "feature\n"})
    pid_file = tmp_path / "daemon.pid"
    result = cache.run_ci(
        sha,
        # The daemon writes its pid once in its own session; CI ends only after that, so it has really escaped.
        'setsid sh -c \'echo $$ > "$PID_FILE.new" && mv "$PID_FILE.new" "$PID_FILE"; exec sleep 300\' '
        '>/dev/null 2>&1 & until [ -s "$PID_FILE" ]; do sleep 0.05; done; echo started',
        work_root=tmp_path / "ci",
        env={"PID_FILE": str(pid_file)},
    )
    assert result.status == "passing"

    daemon = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(daemon):
        time.sleep(0.05)
    assert not _alive(daemon)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_run_ci_keeps_the_tail_of_huge_output(tmp_path: Path, cache: RepoCache) -> None:
    _, sha = start_task(cache, tmp_path, 1, {"feature.txt": "feature\n"})
    result = cache.run_ci(
        sha, "echo THE-START; yes 'some noisy line' | head -c 3000000; echo THE-END; exit 1", work_root=tmp_path / "ci"
    )
    assert result.status == "failing"
    assert len(result.output.encode()) <= CI_OUTPUT_CAP_BYTES
    assert len(result.output.encode()) > CI_OUTPUT_CAP_BYTES - 8192
    assert result.output.endswith("THE-END\n")
    assert "THE-START" not in result.output
    assert "truncated" in result.output.splitlines()[0]


# -- mergeability and squash-merge ------------------------------------------------


def test_mergeability_clean_then_conflicting_after_the_other_merges(
    tmp_path: Path, cache: RepoCache, remote: Path
) -> None:
    _, sha1 = start_task(cache, tmp_path, 1, {"app.txt": "alpha\nBRAVO FROM ONE\ncharlie\n", "one.txt": "1\n"})
    _, sha2 = start_task(cache, tmp_path, 2, {"app.txt": "alpha\nBRAVO FROM TWO\ncharlie\n", "two.txt": "2\n"})
    assert cache.mergeability("main", sha1).clean
    assert cache.mergeability("main", sha2).clean
    main_before = remote_sha(remote, "main")

    cache.squash_merge("main", sha1, "Task one (#1)")

    assert cache.mergeability("main", sha2).conflicting_files == ["app.txt"]
    assert not cache.mergeability("main", sha2).clean
    assert cache.mergeability("origin/main", sha2).conflicting_files == ["app.txt"]
    main_after_one = remote_sha(remote, "main")
    assert main_after_one != main_before

    with pytest.raises(MergeConflictError) as info:
        cache.squash_merge("main", sha2, "Task two (#2)")
    assert info.value.conflicting_files == ["app.txt"]
    assert "app.txt" in str(info.value)
    assert remote_sha(remote, "main") == main_after_one


def test_mergeability_does_not_touch_any_worktree(tmp_path: Path, cache: RepoCache) -> None:
    wt, sha = start_task(cache, tmp_path, 1, {"app.txt": "changed\n"})
    (wt / "dirty.txt").write_text("agent still working\n")
    before = run_git(["status", "--porcelain", "--untracked-files=all"], cwd=wt).stdout
    cache.mergeability("main", sha)
    assert run_git(["status", "--porcelain", "--untracked-files=all"], cwd=wt).stdout == before
    assert cache.list_worktrees() == [wt]


def test_squash_merge_makes_exactly_one_commit(tmp_path: Path, cache: RepoCache, remote: Path) -> None:
    wt, _ = start_task(cache, tmp_path, 5, {"feature.txt": "v1\n"})
    (wt / "feature.txt").write_text("v2\n")
    (wt / "app.txt").write_text("alpha\nbravo\ncharlie\ndelta\n")
    cache.commit_all(wt, "second commit")
    head = cache.push_branch(wt, branch_for_task(5))
    assert cache.commits_ahead(wt, "main") == 2
    old_main = remote_sha(remote, "main")
    count_before = remote_count(remote, "main")

    new_main = cache.squash_merge("main", head, "Add the feature (#5)\n\nOptio task 5")

    assert remote_sha(remote, "main") == new_main
    assert remote_count(remote, "main") == count_before + 1
    parents = run_git(["rev-list", "--parents", "-n", "1", new_main], cwd=remote).stdout.split()
    assert parents == [new_main, old_main]
    message = run_git(["log", "-1", "--format=%B", new_main], cwd=remote).stdout.strip()
    assert message == "Add the feature (#5)\n\nOptio task 5"
    assert remote_show(remote, "main", "feature.txt") == "v2\n"
    assert remote_show(remote, "main", "app.txt") == "alpha\nbravo\ncharlie\ndelta\n"
    tree_main = run_git(["rev-parse", "main^{tree}"], cwd=remote).stdout
    tree_head = run_git(["rev-parse", f"{head}^{{tree}}"], cwd=remote).stdout
    assert tree_main == tree_head
    assert cache.resolve("origin/main") == new_main


def test_squash_merge_of_nothing_new_returns_the_base(tmp_path: Path, cache: RepoCache, remote: Path) -> None:
    _, head = start_task(cache, tmp_path, 1, {"feature.txt": "v1\n"})
    merged = cache.squash_merge("main", head, "first")
    assert cache.squash_merge("main", head, "second") == merged
    assert remote_sha(remote, "main") == merged


def test_squash_merge_onto_a_base_that_moved_since_the_pr_opened(
    tmp_path: Path, cache: RepoCache, remote: Path
) -> None:
    _, head = start_task(cache, tmp_path, 1, {"feature.txt": "mine\n"})
    other = outsider_clone(remote, tmp_path / "other")
    (other / "theirs.txt").write_text("theirs\n")
    run_git(["add", "-A"], cwd=other)
    run_git(["commit", "--quiet", "-m", "theirs"], cwd=other)
    run_git(["push", "--quiet", "origin", "main"], cwd=other, config=LOCAL_TRANSPORT)
    theirs = remote_sha(remote, "main")

    new_main = cache.squash_merge("main", head, "mine (#1)")
    assert run_git(["rev-parse", f"{new_main}^"], cwd=remote).stdout.strip() == theirs
    assert remote_show(remote, "main", "theirs.txt") == "theirs\n"
    assert remote_show(remote, "main", "feature.txt") == "mine\n"


def test_squash_merge_retries_when_the_base_moves_during_the_push(
    tmp_path: Path, cache: RepoCache, remote: Path
) -> None:
    _, head = start_task(cache, tmp_path, 1, {"feature.txt": "mine\n"})
    # The first push to main races a commit that lands while the push is in flight.
    marker = tmp_path / "raced"
    hook = remote / "hooks" / "pre-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(
        f"""#!/bin/sh
set -e
[ -e '{marker}' ] && exit 0
touch '{marker}'
unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
blob=$(printf 'sneaked in\\n' | git hash-object -w --stdin)
tree=$( (git ls-tree main; printf '100644 blob %s\\tsneaky.txt\\n' "$blob") | git mktree)
commit=$(echo sneaky | git commit-tree "$tree" -p main)
git update-ref refs/heads/main "$commit"
"""
    )
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)

    new_main = cache.squash_merge("main", head, "mine (#1)")

    assert marker.exists()
    assert remote_sha(remote, "main") == new_main
    assert remote_show(remote, "main", "sneaky.txt") == "sneaked in\n"
    assert remote_show(remote, "main", "feature.txt") == "mine\n"
    assert run_git(["log", "-1", "--format=%s", f"{new_main}^"], cwd=remote).stdout.strip() == "sneaky"


def test_rebased_branch_pushes_and_merges(tmp_path: Path, cache: RepoCache, remote: Path) -> None:
    _, sha1 = start_task(cache, tmp_path, 1, {"app.txt": "alpha\nBRAVO FROM ONE\ncharlie\n"})
    wt2, sha2 = start_task(cache, tmp_path, 2, {"app.txt": "alpha\nBRAVO FROM TWO\ncharlie\n", "two.txt": "2\n"})
    cache.squash_merge("main", sha1, "Task one (#1)")
    assert cache.mergeability("main", sha2).conflicting_files == ["app.txt"]

    # What the resumed agent is told to do, run as the agent would: a shell in its worktree, after Optio
    # brought the clone's origin/* up to date for the launch.
    cache.sync_clone(wt2)
    agent_env = git_env()
    rebase = subprocess.run(
        ["sh", "-c", "git fetch origin && git rebase origin/main"],
        cwd=wt2,
        env=agent_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert rebase.returncode != 0
    assert "CONFLICT" in rebase.stdout + rebase.stderr
    (wt2 / "app.txt").write_text("alpha\nBRAVO FROM ONE AND TWO\ncharlie\n")
    subprocess.run(["git", "add", "app.txt"], cwd=wt2, env=agent_env, check=True)
    subprocess.run(["git", "rebase", "--continue"], cwd=wt2, env={**agent_env, "GIT_EDITOR": "true"}, check=True)
    assert cache.commits_ahead(wt2, "main") == 1

    rebased = cache.push_branch(wt2, branch_for_task(2))
    assert rebased != sha2
    assert remote_sha(remote, "optio/2") == rebased
    assert cache.mergeability("main", rebased).clean

    new_main = cache.squash_merge("main", rebased, "Task two (#2)")
    assert remote_show(remote, new_main, "app.txt") == "alpha\nBRAVO FROM ONE AND TWO\ncharlie\n"
    assert remote_show(remote, new_main, "two.txt") == "2\n"
    assert remote_count(remote, "main") == 3


def test_delete_remote_branch_is_best_effort(tmp_path: Path, cache: RepoCache, remote: Path) -> None:
    start_task(cache, tmp_path, 1, {"feature.txt": "x\n"})
    assert remote_sha(remote, "optio/1") is not None
    cache.delete_remote_branch("optio/1")
    assert remote_sha(remote, "optio/1") is None
    cache.delete_remote_branch("optio/1")
    cache.delete_remote_branch("optio/never-existed")
    cache.fetch()
    with pytest.raises(GitError):
        cache.resolve("origin/optio/1")


def test_fetch_prunes_branches_deleted_on_the_remote(tmp_path: Path, cache: RepoCache, remote: Path) -> None:
    start_task(cache, tmp_path, 1, {"feature.txt": "x\n"})
    run_git(["branch", "-D", "optio/1"], cwd=remote)
    cache.fetch()
    with pytest.raises(GitError):
        cache.resolve("origin/optio/1")


def test_branches_of_a_batch_go_in_one_push_even_when_one_is_gone_already(
        tmp_path: Path, cache: RepoCache, remote: Path) -> None:
    for task in (1, 2, 3):
        start_task(cache, tmp_path, task, {f"f{task}.txt": "x\n"})
    cache.delete_remote_branch("optio/2")
    cache.delete_remote_branches(["optio/1", "optio/2", "optio/3", "optio/3"])
    assert [remote_sha(remote, f"optio/{task}") for task in (1, 2, 3)] == [None, None, None]
    cache.fetch()
    for task in (1, 2, 3):
        with pytest.raises(GitError):
            cache.resolve(f"origin/optio/{task}")


def test_a_clone_cut_short_by_a_kill_while_made_or_removed_is_made_again(tmp_path: Path, cache: RepoCache) -> None:
    """A killed server leaves a clone's staging directory, or a clone whose removal stopped half-way (its
    alternates gone, files left, its record still there); the next provisioning of that path makes it again."""
    wt = tmp_path / "worktrees" / "7"
    stale = wt.parent / ".7.optio-new-deadbeef"
    (stale / ".git").mkdir(parents=True)
    cache.add_worktree(wt, branch_for_task(7), "main")
    assert not stale.exists() and (wt / "README.md").exists()
    assert [p.name for p in wt.parent.iterdir()] == ["7"]

    (wt / ".git" / "objects" / "info" / "alternates").unlink()  # removal cut short after this file went
    cache.add_worktree(wt, branch_for_task(7), "main")
    assert (wt / ".git" / "objects" / "info" / "alternates").exists()
    assert run_git(["rev-parse", "--abbrev-ref", "HEAD"], cwd=wt).stdout.strip() == "optio/7"

    other = tmp_path / "worktrees" / "8"
    (other / "keep.txt").parent.mkdir(parents=True)
    (other / "keep.txt").write_text("not Optio's\n")
    with pytest.raises(GitError):  # a directory Optio never made is never removed
        cache.add_worktree(other, branch_for_task(8), "main")
    assert (other / "keep.txt").exists()
