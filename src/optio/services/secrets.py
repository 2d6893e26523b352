"""Workspace- and repo-scoped secrets: sealed at rest, write-only over the API, injected by name.

Each value is sealed with the current key of the keyring (AES-256-GCM, random nonce) with the row's
identity (workspace, scope, name) as associated data, so a ciphertext copied into another row does not
open. The store also feeds the process-wide redactor: every value is known to it from start-up and from
the moment it is set, so no log line, event or error stored afterwards can carry it.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from optio.errors import Conflict, Invalid, NotFound
from optio.security import crypto
from optio.security.redact import Redactor
from optio.services import audit
from optio.store.db import Database
from optio.store.models import Repo, Secret
from optio.store.types import utcnow

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_VALUE_BYTES = 64 * 1024


def scope_key(repo_id: int | None) -> str:
    return f"repo:{repo_id}" if repo_id is not None else "workspace"


def _aad(workspace_id: int, key: str, name: str) -> bytes:
    return f"{workspace_id}\x00{key}\x00{name}".encode()


@dataclass(frozen=True)
class Rotation:
    previous_versions: list[int]
    current_version: int
    reencrypted: int


class SecretStore:
    """The `secrets` provider of the control context (`env_for`) and the service behind `/api/secrets`."""

    def __init__(self, db: Database, data_dir: Path, env_key: str | None, redactor: Redactor) -> None:
        self.db = db
        self.data_dir = data_dir
        self.env_key = env_key
        self.redactor = redactor
        self.keyring = crypto.load_keyring(data_dir, env_key)
        self._rotate_lock = threading.Lock()

    # --- values ---------------------------------------------------------------------------------------------

    def _open(self, row: Secret) -> str:
        return self.keyring.decrypt(row.ciphertext, aad=_aad(row.workspace_id, row.scope_key, row.name))

    def all_values(self) -> list[str]:
        with self.db.read() as session:
            rows = list(session.scalars(select(Secret)))
        return [self._open(r) for r in rows]

    def teach_redactor(self) -> None:
        self.redactor.update(self.all_values())

    def set(self, workspace_id: int, name: str, value: str, *, repo_id: int | None = None,
            user_id: int | None = None) -> tuple[Secret, bool]:
        """Create or replace a secret; returns (row, created). The redactor learns the value first."""
        if not NAME_RE.match(name):
            raise Invalid("secret names are environment variable names: letters, digits, _", field="name")
        if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
            raise Invalid(f"secret values are limited to {MAX_VALUE_BYTES} bytes", field="value")
        self.redactor.add(value)
        key = scope_key(repo_id)
        token = self.keyring.encrypt(value, aad=_aad(workspace_id, key, name))
        version = crypto.key_version_of(token)
        try:
            with self.db.write() as session:
                if repo_id is not None and session.scalar(
                    select(Repo.id).where(Repo.id == repo_id, Repo.workspace_id == workspace_id)
                ) is None:
                    raise NotFound(f"repo {repo_id} not found", field="repo_id")
                row = session.scalar(select(Secret).where(
                    Secret.workspace_id == workspace_id, Secret.scope_key == key, Secret.name == name))
                created = row is None
                if row is None:
                    row = Secret(workspace_id=workspace_id, scope="repo" if repo_id is not None else "workspace",
                                 repo_id=repo_id, scope_key=key, name=name, created_by=user_id,
                                 ciphertext=token, key_version=version)
                    session.add(row)
                else:
                    row.ciphertext, row.key_version, row.updated_at = token, version, utcnow()
        except IntegrityError:
            raise Conflict(f"secret {name!r} was set concurrently; try again", field="name") from None
        return row, created

    def list(self, workspace_id: int, *, repo_id: int | None = None) -> list[Secret]:
        q = select(Secret).where(Secret.workspace_id == workspace_id).order_by(Secret.scope_key, Secret.name)
        if repo_id is not None:
            q = q.where(Secret.repo_id == repo_id)
        with self.db.read() as session:
            return list(session.scalars(q))

    def delete(self, workspace_id: int, name: str, *, repo_id: int | None = None) -> Secret:
        with self.db.write() as session:
            row = session.scalar(select(Secret).where(
                Secret.workspace_id == workspace_id, Secret.scope_key == scope_key(repo_id), Secret.name == name))
            if row is None:
                raise NotFound(f"secret {name!r} not found")
            session.delete(row)
        return row

    def env_for(self, workspace_id: int, names: list[str], repo_id: int | None = None) -> dict[str, str]:
        """The named secrets as environment variables; repo-scoped values win over workspace ones.

        Only names asked for are returned, and names that do not exist are left out (the run then fails
        on its own terms rather than here). Each resolution is recorded in the audit log as a read.
        """
        wanted = sorted({n for n in names if isinstance(n, str)})
        if not wanted:
            return {}
        keys = [scope_key(None)] + ([scope_key(repo_id)] if repo_id is not None else [])
        with self.db.read() as session:
            rows = list(session.scalars(select(Secret).where(
                Secret.workspace_id == workspace_id, Secret.name.in_(wanted), Secret.scope_key.in_(keys))))
        env: dict[str, str] = {}
        for row in sorted(rows, key=lambda r: r.scope == "repo"):
            env[row.name] = self._open(row)
        if env:
            audit.record(self.db, workspace_id=workspace_id, user_id=None, actor="system", action="secret.read",
                         target_type="secret", target_id=",".join(sorted(env)),
                         detail={"names": sorted(env), "repo_id": repo_id})
        return env

    # --- keys -----------------------------------------------------------------------------------------------

    def rotate_key(self) -> Rotation:
        """New key version, every value re-sealed under it, then the old versions removed from the key file.

        With `OPTIO_ENCRYPTION_KEY` the key is not Optio's to replace: the operator supplies the new one
        (see `optio.security.crypto`), so this refuses instead of writing a key file.
        """
        if self.env_key:
            raise Conflict("the encryption key comes from OPTIO_ENCRYPTION_KEY; rotate it by setting a new "
                           "'<version>:<key>' there after re-encrypting (see optio.security.crypto)")
        with self._rotate_lock:
            previous = self.keyring.versions
            rotated = crypto.rotate_keyring(self.data_dir)
            count = 0
            with self.db.write() as session:
                for row in session.scalars(select(Secret)):
                    aad = _aad(row.workspace_id, row.scope_key, row.name)
                    token = crypto.reencrypt(row.ciphertext, rotated, aad=aad)
                    if token != row.ciphertext:
                        row.ciphertext, row.key_version = token, rotated.current_version
                        count += 1
            self.keyring = rotated
            for version in previous:
                self.keyring = crypto.retire_key(self.data_dir, version)
        return Rotation(previous_versions=previous, current_version=rotated.current_version, reencrypted=count)
