"""Optio's own git runs no code an agent planted, uses no credential but the repo's own, and asks the SSRF guard
before every fetch and push. Real git, real clones, a real smart-HTTP server (`git http-backend`) on loopback."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from tests.support.git_http import GitHttpServer

from optio.forge.git import GitError, RepoCache, UnsafeRemoteError, branch_for_task, run_git
from optio.forge.gitcmd import LOCAL_TRANSPORT

HOOKS = ("post-checkout", "pre-commit", "post-commit", "pre-push", "reference-transaction", "post-merge",
         "pre-auto-gc", "post-rewrite", "post-index-change", "pre-merge-commit", "commit-msg", "prepare-commit-msg")


def make_remote(root: Path, name: str = "remote.git") -> Path:
    seed = root / f"{name}-seed"
    seed.mkdir(parents=True)
    run_git(["init", "--quiet", "-b", "main"], cwd=seed)
    (seed / "app.txt").write_text("alpha\n")
    run_git(["add", "-A"], cwd=seed)
    run_git(["commit", "--quiet", "-m", "initial"], cwd=seed)
    remote = root / name
    run_git(["init", "--quiet", "--bare", "-b", "main", str(remote)], cwd=root)
    run_git(["push", "--quiet", str(remote), "main"], cwd=seed, config=LOCAL_TRANSPORT)
    return remote


def remote_sha(remote: Path, ref: str) -> str | None:
    proc = run_git(["rev-parse", "--verify", "--quiet", ref], cwd=remote, check=False)
    return proc.stdout.strip() or None


def plant(worktree: Path, markers: Path) -> None:
    """What a hostile agent leaves in its checkout: hooks, a hooks path, an fsmonitor and a clean filter.

    Written wherever the checkout's git looks (its own .git and, for a shared worktree, the common dir),
    each writing a marker file when run.
    """
    markers.mkdir(exist_ok=True)
    planted_hooks = worktree.parent / f"{worktree.name}-planted-hooks"
    planted_hooks.mkdir()
    dirs = {planted_hooks}
    for flag in ("--git-dir", "--git-common-dir"):
        out = run_git(["rev-parse", flag], cwd=worktree).stdout.strip()
        dirs.add((worktree / out).resolve() / "hooks")
    for folder in dirs:
        folder.mkdir(parents=True, exist_ok=True)
        for name in HOOKS:
            hook = folder / name
            hook.write_text(f"#!/bin/sh\ntouch '{markers}/hook-{name}'\nexit 0\n")
            hook.chmod(0o755)
    fsmonitor = worktree.parent / f"{worktree.name}-fsmonitor.sh"
    fsmonitor.write_text(f"#!/bin/sh\ntouch '{markers}/fsmonitor'\nexit 1\n")
    fsmonitor.chmod(0o755)
    for key, value in (("core.fsmonitor", str(fsmonitor)), ("core.hooksPath", str(planted_hooks)),
                       ("filter.evil.clean", f"sh -c 'touch {markers}/filter; cat'"),
                       ("filter.evil.smudge", f"sh -c 'touch {markers}/filter; cat'"),
                       ("diff.external", f"sh -c 'touch {markers}/diff'")):
        run_git(["config", key, value], cwd=worktree)
    (worktree / ".gitattributes").write_text("* filter=evil\n")


def test_planted_hooks_fsmonitor_and_filters_never_run_in_optio_or_another_task(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    cache = RepoCache(str(remote), tmp_path / "cache")
    markers = tmp_path / "markers"
    wt1 = tmp_path / "wt" / "1"
    cache.add_worktree(wt1, branch_for_task(1), "main")
    plant(wt1, markers)
    (wt1 / "feature.txt").write_text("from task 1\n")

    # Optio's own git work on the planted checkout: status, add, commit, push.
    assert cache.has_changes(wt1)
    sha1 = cache.commit_all(wt1, "task 1")
    assert sha1 is not None and cache.head_sha(wt1) == sha1
    assert cache.push_branch(wt1, branch_for_task(1)) == sha1
    assert remote_sha(remote, "refs/heads/optio/1") == sha1
    # Another task's provisioning, commit and push.
    wt2 = tmp_path / "wt" / "2"
    cache.add_worktree(wt2, branch_for_task(2), "main")
    (wt2 / "two.txt").write_text("2\n")
    sha2 = cache.commit_all(wt2, "task 2")
    assert sha2 is not None
    cache.push_branch(wt2, branch_for_task(2))
    # CI checkout, mergeability, the merge checkout, cleanup.
    ci = cache.run_ci(sha1, "cat feature.txt", work_root=tmp_path / "ci")
    assert ci.status == "passing" and "from task 1" in ci.output
    assert cache.mergeability("main", sha1).clean
    merged = cache.squash_merge("main", sha1, "Task 1 (#1)")
    assert run_git(["show", f"{merged}:feature.txt"], cwd=remote).stdout == "from task 1\n"
    cache.remove_worktree(wt1)
    cache.add_worktree(tmp_path / "wt" / "3", branch_for_task(3), "main")

    assert sorted(p.name for p in markers.iterdir()) == []
    # Nothing of the agent's reached the cache's config or hooks.
    listed = run_git(["config", "--list", "--local"], cwd=cache.cache_dir).stdout.split()
    keys = {line.split("=", 1)[0] for line in listed}
    assert not keys & {"core.fsmonitor", "core.hookspath", "filter.evil.clean", "filter.evil.smudge", "diff.external"}
    assert not (cache.cache_dir / "hooks").exists() or not any((cache.cache_dir / "hooks").iterdir())


def test_agent_clone_cannot_push_and_has_no_remote_credentials(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    cache = RepoCache(str(remote), tmp_path / "cache", credential=lambda: "never-in-the-clone")
    wt = tmp_path / "wt"
    cache.add_worktree(wt, branch_for_task(1), "main")
    config = (wt / ".git" / "config").read_text()
    assert str(remote) not in config and "never-in-the-clone" not in config
    (wt / "x.txt").write_text("x\n")
    run_git(["add", "-A"], cwd=wt)
    run_git(["commit", "--quiet", "-m", "agent"], cwd=wt)
    pushed = run_git(["push", "origin", "HEAD:refs/heads/main"], cwd=wt, config=LOCAL_TRANSPORT, check=False)
    assert pushed.returncode != 0
    assert remote_sha(remote, "refs/heads/main") != cache.head_sha(wt)
    with pytest.raises(GitError, match="only task branches"):
        cache.push_branch(wt, "main")


@pytest.fixture
def operator_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The operator's HOME, with a credential helper that would hand out a working password."""
    home = tmp_path / "operator-home"
    home.mkdir()
    marker = tmp_path / "operator-helper-ran"
    (home / ".gitconfig").write_text(
        "[credential]\n"
        f"\thelper = \"!f() {{ touch '{marker}'; echo username=optio; echo password=s3cret-pass-1; }}; f\"\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return marker


def test_push_uses_the_repos_credential_never_the_operators_helper(tmp_path: Path, operator_home: Path) -> None:
    root = tmp_path / "served"
    root.mkdir()
    remote = make_remote(root)
    with GitHttpServer(root, password="s3cret-pass-1") as server:
        url = f"{server.base_url}/remote.git"
        anonymous = RepoCache(url, tmp_path / "cache-anon", allowlist=["127.0.0.1"])
        wt = tmp_path / "wt-anon"
        anonymous.add_worktree(wt, branch_for_task(1), "main")  # anonymously readable
        (wt / "f.txt").write_text("1\n")
        anonymous.commit_all(wt, "one")
        with pytest.raises(GitError):
            anonymous.push_branch(wt, branch_for_task(1))
        assert server.pushes_refused >= 1
        assert remote_sha(remote, "refs/heads/optio/1") is None

        with_secret = RepoCache(url, tmp_path / "cache-cred", allowlist=["127.0.0.1"],
                                credential=lambda: "s3cret-pass-1")
        wt2 = tmp_path / "wt-cred"
        with_secret.add_worktree(wt2, branch_for_task(2), "main")
        (wt2 / "f.txt").write_text("2\n")
        sha = with_secret.commit_all(wt2, "two")
        assert with_secret.push_branch(wt2, branch_for_task(2)) == sha
        assert remote_sha(remote, "refs/heads/optio/2") == sha
        merged = with_secret.squash_merge("main", sha, "Two (#2)")
        assert remote_sha(remote, "refs/heads/main") == merged
        with_secret.delete_remote_branch("optio/2")
        assert remote_sha(remote, "refs/heads/optio/2") is None
    assert not operator_home.exists()
    assert "s3cret-pass-1" not in (wt2 / ".git" / "config").read_text()


def test_redirect_to_a_refused_address_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "served"
    root.mkdir()
    make_remote(root)
    with GitHttpServer(root, host="127.0.0.2") as internal, \
            GitHttpServer(root, redirect_to=internal.base_url) as allowed:
        cache = RepoCache(f"{allowed.base_url}/remote.git", tmp_path / "cache", allowlist=["127.0.0.1"])
        with pytest.raises(GitError):
            cache.ensure()
        assert allowed.requests, "the allowed host was asked"
        assert internal.requests == []


class FlippingResolver:
    """A DNS answer that changes between registering the repo and fetching it (rebinding)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.asked = 0

    def __call__(self, host: str, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        self.asked += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (self.address, port))]


def test_ssrf_guard_runs_on_every_fetch_and_push_and_pins_the_address(tmp_path: Path) -> None:
    root = tmp_path / "served"
    root.mkdir()
    remote = make_remote(root)
    resolver = FlippingResolver("127.0.0.1")
    with GitHttpServer(root) as server:
        # A name no real DNS knows: the fetch works only because the checked address is pinned for curl.
        url = f"http://git.optio-test.invalid:{server.port}/remote.git"
        cache = RepoCache(url, tmp_path / "cache", allowlist=["127.0.0.1/32"], resolver=resolver)
        wt = tmp_path / "wt"
        cache.add_worktree(wt, branch_for_task(1), "main")
        (wt / "f.txt").write_text("1\n")
        cache.commit_all(wt, "one")
        cache.push_branch(wt, branch_for_task(1))
        assert remote_sha(remote, "refs/heads/optio/1") == cache.head_sha(wt)
        asked = resolver.asked

        resolver.address = "10.11.12.13"
        seen = len(server.requests)
        with pytest.raises(UnsafeRemoteError, match="private address"):
            cache.fetch()
        (wt / "f.txt").write_text("2\n")
        cache.commit_all(wt, "two")
        with pytest.raises(UnsafeRemoteError):
            cache.push_branch(wt, branch_for_task(1))
        assert resolver.asked > asked
        assert len(server.requests) == seen


def test_a_cache_from_before_task_clones_loses_what_agents_planted_in_it(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    cache = RepoCache(str(remote), tmp_path / "cache")
    cache.ensure()
    # What a shared `git worktree` let an agent write into the cache itself.
    markers = tmp_path / "markers"
    markers.mkdir()
    for key, value in (("filter.evil.clean", f"sh -c 'touch {markers}/filter; cat'"),
                       ("url.http://10.0.0.1/.insteadOf", str(remote)), ("include.path", "/etc/passwd")):
        run_git(["config", key, value], cwd=cache.cache_dir)
    (cache.cache_dir / "info").mkdir(exist_ok=True)
    (cache.cache_dir / "info" / "attributes").write_text("* filter=evil\n")
    (cache.cache_dir / "hooks").mkdir(exist_ok=True)
    (cache.cache_dir / "hooks" / "reference-transaction").write_text(f"#!/bin/sh\ntouch {markers}/hook\n")

    restarted = RepoCache(str(remote), tmp_path / "cache")
    wt = tmp_path / "wt"
    restarted.add_worktree(wt, branch_for_task(1), "main")
    (wt / "f.txt").write_text("1\n")
    sha = restarted.commit_all(wt, "one")
    assert restarted.push_branch(wt, branch_for_task(1)) == sha
    listed = run_git(["config", "--list", "--local"], cwd=cache.cache_dir).stdout
    assert "evil" not in listed and "insteadof" not in listed.lower() and "include" not in listed
    assert not (cache.cache_dir / "hooks").exists() and not (cache.cache_dir / "info" / "attributes").exists()
    assert list(markers.iterdir()) == []


def test_a_clone_rewired_to_borrow_other_objects_is_refused(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    secret_remote = make_remote(tmp_path / "other-workspace")
    other = RepoCache(str(secret_remote), tmp_path / "other-cache")
    other.ensure()
    secret_sha = other.resolve("main")
    cache = RepoCache(str(remote), tmp_path / "cache")
    wt = tmp_path / "wt"
    cache.add_worktree(wt, branch_for_task(1), "main")
    # The agent points its alternates at another repository's objects and commits a tree from it.
    with (wt / ".git" / "objects" / "info" / "alternates").open("a") as f:
        f.write(f"{other.cache_dir / 'objects'}\n")
    stolen = run_git(["commit-tree", f"{secret_sha}^{{tree}}", "-p", "HEAD", "-m", "stolen"], cwd=wt).stdout.strip()
    run_git(["update-ref", "HEAD", stolen], cwd=wt)
    with pytest.raises(GitError, match="outside its repo cache"):
        cache.push_branch(wt, branch_for_task(1))
    assert remote_sha(remote, "refs/heads/optio/1") is None
    cache.remove_worktree(wt)
    assert not wt.exists()


def test_a_shared_worktree_from_before_clones_is_adopted_with_its_edits(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    cache = RepoCache(str(remote), tmp_path / "cache")
    cache.ensure()
    wt = tmp_path / "wt"
    # What provisioning made before task clones: a `git worktree` of the cache on the task branch.
    run_git(["worktree", "add", "--quiet", "-B", "optio/1", str(wt), "refs/remotes/origin/main"], cwd=cache.cache_dir)
    (wt / "in-progress.txt").write_text("uncommitted work\n")

    restarted = RepoCache(str(remote), tmp_path / "cache")
    assert restarted.add_worktree(wt, branch_for_task(1), "main") == remote_sha(remote, "refs/heads/main")
    assert (wt / ".git").is_dir() and (wt / "in-progress.txt").read_text() == "uncommitted work\n"
    sha = restarted.commit_all(wt, "one")
    assert restarted.push_branch(wt, branch_for_task(1)) == sha
    assert run_git(["show", f"{sha}:in-progress.txt"], cwd=remote).stdout == "uncommitted work\n"
    assert run_git(["worktree", "list", "--porcelain"], cwd=cache.cache_dir).stdout.count("worktree ") == 1


def test_commit_is_the_working_files_whatever_the_agents_index_says(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    cache = RepoCache(str(remote), tmp_path / "cache")
    wt = tmp_path / "wt"
    cache.add_worktree(wt, branch_for_task(1), "main")
    (wt / "app.txt").write_text("staged, then changed again\n")
    (wt / "new.txt").write_text("staged only\n")
    run_git(["add", "-A"], cwd=wt)
    (wt / "app.txt").write_text("what is on disk\n")
    (wt / "new.txt").unlink()
    run_git(["update-index", "--assume-unchanged", "app.txt"], cwd=wt)
    assert cache.has_changes(wt)
    sha = cache.commit_all(wt, "one")
    assert sha is not None
    assert run_git(["show", f"{sha}:app.txt"], cwd=wt).stdout == "what is on disk\n"
    assert run_git(["ls-tree", "--name-only", sha], cwd=wt).stdout.split() == ["app.txt"]
    assert not cache.has_changes(wt)
    assert run_git(["status", "--porcelain"], cwd=wt).stdout == ""
