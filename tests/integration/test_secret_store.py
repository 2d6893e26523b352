"""SecretStore over a real SQLite file: scoping, resolution order, redactor feeding, sealing per row."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from optio.errors import Invalid, NotFound
from optio.security import crypto
from optio.security.redact import Redactor
from optio.services import audit, jobs, users
from optio.services.secrets import RunRef, SecretStore
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


def test_values_shorter_than_eight_characters_are_refused(store: tuple) -> None:
    secrets, ws, _other, _repo = store
    with pytest.raises(Invalid) as err:
        secrets.set(ws, "SHORT", "FAILED")
    assert err.value.field == "value" and "at least 8 characters" in err.value.message
    assert secrets.list(ws) == []
    secrets.set(ws, "LONG_ENOUGH", "FAILED_01")
    assert [r.name for r in secrets.list(ws)] == ["LONG_ENOUGH"]


def test_each_workspace_and_repo_masks_only_its_own_live_values(store: tuple) -> None:
    secrets, ws, other, repo = store
    secrets.set(other, "B_SECRET", "FAILED_01")
    secrets.set(ws, "DEPLOY", "deploy-key-of-repo", repo_id=repo)
    reg = secrets.redactors
    assert reg.for_scope(ws).redact("3 tests FAILED_01") == "3 tests FAILED_01"
    assert reg.for_scope(other).redact("3 tests FAILED_01") == "3 tests ***"
    assert reg.for_scope(ws, repo).redact("deploy-key-of-repo") == "***"
    assert reg.for_scope(ws).redact("deploy-key-of-repo") == "deploy-key-of-repo"
    # Replacing a value stops masking the old one; deleting stops masking at all.
    secrets.set(other, "B_SECRET", "replaced-value-2")
    assert reg.for_scope(other).redact("FAILED_01 replaced-value-2") == "FAILED_01 ***"
    secrets.delete(other, "B_SECRET")
    assert reg.for_scope(other).redact("replaced-value-2") == "replaced-value-2"
    # A restart builds the same from the stored rows.
    restarted = SecretStore(secrets.db, secrets.data_dir, None, Redactor())
    assert restarted.load_redactors() == []
    assert restarted.redactors.for_scope(ws, repo).redact("deploy-key-of-repo") == "***"
    assert restarted.redactors.for_scope(other).redact("replaced-value-2") == "replaced-value-2"


def test_a_refused_write_does_not_leave_its_value_masked(store: tuple) -> None:
    secrets, _ws, other, repo = store
    with pytest.raises(NotFound):
        secrets.set(other, "TOKEN", "never-stored-value", repo_id=repo)
    assert secrets.redactors.for_workspace(other).redact("never-stored-value") == "never-stored-value"


def test_undecryptable_rows_are_reported_and_do_not_stop_loading(store: tuple) -> None:
    secrets, ws, _other, _repo = store
    secrets.set(ws, "GOOD", "good-value-123")
    secrets.set(ws, "BAD", "bad-value-1234")
    with secrets.db.write() as session:
        row = session.query(Secret).filter(Secret.name == "BAD").one()
        row.ciphertext = secrets.keyring.encrypt("bad-value-1234", aad=b"another row")  # opens nowhere
    restarted = SecretStore(secrets.db, secrets.data_dir, None, Redactor())
    unreadable = restarted.load_redactors()
    assert [(u.name, u.scope_key) for u in unreadable] == [("BAD", "workspace")]
    assert "failed authentication" in unreadable[0].reason
    assert restarted.redactors.for_scope(ws).redact("good-value-123") == "***"
    restarted.set(ws, "BAD", "bad-value-5678")  # setting it again repairs it
    assert restarted.unreadable == []


def test_every_injection_is_audited_with_run_user_and_name(store: tuple) -> None:
    secrets, ws, _other, repo = store
    admin = users.ensure_bootstrap_admin(secrets.db, None)
    secrets.set(ws, "TOKEN", "ws-token-4Yq81zLp")
    secrets.set(ws, "DEPLOY", "repo-deploy-9Kf2Wq7", repo_id=repo)
    job = jobs.create_job(secrets.db, ws, {"name": "j", "prompt_template": "go", "agent_type": "script",
                                           "agent_config": {"command": "true"}})
    run = jobs.start_run(secrets.db, ws, job.id, {}, created_by=admin.user_id)
    env = secrets.env_for(ws, ["TOKEN", "DEPLOY"], repo_id=repo, run=RunRef("job_run", run.id))
    assert env == {"TOKEN": "ws-token-4Yq81zLp", "DEPLOY": "repo-deploy-9Kf2Wq7"}
    rows, _ = audit.list_events(secrets.db, ws, action="secret.inject")
    got = sorted((r.target_id, r.user_id, r.actor, r.detail["run_kind"], r.detail["run_id"], r.detail["scope"])
                 for r in rows)
    assert got == [("DEPLOY", admin.user_id, "admin", "job_run", run.id, f"repo:{repo}"),
                   ("TOKEN", admin.user_id, "admin", "job_run", run.id, "workspace")]
    assert all("ws-token-4Yq81zLp" not in str(r.detail) for r in rows)


def test_a_secret_written_during_a_rotation_survives_it(store: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write seals its value, then pauses before storing it while a rotation is asked for.

    Without the rotation lock the rotation re-encrypts, retires key 1 and finishes; the paused write then
    stores a value sealed with key 1, which nothing can open any more.
    """
    secrets, ws, _other, _repo = store
    secrets.set(ws, "EXISTING", "existing-value-1")
    sealed, go = threading.Event(), threading.Event()
    real_version_of = crypto.key_version_of

    def pausing_version_of(token: str) -> int:
        if threading.current_thread().name == "writer":
            sealed.set()
            assert go.wait(10)
        return real_version_of(token)

    monkeypatch.setattr(crypto, "key_version_of", pausing_version_of)
    errors: list[BaseException] = []

    def run(target: Any) -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=run, name="writer",
                              args=(lambda: secrets.set(ws, "DURING", "written-during-rotation"),))
    writer.start()
    assert sealed.wait(10)
    rotation = threading.Thread(target=run, name="rotation", args=(secrets.rotate_key,))
    rotation.start()
    rotation.join(2)  # with the lock it waits for the writer; without it, it finishes here
    go.set()
    writer.join(10)
    rotation.join(10)
    assert errors == []
    monkeypatch.undo()

    restarted = SecretStore(secrets.db, secrets.data_dir, None, Redactor())
    assert restarted.load_redactors() == []
    assert restarted.env_for(ws, ["DURING", "EXISTING"]) == {"DURING": "written-during-rotation",
                                                             "EXISTING": "existing-value-1"}
    assert restarted.keyring.current_version == 2
    assert {r.key_version for r in restarted.list(ws)} == {2}


def test_a_rotation_keeps_a_key_version_some_row_still_uses(store: tuple) -> None:
    secrets, ws, _other, _repo = store
    secrets.set(ws, "GOOD", "good-value-123")
    with secrets.db.write() as session:
        session.add(Secret(workspace_id=ws, scope="workspace", scope_key="workspace", name="STUCK",
                           ciphertext=secrets.keyring.encrypt("x", aad=b"elsewhere"), key_version=1))
    rotation = secrets.rotate_key()
    assert rotation.current_version == 2 and rotation.reencrypted == 1
    assert crypto.load_keyring(secrets.data_dir, None).versions == [1, 2]  # row STUCK still names version 1
