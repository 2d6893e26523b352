"""The bubblewrap sandbox through the real LocalRuntime: the layout a run sees, git inside it, its limits.

Every test runs real processes in a real sandbox, over a fake data dir laid out like Optio's (a key file,
a database, a repo cache with a worktree per task, homes, logs).
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from tests.support.git_remote import git, make_remote
from tests.support.sandbox import require_sandbox

from optio.runtime.base import LaunchSpec, Mounts
from optio.runtime.local import LocalRuntime
from optio.runtime.sandbox import Limits, Sandbox, probe

IDENTITY = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@a", "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@a"}


@dataclass
class Sink:
    lines: dict[str, list[str]] = field(default_factory=dict)
    exits: dict[str, int | None] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_output(self, key: str, stream: str, lines: list[str], offset: int) -> None:
        with self.lock:
            self.lines.setdefault(key, []).extend(f"{stream}: {line}" for line in lines)

    def on_exit(self, key: str, exit_code: int | None, reason: str) -> None:
        with self.lock:
            self.exits[key] = exit_code

    def wait(self, key: str, timeout: float = 30.0) -> tuple[int | None, str]:
        deadline = time.monotonic() + timeout
        while key not in self.exits:
            assert time.monotonic() < deadline, f"{key} did not exit"
            time.sleep(0.02)
        return self.exits[key], "\n".join(self.lines.get(key, []))


@dataclass
class World:
    data: Path
    sink: Sink
    runtime: LocalRuntime
    sandbox: Sandbox
    count: int = 0

    def run(self, script: str, *, cwd: Path, mounts: Mounts | None = None,
            env: dict[str, str] | None = None) -> tuple[int | None, str]:
        self.count += 1
        key = f"job_run:{self.count}:1"
        log_dir = self.data / "runs" / f"r{self.count}"
        self.runtime.launch(LaunchSpec(key=key, argv=["/bin/sh", "-c", script], env=env or {}, cwd=cwd,
                                       log_dir=log_dir, mounts=mounts))
        return self.sink.wait(key)


def make_world(tmp_path: Path, limits: Limits | None = None) -> World:
    require_sandbox()
    found = probe()
    assert found.bwrap is not None
    data = tmp_path / "data"
    for sub in ("homes/h1", "runs", "worktrees"):
        (data / sub).mkdir(parents=True)
    (data / "encryption.keys").write_text("KEY-MATERIAL\n")
    (data / "optio.db").write_text("DATABASE\n")
    sandbox = Sandbox(bwrap=found.bwrap, hidden=(data,), limits=limits or Limits(), prlimit=found.prlimit)
    sink = Sink()
    return World(data=data, sink=sink, runtime=LocalRuntime(sink, poll_interval_s=0.05, sandbox=sandbox),
                 sandbox=sandbox)


@pytest.fixture
def world(tmp_path: Path):
    w = make_world(tmp_path)
    yield w
    w.runtime.shutdown()


def task_worktrees(tmp_path: Path, data: Path) -> tuple[Path, Path, Path]:
    """A cache with two task worktrees, laid out as Optio's repo tasks have them today."""
    remote = make_remote(tmp_path)
    cache = data / "repos" / "1" / "cache.git"
    git("clone", "-q", "--bare", str(remote), str(cache), cwd=tmp_path)
    mine, other = data / "worktrees" / "task-1", data / "worktrees" / "task-2"
    git("worktree", "add", "-q", "-b", "optio/task-1", str(mine), "main", cwd=cache)
    git("worktree", "add", "-q", "-b", "optio/task-2", str(other), "main", cwd=cache)
    (other / "secret.txt").write_text("other task's work\n")
    return cache, mine, other


def test_the_run_sees_its_worktree_and_home_and_nothing_of_the_data_dir(world: World, tmp_path: Path) -> None:
    cwd = world.data / "worktrees" / "task-9"
    cwd.mkdir()
    home = world.data / "homes" / "h1"
    host_tmp = tmp_path / "host-tmp-file"
    host_tmp.write_text("x")
    marker = f"SERVER_ONLY_{os.getpid()}"
    os.environ[marker] = "server-secret"
    try:
        code, out = world.run(
            f"""
            id -u; stat -c 'owner %u' .
            echo work > mine.txt && echo wrote-worktree
            echo h > "$HOME/h.txt" && echo wrote-home
            cat {world.data}/encryption.keys || echo no-keys
            cat {world.data}/optio.db || echo no-db
            ls {world.data}/runs || echo no-runs
            cat {host_tmp} || echo no-host-tmp
            cat /proc/{os.getpid()}/environ || echo no-server-proc
            env | grep -c {marker} || echo no-server-env
            echo scratch > /tmp/s && cat /tmp/s
            python3 -c 'print("python ok")'; git --version >/dev/null && echo git-ok
            """,
            cwd=cwd, mounts=Mounts(writable=(cwd, home)), env={"HOME": str(home)},
        )
    finally:
        del os.environ[marker]
    assert code == 0, out
    for expected in ("stdout: 1000", "stdout: owner 1000", "wrote-worktree", "wrote-home", "no-keys", "no-db",
                     "no-runs", "no-host-tmp", "no-server-proc", "no-server-env", "stdout: scratch",
                     "python ok", "git-ok"):
        assert expected in out, (expected, out)
    assert "KEY-MATERIAL" not in out and "DATABASE" not in out
    # What the run wrote is the server's to read and use, as before.
    assert (cwd / "mine.txt").read_text() == "work\n" and (home / "h.txt").read_text() == "h\n"
    assert (cwd / "mine.txt").stat().st_uid == os.getuid()


def test_a_read_only_mount_cannot_be_written(world: World, tmp_path: Path) -> None:
    """A review sees the PR head read-only and writes only its output dir."""
    _, head, _ = task_worktrees(tmp_path, world.data)
    out_dir = world.data / "runs" / "review-out"
    out_dir.mkdir()
    code, out = world.run(
        "echo approve > review.sh && echo wrote-head; rm -f README.md && echo removed;"
        f" git commit --allow-empty -qm x && echo committed; cat README.md; echo verdict > {out_dir}/verdict",
        cwd=head, mounts=Mounts(writable=(out_dir,), readonly=(head,)), env=IDENTITY,
    )
    assert code == 0, out
    assert "wrote-head" not in out and "removed" not in out and "committed" not in out, out
    assert "stdout: demo" in out
    assert not (head / "review.sh").exists() and (head / "README.md").exists()
    assert (out_dir / "verdict").read_text() == "verdict\n"


def test_git_works_in_a_task_worktree_and_the_cache_stays_read_only(world: World, tmp_path: Path) -> None:
    """A `git worktree` of the cache: git reads work inside; its objects, refs, config and hooks stay read-only."""
    cache, mine, other = task_worktrees(tmp_path, world.data)
    config_before = (cache / "config").read_text()
    code, out = world.run(
        f"""
        git status --short --branch; git log --oneline | wc -l
        echo change > new.txt && git status --short && echo more >> README.md && git diff --stat
        echo '[core]' >> {cache}/config || echo cache-config-read-only
        mkdir -p {cache}/hooks && echo 'touch /tmp/pwned' > {cache}/hooks/post-checkout || echo cache-hooks-read-only
        cat {other}/secret.txt || echo no-other-worktree
        ls {cache}/worktrees
        """,
        cwd=mine, env=IDENTITY,
    )
    assert code == 0, out
    for expected in ("## optio/task-1", "?? new.txt", "README.md | 1 +", "cache-config-read-only",
                     "cache-hooks-read-only", "no-other-worktree"):
        assert expected in out, (expected, out)
    assert "stdout: task-2" not in out, out  # the other worktree's metadata is masked
    assert (cache / "config").read_text() == config_before
    assert not (cache / "hooks" / "post-checkout").exists()
    # What the agent changed is Optio's to commit, as before.
    status = subprocess.run(["git", "status", "--short"], cwd=mine, capture_output=True, text=True)
    assert sorted(status.stdout.split()) == ["??", "M", "README.md", "new.txt"]


def test_git_commits_in_a_clone_that_borrows_the_cache_objects(world: World, tmp_path: Path) -> None:
    """A standalone clone whose objects/info/alternates points into the cache: commits work, the cache is read-only."""
    cache, _, _ = task_worktrees(tmp_path, world.data)
    clone = world.data / "worktrees" / "task-3"
    git("clone", "-q", "--shared", str(cache), str(clone), cwd=tmp_path)
    alternates = (clone / ".git" / "objects" / "info" / "alternates").read_text().strip()
    assert Path(alternates).resolve() == (cache / "objects").resolve()
    packs_before = sorted(p.name for p in (cache / "objects").rglob("*"))
    code, out = world.run(
        f"""
        echo change > new.txt && git add new.txt && git commit -qm 'agent commit' && echo committed
        git log --oneline | wc -l
        git fetch -q origin && git rev-parse --verify -q origin/main >/dev/null && echo fetched-from-the-cache
        touch {alternates}/planted || echo cache-objects-read-only
        """,
        cwd=clone, env=IDENTITY,
    )
    assert code == 0, out
    for expected in ("committed", "stdout: 2", "fetched-from-the-cache", "cache-objects-read-only"):
        assert expected in out, (expected, out)
    assert sorted(p.name for p in (cache / "objects").rglob("*")) == packs_before
    log = subprocess.run(["git", "log", "-1", "--format=%s"], cwd=clone, capture_output=True, text=True)
    assert log.stdout.strip() == "agent commit"


def test_prompt_and_config_files_are_shown_one_by_one_read_only(world: World) -> None:
    cwd = world.data / "worktrees" / "task-5"
    cwd.mkdir()
    logs = world.data / "runs" / "job_run-5" / "attempt-1"
    logs.mkdir(parents=True)
    prompt = logs / "prompt.md"
    prompt.write_text("do it\n")
    (logs / "stdout.log").write_text("someone's raw output\n")
    code, out = world.run(f"cat {prompt}; ls {logs}; echo x >> {prompt} || echo prompt-read-only",
                          cwd=cwd, mounts=Mounts(writable=(cwd,), readonly=(prompt,)))
    assert code == 0, out
    assert "stdout: do it" in out and "prompt-read-only" in out and "someone" not in out, out
    assert "stdout: prompt.md" in out and "stdout.log" not in out, out
    assert prompt.read_text() == "do it\n"


def test_limits_on_file_size_and_memory(tmp_path: Path) -> None:
    w = make_world(tmp_path, Limits(memory_mb=1024, max_file_mb=1))
    try:
        cwd = w.data / "worktrees" / "task-7"
        cwd.mkdir()
        code, out = w.run(
            "head -c 2000000 /dev/zero > big 2>/dev/null; echo size $(stat -c %s big);"
            " python3 -c 'bytearray(2 * 1024 ** 3)' 2>&1 | tail -1",
            cwd=cwd,
        )
        assert code == 0, out
        assert "stdout: size 1048576" in out, out
        assert "MemoryError" in out, out
    finally:
        w.runtime.shutdown()


def test_raw_output_files_are_private(world: World) -> None:
    cwd = world.data / "worktrees" / "task-8"
    cwd.mkdir()
    log_dir = world.data / "runs" / "r-private"
    log_dir.mkdir()
    (log_dir / "stdout.log").write_text("old")
    os.chmod(log_dir / "stdout.log", 0o644)
    world.runtime.launch(LaunchSpec(key="job_run:99:1", argv=["/bin/sh", "-c", "echo hi"], env={}, cwd=cwd,
                                    log_dir=log_dir))
    world.sink.wait("job_run:99:1")
    for name in ("stdout.log", "stderr.log"):
        assert stat.S_IMODE((log_dir / name).stat().st_mode) == 0o600


def test_kill_ends_everything_in_the_sandbox(world: World) -> None:
    cwd = world.data / "worktrees" / "task-10"
    cwd.mkdir()
    marker = f"600.{time.monotonic_ns()}"
    info = world.runtime.launch(LaunchSpec(key="job_run:100:1", argv=["/bin/sh", "-c", f"sleep {marker} & wait"],
                                           env={}, cwd=cwd, log_dir=world.data / "runs" / "r-kill"))
    def sleepers() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", marker]]

    deadline = time.monotonic() + 10
    while not sleepers():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert os.getpgid(sleepers()[0].pid) == info.pid  # the sandbox stays in the group the runtime signals
    world.runtime.kill("job_run:100:1")
    world.sink.wait("job_run:100:1")
    assert [p for p in sleepers() if p.status() != psutil.STATUS_ZOMBIE] == []
