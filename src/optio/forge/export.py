"""Plain file trees of one commit, for processes that must read code but never run git on Optio's behalf.

A review reads the PR head and runs its command from the base branch. Both are exported as bare files
(no `.git`, no worktree registration in the cache): nothing in them points back at the repo cache, so
nothing the PR wrote there can act as git config, hooks or an fsmonitor, and removing them is an rmtree.
Files come from `read-tree` + `checkout-index` into a throw-away index rather than `git archive`, so a
`.gitattributes` in the commit (`export-ignore`, `export-subst`) cannot hide or rewrite what is reviewed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from optio.forge.git import RepoCache
from optio.forge.gitcmd import run_git

_SAFE = ["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "core.symlinks=true"]


def export_tree(cache: RepoCache, sha: str, dest: Path) -> str:
    """Write the files of commit `sha` to `dest` (replacing what was there); returns the full sha."""
    full = cache.resolve(sha)
    dest = Path(dest).absolute()
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="export-index-", dir=dest.parent) as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        for args in (["read-tree", full], ["checkout-index", "--all", "--force"]):
            run_git([*_SAFE, f"--work-tree={dest}", *args], cwd=cache.cache_dir, env=env)
    return full
