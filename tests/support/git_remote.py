"""A bare git remote with one commit on main, for tests that register repos."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(cwd),
                               "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@t"}).stdout


def make_remote(tmp: Path, name: str = "remote.git", files: dict[str, str] | None = None) -> Path:
    remote = tmp / name
    git("init", "-q", "--bare", "-b", "main", str(remote), cwd=tmp)
    seed = tmp / f"{name}-seed"
    git("clone", "-q", str(remote), str(seed), cwd=tmp)
    for path, content in (files or {"README.md": "demo\n"}).items():
        (seed / path).parent.mkdir(parents=True, exist_ok=True)
        (seed / path).write_text(content)
    git("add", "-A", cwd=seed)
    git("commit", "-qm", "initial", cwd=seed)
    git("push", "-q", "origin", "main", cwd=seed)
    return remote
