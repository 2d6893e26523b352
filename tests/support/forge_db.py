"""A real SQLite store with one workspace and one repo on a real bare remote, for tests of the local forge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.git_remote import make_remote

from optio.store import migrate
from optio.store.db import Database
from optio.store.models import Repo, Workspace


def repo_world(tmp_path: Path, **repo_fields: Any) -> tuple[Database, Path, int]:
    """(database, remote, repo id): a migrated database whose one repo points at a fresh remote on `main`."""
    db = Database(f"sqlite:///{tmp_path / 'optio.db'}")
    migrate.upgrade(db)
    remote = make_remote(tmp_path, files={"README.md": "demo\n"})
    with db.write() as session:
        ws = Workspace(slug="w", name="w")
        session.add(ws)
        session.flush()
        repo = Repo(workspace_id=ws.id, name="demo", remote_url=str(remote), default_branch="main", **repo_fields)
        session.add(repo)
        session.flush()
        return db, remote, repo.id
