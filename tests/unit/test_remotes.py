"""The local-remote policy and remote identity on real directories and repositories (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.git_remote import git, make_remote

from optio.errors import Invalid
from optio.services.remotes import REFUSED, LocalRemotePolicy, check_remote, identity


def test_network_remotes_with_the_same_host_and_path_are_one_repository() -> None:
    same = ["https://github.com/org/repo.git", "https://GitHub.com/org/repo", "http://github.com/org/repo/",
            "ssh://git@github.com/org/repo.git", "https://user:pw@github.com:443/org/./repo.git",
            "git://github.com/org/x/../repo", "https://github.com/org/%72epo"]
    assert len({identity(url) for url in same}) == 1
    assert identity("https://github.com/org/repo") != identity("https://github.com/org/other")
    assert identity("https://github.com/org/repo") != identity("https://gitlab.com/org/repo")


def test_local_spellings_of_one_repository_share_an_identity(tmp_path: Path) -> None:
    bare = make_remote(tmp_path, "a.git")
    (tmp_path / "link").symlink_to(bare)
    work = tmp_path / "work"
    git("clone", "-q", str(bare), str(work), cwd=tmp_path)
    assert len({identity(p) for p in (str(bare), f"file://{bare}", str(tmp_path / "link"), f"{bare}/")}) == 1
    # A working copy is identified by its git directory, whichever way it is named.
    assert identity(str(work)) == identity(str(work / ".git")) != identity(str(bare))


def test_policy_refuses_alike_outside_the_roots_and_in_the_data_dir(tmp_path: Path) -> None:
    roots, data = tmp_path / "roots", tmp_path / "roots" / "optio-data"
    data.mkdir(parents=True)
    policy = LocalRemotePolicy.of([roots], data)
    inside = make_remote(roots, "ok.git")
    assert check_remote(str(inside), policy) == str(inside.resolve())
    outside = make_remote(tmp_path, "private.git")
    cache = make_remote(data, "cache.git")
    for path in (str(outside), str(tmp_path / "missing"), str(cache), f"file://{cache}", str(data / "missing"),
                 f"{roots}/../private.git"):
        with pytest.raises(Invalid) as err:
            check_remote(path, policy)
        assert err.value.message == REFUSED and err.value.field == "remote_url"
    with pytest.raises(Invalid, match="does not exist"):
        check_remote(str(roots / "missing.git"), policy)
    for bad in ("file://otherhost/x", f"file://{inside}?x=1", "ext::sh -c id", "foo:bar"):
        with pytest.raises(Invalid):
            check_remote(bad, policy)


def test_no_roots_refuses_every_local_path_and_none_allows_all_but_the_data_dir(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    with pytest.raises(Invalid):
        check_remote(str(remote), LocalRemotePolicy.of([], tmp_path / "data"))
    anywhere = LocalRemotePolicy.of(None, tmp_path / "data")
    assert check_remote(str(remote), anywhere) == str(remote.resolve())
    (tmp_path / "data").mkdir()
    with pytest.raises(Invalid, match="OPTIO_LOCAL_REMOTE_ROOTS"):
        check_remote(str(tmp_path / "data"), anywhere)
    # A network URL is not the local policy's business (the SSRF guard decides those).
    assert check_remote("https://example.com/r.git", LocalRemotePolicy.of([], tmp_path)) == "https://example.com/r.git"
