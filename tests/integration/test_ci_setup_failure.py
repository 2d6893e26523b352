"""Real CI commands that cannot start, or that time out, are told apart from red tests.

Each case runs the command through ``RepoCache.run_ci`` (a real clean checkout, a real ``sh -c``) and
classifies the result as the local forge records it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from optio.forge.ci_setup import classify
from optio.forge.git import RepoCache, run_git
from optio.forge.gitcmd import LOCAL_TRANSPORT

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


@pytest.fixture
def repo(tmp_path: Path) -> tuple[RepoCache, str]:
    """A remote whose main holds scripts in every state of disrepair."""
    seed = tmp_path / "seed"
    seed.mkdir()
    run_git(["init", "--quiet", "-b", "main"], cwd=seed)
    scripts = {
        "ok.sh": ("#!/bin/sh\necho fine\n", 0o755),
        "red.sh": ("#!/bin/sh\necho '1 failed'\nexit 1\n", 0o755),
        "no-interpreter.sh": ("#!/nonexistent/python9\nprint('hi')\n", 0o755),
        "not-executable.sh": ("#!/bin/sh\necho never\n", 0o644),
    }
    for name, (text, mode) in scripts.items():
        (seed / name).write_text(text)
        (seed / name).chmod(mode)
    run_git(["add", "-A"], cwd=seed)
    run_git(["commit", "--quiet", "-m", "scripts"], cwd=seed)
    remote = tmp_path / "remote.git"
    run_git(["init", "--quiet", "--bare", "-b", "main", str(remote)], cwd=tmp_path)
    run_git(["push", "--quiet", str(remote), "main"], cwd=seed, config=LOCAL_TRANSPORT)
    cache = RepoCache(str(remote), tmp_path / "cache")
    cache.ensure()
    return cache, cache.resolve("origin/main")


@pytest.mark.parametrize(
    ("command", "status", "kind", "said"),
    [
        ("./ok.sh", "passing", None, "fine"),
        ("./red.sh", "failing", None, "1 failed"),
        ("does-not-exist --run-tests", "error", "not_found", "does-not-exist"),
        ("./no-interpreter.sh", "error", "not_found", "no-interpreter.sh"),
        ("./not-executable.sh", "error", "not_executable", "not-executable.sh"),
    ],
)
def test_commands_that_cannot_start_are_errors_not_red_tests(
    repo: tuple[RepoCache, str], tmp_path: Path, command: str, status: str, kind: str | None, said: str
) -> None:
    cache, head = repo
    result = cache.run_ci(head, command, work_root=tmp_path / "ci", env=ENV, inherit_env=False)
    outcome = classify(result)
    assert (outcome.status, outcome.failure_kind) == (status, kind), result
    assert said in result.output


def test_a_timeout_is_an_error(repo: tuple[RepoCache, str], tmp_path: Path) -> None:
    cache, head = repo
    result = cache.run_ci(head, "echo started; sleep 30", work_root=tmp_path / "ci", env=ENV, inherit_env=False,
                          timeout_s=1)
    outcome = classify(result)
    assert (outcome.status, outcome.failure_kind) == ("error", "timeout")
    assert "started" in result.output and "timed out" in result.output

