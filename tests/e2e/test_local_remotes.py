"""Local remotes: only under the roots an administrator allows, never Optio's own data, never another
workspace's remote — and a refusal says nothing about what exists on the host."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.git_remote import git, make_remote
from tests.support.optio_server import OptioServer

from optio.services.remotes import REFUSED

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Roots = <tmp>/roots. Workspace A (the bootstrap admin) registered <roots>/a.git and ran a task, so its
    repo cache exists in the data dir; bob is a plain member of workspace B."""
    tmp = tmp_path_factory.mktemp("remotes")
    roots = tmp / "roots"
    roots.mkdir()
    server = OptioServer(tmp / "data", env={"OPTIO_LOCAL_REMOTE_ROOTS": str(roots)}).start()
    try:
        remote_a = make_remote(roots, "a.git")
        repo = server.api("POST", "/api/repos", json={"remote_url": str(remote_a), "name": "ra"})
        assert repo.status_code == 201, repo.text
        task = server.api("POST", "/api/repo-tasks", json={"repo": "ra", "title": "t", "prompt": "p",
                                                           "agent_config": {"command": "echo x > x.txt"}}).json()
        # the cache exists once the task reached a PR (it may even have merged already)
        server.wait_state(f"/api/repo-tasks/{task['id']}", {"pr_opened", "completed", "failed", "needs_attention"},
                          timeout=90)
        cache = server.data_dir / "repos" / str(repo.json()["id"]) / "cache.git"
        assert (cache / "HEAD").is_file()
        server.api("POST", "/api/workspaces", json={"slug": "b"}).raise_for_status()
        bob = server.api("PUT", "/api/members/bob", headers={"X-Optio-Workspace": "b"},
                         json={"role": "member", "create_api_key": True})
        assert bob.status_code in (200, 201), bob.text
        yield {"server": server, "tmp": tmp, "roots": roots, "remote_a": remote_a, "cache": cache,
               "bob": bob.json()["api_key"]}
    finally:
        server.stop()


def add(world: dict[str, Any], remote: str, name: str) -> Any:
    return world["server"].api("POST", "/api/repos", token=world["bob"], json={"remote_url": remote, "name": name})


def refused_alike(res: Any) -> None:
    assert res.status_code == 422, res.text
    assert res.json()["error"] == {"code": "invalid", "message": REFUSED, "field": "remote_url"}


def test_member_of_b_cannot_register_workspace_a_remote_in_any_spelling(world: dict[str, Any]) -> None:
    remote_a, roots = world["remote_a"], world["roots"]
    link = roots / "link-to-a"
    link.symlink_to(remote_a)
    spellings = [str(remote_a), f"file://{remote_a}", f"{remote_a}/", f"{roots}/x/../a.git", str(link),
                 f"file://localhost{remote_a}", f"file://{str(remote_a).replace('.git', '%2Egit')}"]
    for n, spelling in enumerate(spellings):
        res = add(world, spelling, f"steal{n}")
        assert res.status_code == 409, (spelling, res.status_code, res.text)
        assert res.json()["error"]["field"] == "remote_url"
    assert world["server"].api("GET", "/api/repos", token=world["bob"]).json() == []


def test_member_of_b_cannot_register_a_repo_cache_or_anything_in_the_data_dir(world: dict[str, Any]) -> None:
    cache, data_dir = world["cache"], world["server"].data_dir
    for n, path in enumerate([str(cache), f"file://{cache}", str(data_dir), str(data_dir / "repos"),
                              str(data_dir / "no-such-dir")]):
        refused_alike(add(world, path, f"cache{n}"))


def test_a_repo_in_the_roots_that_points_into_the_data_dir_is_refused(world: dict[str, Any]) -> None:
    roots, cache = world["roots"], world["cache"]
    gitfile = roots / "gitfile-repo"
    gitfile.mkdir()
    (gitfile / ".git").write_text(f"gitdir: {cache}\n")
    refused_alike(add(world, str(gitfile), "gitfile"))
    borrower = make_remote(roots, "borrower.git")
    (borrower / "objects" / "info" / "alternates").write_text(f"{cache / 'objects'}\n")
    refused_alike(add(world, str(borrower), "borrower"))
    (roots / "escape").symlink_to(cache)
    refused_alike(add(world, str(roots / "escape"), "escape"))


def test_paths_outside_the_roots_get_one_answer_whether_or_not_they_exist(world: dict[str, Any]) -> None:
    tmp = world["tmp"]
    private = make_remote(tmp, "private.git")  # a real repository on the host, outside the roots
    for n, path in enumerate([str(private), str(tmp / "nothing-here.git"), "/etc", "/nonexistent/x",
                              f"file://{private}", "file:///nonexistent", "~/.ssh", "relative/path",
                              f"{world['roots']}/../private.git"]):
        refused_alike(add(world, path, f"outside{n}"))


def test_a_new_repo_inside_the_roots_is_accepted_for_a_member(world: dict[str, Any]) -> None:
    mine = make_remote(world["roots"], "b-own.git")
    res = add(world, f"file://{mine}", "bown")
    assert res.status_code == 201, res.text
    assert res.json()["remote_url"] == os.path.realpath(mine)
    missing = add(world, str(world["roots"] / "not-yet.git"), "notyet")
    assert missing.status_code == 422 and "does not exist" in missing.json()["error"]["message"]
    # The same workspace may register its remote twice (say, with other settings); A still may not take it.
    assert add(world, str(mine), "bown2").status_code == 201
    res = world["server"].api("POST", "/api/repos", json={"remote_url": str(mine), "name": "take"})
    assert res.status_code == 409, res.text


def test_no_roots_configured_means_no_local_remotes(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    server = OptioServer(tmp_path / "data", env={"OPTIO_LOCAL_REMOTE_ROOTS": ""}).start()
    try:
        for path in (str(remote), str(tmp_path / "missing.git")):
            res = server.api("POST", "/api/repos", json={"remote_url": path})
            refused_alike(res)
    finally:
        server.stop()


def test_single_user_setup_allows_local_paths_anywhere_but_the_data_dir(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    server = OptioServer(tmp_path / "data", env={"OPTIO_LOCAL_REMOTE_ROOTS": "", "OPTIO_AUTH": "disabled"}).start()
    same_site = {"X-Optio-CSRF": "1"}  # what the CLI sends; without auth, writes must show they are not cross-site
    try:
        res = server.api("POST", "/api/repos", headers=same_site, json={"remote_url": str(remote), "name": "laptop"})
        assert res.status_code == 201, res.text
        inside = server.data_dir / "planted.git"
        git("init", "-q", "--bare", str(inside), cwd=tmp_path)
        refused_alike(server.api("POST", "/api/repos", headers=same_site, json={"remote_url": str(inside)}))
    finally:
        server.stop()
