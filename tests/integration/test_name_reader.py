"""The cache's long-lived `cat-file` reader answers what `git rev-parse` would, also after others changed the repo.

Real git repositories and real git processes throughout.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from optio.forge import name_reader
from optio.forge.name_reader import NameReader, Unanswerable


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def rev_parse(repo: Path, name: str) -> str | None:
    proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", name], cwd=repo, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


@pytest.fixture
def repos(tmp_path: Path) -> tuple[Path, Path]:
    """(a work repo with two commits on main, a bare repo that fetched the first of them)."""
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    git(work, "config", "user.name", "t")
    git(work, "config", "user.email", "t@localhost")
    (work / "a.txt").write_text("a\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "one")
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(bare, "fetch", "-q", str(work), "+refs/heads/*:refs/remotes/origin/*")
    return work, bare


@pytest.fixture
def reader(repos: tuple[Path, Path]) -> Iterator[NameReader]:
    """A reader of the bare repo, closed after the test."""
    opened = NameReader(repos[1])
    try:
        yield opened
    finally:
        opened.close()


def test_answers_as_rev_parse_for_refs_shas_and_trees(repos: tuple[Path, Path], reader: NameReader) -> None:
    _, bare = repos
    tip = reader.peel("refs/remotes/origin/main")
    assert tip == rev_parse(bare, "refs/remotes/origin/main^{commit}")
    assert tip is not None
    assert reader.peel(tip) == tip
    assert reader.peel(tip, "tree") == rev_parse(bare, f"{tip}^{{tree}}")
    assert reader.peel("refs/remotes/origin/nope") is None
    assert reader.peel("0" * 40) is None


def test_refuses_names_it_cannot_answer_safely(reader: NameReader) -> None:
    tip = reader.peel("refs/remotes/origin/main")
    assert tip is not None
    for name in (tip[:12], "main", "HEAD", "refs/remotes/origin/main~1", "refs/a b", "refs/x\nrefs/y",
                 "refs/../x"):
        with pytest.raises(Unanswerable):
            reader.peel(name)


def test_sees_refs_and_objects_another_process_wrote_after_it_started(repos: tuple[Path, Path],
                                                                      reader: NameReader) -> None:
    work, bare = repos
    first = reader.peel("refs/remotes/origin/main")
    (work / "b.txt").write_text("b\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "two")
    second = git(work, "rev-parse", "HEAD")
    assert reader.peel(second) is None  # not fetched yet
    git(bare, "fetch", "-q", str(work), "+refs/heads/*:refs/remotes/origin/*")  # a new pack, a moved ref
    assert reader.peel("refs/remotes/origin/main") == second != first
    assert reader.peel(second) == second
    git(bare, "pack-refs", "--all")  # the ref now lives only in packed-refs
    git(bare, "update-ref", "refs/remotes/origin/other", first)
    assert reader.peel("refs/remotes/origin/main") == second
    assert reader.peel("refs/remotes/origin/other") == first
    git(bare, "update-ref", "-d", "refs/remotes/origin/other")
    assert reader.peel("refs/remotes/origin/other") is None


def test_a_repository_rebuilt_in_place_is_read_anew(repos: tuple[Path, Path], reader: NameReader,
                                                     tmp_path: Path) -> None:
    work, bare = repos
    assert reader.peel("refs/remotes/origin/main") is not None
    shutil.rmtree(bare)
    with pytest.raises(Unanswerable):
        reader.peel("refs/remotes/origin/main")
    git(tmp_path, "init", "-q", "--bare", str(bare))
    assert reader.peel("refs/remotes/origin/main") is None
    git(bare, "fetch", "-q", str(work), "+refs/heads/*:refs/remotes/origin/*")
    assert reader.peel("refs/remotes/origin/main") == git(work, "rev-parse", "HEAD")


def test_a_reader_that_died_is_started_again(repos: tuple[Path, Path]) -> None:
    _, bare = repos
    reader = name_reader.reader_for(bare)
    try:
        tip = reader.peel("refs/remotes/origin/main")
        assert reader._proc is not None
        reader._proc.kill()
        reader._proc.wait()
        assert reader.peel("refs/remotes/origin/main") == tip
        assert name_reader.reader_for(bare) is reader
    finally:
        name_reader.forget(bare)
    assert reader._proc is None
