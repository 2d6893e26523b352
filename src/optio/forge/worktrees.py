"""Repo caches and task clones on this machine: the local `Worktrees` port, whichever forge hosts the repo.

One bare cache per repo under the data dir, made once and kept; the task clones, CI and merge checkouts
are made from it. The remote's credential is asked for at each remote operation, so a changed secret
applies at once.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from optio.control.ports import RepoRef
from optio.forge import name_reader
from optio.forge.export import export_tree
from optio.forge.git import RepoCache


class RepoWorktrees(RepoCache):
    """A `RepoCache` that also exports plain trees (a review's base and head checkouts)."""

    def export_tree(self, sha: str, dest: Path) -> str:
        return export_tree(self, sha, dest)


class RepoCaches:
    """The `WorktreeProvider` of this machine: one `RepoWorktrees` per repo, made on first use."""

    def __init__(self, data_dir: Path, *, credential: Callable[[int], str | None] = lambda _repo_id: None,
                 outbound_allowlist: Sequence[str] = ()) -> None:
        self.data_dir = data_dir
        self.credential = credential
        # The user name git presents with a repo's token, where its forge wants a particular one.
        self.username: Callable[[int], str | None] = lambda _repo_id: None
        self.outbound_allowlist = list(outbound_allowlist)
        self._caches: dict[int, RepoWorktrees] = {}
        self._lock = threading.Lock()

    def for_repo(self, repo: RepoRef) -> RepoWorktrees:
        with self._lock:
            cache = self._caches.get(repo.id)
            if cache is None:
                repo_id = repo.id
                cache = RepoWorktrees(repo.remote_url, self.data_dir / "repos" / str(repo_id) / "cache.git",
                                      credential=lambda: self.credential(repo_id),
                                      username=lambda: self.username(repo_id),
                                      allowlist=self.outbound_allowlist)
                self._caches[repo_id] = cache
            return cache

    def forget(self, repo_id: int) -> None:
        with self._lock:
            self._caches.pop(repo_id, None)
            name_reader.forget(self.data_dir / "repos" / str(repo_id) / "cache.git")
            shutil.rmtree(self.data_dir / "repos" / str(repo_id), ignore_errors=True)
