"""What the hosted-forge fakes (tests.support.fake_github, tests.support.fake_gitlab) share: bare repositories
seeded with real git under one root, and the table of who holds which token (an API token, or the password of
git's basic auth)."""

from __future__ import annotations

import base64
import binascii
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Generic, TypeVar

Holder = TypeVar("Holder")


def seed_bare_repo(path: Path, *, default_branch: str, files: Mapping[str, str], message: str,
                   env: Mapping[str, str], scratch: Path) -> None:
    """A bare repo at `path` that accepts pushes over smart HTTP, with one commit of `files` on the default
    branch (made in a throwaway clone under `scratch`, as a person would)."""

    def git(*args: str, cwd: Path) -> None:
        res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False,
                             env={**env, "HOME": str(cwd)})
        if res.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)}: {res.stderr.decode(errors='replace')}")

    path.parent.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "--bare", "-b", default_branch, str(path), cwd=scratch)
    git("config", "http.receivepack", "true", cwd=path)
    seed = Path(tempfile.mkdtemp(dir=scratch, prefix="seed-"))
    try:
        git("clone", "-q", str(path), str(seed / "w"), cwd=seed)
        work = seed / "w"
        for rel, content in files.items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_text(content)
        git("add", "-A", cwd=work)
        git("commit", "-qm", message, cwd=work)
        git("push", "-q", "origin", f"HEAD:{default_branch}", cwd=work)
    finally:
        shutil.rmtree(seed)


class FakeForge(Generic[Holder]):
    """A fake forge's root directory and its token table (token → who holds it: a login, a user record)."""

    def __init__(self, root: Path, holders: dict[str, Holder]) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.holders = holders

    def holder(self, token: str | None) -> Holder | None:
        return self.holders.get(token or "")

    def basic_holder(self, header: str | None) -> Holder | None:
        """Who a `Basic` Authorization header's password (a token, as git sends it) belongs to."""
        if not header or not header.startswith("Basic "):
            return None
        try:
            _, _, password = base64.b64decode(header[6:]).decode(errors="replace").partition(":")
        except (ValueError, binascii.Error):
            return None
        return self.holders.get(password)
