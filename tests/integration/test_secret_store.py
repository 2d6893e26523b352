"""SecretStore over a real SQLite file: scoping, resolution order, redactor feeding, sealing per row."""

from __future__ import annotations

from pathlib import Path

import pytest

from optio.errors import NotFound
from optio.security.redact import Redactor
from optio.services.secrets import SecretStore
from optio.store import migrate, workspaces
from optio.store.db import Database
from optio.store.models import Repo, Secret, Workspace


@pytest.fixture
def store(tmp_path: Path) -> tuple[SecretStore, int, int, int]:
    db = Database(f"sqlite:///{tmp_path / 'optio.db'}")
    migrate.upgrade(db)
    with db.write() as session:
        ws = workspaces.ensure_default(session)
        other = Workspace(slug="other", name="Other")
        session.add(other)
        session.flush()
        repo = Repo(workspace_id=ws.id, name="r", remote_url="/tmp/r")
        session.add(repo)
        session.flush()
        ids = ws.id, other.id, repo.id
    return SecretStore(db, tmp_path, None, Redactor()), *ids


def test_repo_scoped_secret_wins_over_workspace_and_only_named_ones_are_given(store: tuple) -> None:
    secrets, ws, _other, repo = store
    secrets.set(ws, "TOKEN", "workspace-value")
    secrets.set(ws, "TOKEN", "repo-value", repo_id=repo)
    secrets.set(ws, "OTHER", "other-value")
    assert secrets.env_for(ws, ["TOKEN"]) == {"TOKEN": "workspace-value"}
    assert secrets.env_for(ws, ["TOKEN"], repo_id=repo) == {"TOKEN": "repo-value"}
    assert secrets.env_for(ws, ["TOKEN", "MISSING"], repo_id=repo) == {"TOKEN": "repo-value"}
    assert secrets.env_for(ws, []) == {}


def test_secrets_are_scoped_to_their_workspace(store: tuple) -> None:
    secrets, ws, other, repo = store
    secrets.set(ws, "TOKEN", "a-value-1")
    assert secrets.env_for(other, ["TOKEN"]) == {}
    with pytest.raises(NotFound):
        secrets.set(other, "TOKEN", "b-value-1", repo_id=repo)  # another workspace's repo
    with pytest.raises(NotFound):
        secrets.delete(other, "TOKEN")


def test_values_are_sealed_per_row_and_taught_to_the_redactor(store: tuple) -> None:
    secrets, ws, other, _repo = store
    secrets.set(ws, "TOKEN", "value-one-1234")
    assert secrets.redactor.redact("x value-one-1234 y") == "x *** y"
    with secrets.db.write() as session:
        row = session.query(Secret).one()
        assert "value-one" not in row.ciphertext and row.key_version == 1
        # The same ciphertext pasted into another workspace's row does not open there.
        session.add(Secret(workspace_id=other, scope="workspace", scope_key="workspace", name="TOKEN",
                           ciphertext=row.ciphertext, key_version=1))
    with pytest.raises(ValueError):
        secrets.env_for(other, ["TOKEN"])
    with secrets.db.write() as session:
        session.query(Secret).filter(Secret.workspace_id == other).delete()
    restarted = SecretStore(secrets.db, secrets.data_dir, None, Redactor())
    restarted.teach_redactor()
    assert restarted.redactor.redact("value-one-1234") == "***"
