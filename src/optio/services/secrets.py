"""Workspace- and repo-scoped secrets: sealed at rest, write-only over the API, injected by name.

Each value is sealed with the current key of the keyring (AES-256-GCM, random nonce) with the row's
identity (workspace, scope, name) as associated data, so a ciphertext copied into another row does not
open. The store also keeps the redactor registry in step: a value is masked in its workspace's (or repo's)
text from start-up and from the moment it is set, until it is replaced or deleted.

Writes and key rotation exclude each other: a value sealed with a key version the rotation is about to drop
would otherwise be unreadable forever, and the server would no longer start. A rotation also retires only
versions no row still uses. A row that does not open at start-up (key lost or row tampered) is reported in
the log and by `/api/health` instead of stopping the server.
"""

from __future__ import annotations

import builtins
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import structlog

from optio.control.ports import RunRef
from optio.errors import Conflict, Invalid, NotFound
from optio.security import crypto
from optio.security.redact import MIN_SECRET_LENGTH, Redactor, RedactorRegistry, default_redactor, registry_for
from optio.services import audit, sealed
from optio.store import secrets as secret_store
from optio.store.db import Database
from optio.store.models import Secret
from optio.store.session import Session

log = structlog.get_logger("optio.secrets")

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_VALUE_BYTES = 64 * 1024


def scope_key(repo_id: int | None) -> str:
    return f"repo:{repo_id}" if repo_id is not None else "workspace"


def _aad(workspace_id: int, key: str, name: str) -> bytes:
    return f"{workspace_id}\x00{key}\x00{name}".encode()


@dataclass(frozen=True)
class UnreadableSecret:
    """A stored secret that did not open: it is neither injected nor masked until it is set again."""

    workspace_id: int
    scope_key: str
    name: str
    key_version: int
    reason: str


@dataclass(frozen=True)
class Rotation:
    previous_versions: list[int]
    current_version: int
    reencrypted: int


class SecretStore:
    """The `secrets` provider of the control context (`env_for`) and the service behind `/api/secrets`."""

    def __init__(self, db: Database, data_dir: Path, env_key: str | None, redactor: Redactor | None = None) -> None:
        self.db = db
        self.data_dir = data_dir
        self.env_key = env_key
        # `redactor` masks every workspace's values: the server's own logs only. Stored text uses `redactors`.
        self.redactor = redactor if redactor is not None else default_redactor
        self.redactors: RedactorRegistry = registry_for(str(db.engine.url))
        self.redactors.server = self.redactor
        self.keyring = crypto.load_keyring(data_dir, env_key)
        self.unreadable: list[UnreadableSecret] = []
        # Held by every write and by a whole rotation: no value is sealed with a key the rotation then drops.
        self._rotate_lock = threading.RLock()

    # --- values ---------------------------------------------------------------------------------------------

    def _open(self, row: Secret) -> str:
        return self.keyring.decrypt(row.ciphertext, aad=_aad(row.workspace_id, row.scope_key, row.name))

    def load_redactors(self) -> list[UnreadableSecret]:
        """Teach the registry every stored value; rows that do not open are reported, not fatal.

        A server that refused to start over one bad row would lock every workspace out of every other
        secret; instead the row is logged (names only) and shown by `/api/health` until it is set again.
        """
        with self.db.read() as session:
            rows = secret_store.all_secrets(session)
        values: dict[tuple[int, int | None, str], str] = {}
        unreadable: list[UnreadableSecret] = []
        for row in rows:
            try:
                values[(row.workspace_id, row.repo_id, row.name)] = self._open(row)
            except crypto.SecretDecryptError as exc:
                unreadable.append(UnreadableSecret(row.workspace_id, row.scope_key, row.name, row.key_version,
                                                   str(exc)))
                log.error("secret_unreadable", workspace_id=row.workspace_id, scope=row.scope_key, name=row.name,
                          key_version=row.key_version, reason=str(exc))
        self.redactors.load(values)
        self.unreadable = unreadable
        return unreadable

    def teach_redactor(self) -> None:
        self.load_redactors()

    def set(self, workspace_id: int, name: str, value: str, *, repo_id: int | None = None,
            user_id: int | None = None) -> tuple[Secret, bool]:
        """Create or replace a secret; returns (row, created). Its scope's redactor learns the value first."""
        if not NAME_RE.match(name):
            raise Invalid("secret names are environment variable names: letters, digits, _", field="name")
        if len(value) < MIN_SECRET_LENGTH:
            raise Invalid(f"secret values must be at least {MIN_SECRET_LENGTH} characters long: a shorter value "
                          "cannot be told apart from ordinary output, so it could not be kept out of logs",
                          field="value")
        if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
            raise Invalid(f"secret values are limited to {MAX_VALUE_BYTES} bytes", field="value")
        entry = (workspace_id, repo_id, name)
        with self._rotate_lock:
            previous = self.redactors.put(entry, value)
            try:
                row, created = self._write(workspace_id, name, value, repo_id, user_id)
            except BaseException:
                if previous is None:
                    self.redactors.remove(entry)
                else:
                    self.redactors.put(entry, previous)
                raise
        self.unreadable = [u for u in self.unreadable
                           if (u.workspace_id, u.scope_key, u.name) != (workspace_id, scope_key(repo_id), name)]
        return row, created

    def _write(self, workspace_id: int, name: str, value: str, repo_id: int | None,
               user_id: int | None) -> tuple[Secret, bool]:
        key = scope_key(repo_id)
        token = self.keyring.encrypt(value, aad=_aad(workspace_id, key, name))
        version = crypto.key_version_of(token)
        return secret_store.upsert(self.db, workspace_id, repo_id=repo_id, scope_key=key, name=name,
                                   ciphertext=token, key_version=version, created_by=user_id)

    def list(self, workspace_id: int, *, repo_id: int | None = None) -> list[Secret]:
        with self.db.read() as session:
            return secret_store.list_secrets(session, workspace_id, repo_id=repo_id)

    def delete(self, workspace_id: int, name: str, *, repo_id: int | None = None) -> Secret:
        with self.db.write() as session:
            row = secret_store.find(session, workspace_id, scope_key(repo_id), name)
            if row is None:
                raise NotFound(f"secret {name!r} not found")
            secret_store.delete(session, row)
        self.redactors.remove((workspace_id, repo_id, name))
        self.unreadable = [u for u in self.unreadable
                           if (u.workspace_id, u.scope_key, u.name) != (workspace_id, scope_key(repo_id), name)]
        return row

    def env_for(self, workspace_id: int, names: builtins.list[str], repo_id: int | None = None, *,
                run: RunRef | None = None) -> dict[str, str]:
        """The named secrets as environment variables; repo-scoped values win over workspace ones.

        Only names asked for are returned, only from the run's own workspace and repo, and names that do not
        exist are left out. Each injection is audited: one row per secret, naming the run and the person who
        created it (the one whose request put the secret into a process).
        """
        wanted = sorted({n for n in names if isinstance(n, str)})
        if not wanted:
            return {}
        keys = [scope_key(None)] + ([scope_key(repo_id)] if repo_id is not None else [])
        with self.db.read() as session:
            rows = secret_store.named(session, workspace_id, wanted, keys)
        env: dict[str, str] = {}
        scopes: dict[str, str] = {}
        for row in sorted(rows, key=lambda r: r.scope == "repo"):
            env[row.name] = self._open(row)
            scopes[row.name] = row.scope_key
        if env:
            with self.db.write() as session:
                user_id, actor = _run_creator(session, run)
                for name in sorted(env):
                    audit.record_in(session, workspace_id=workspace_id, user_id=user_id, actor=actor,
                                    action="secret.inject", target_type="secret", target_id=name,
                                    detail={"name": name, "scope": scopes[name], "repo_id": repo_id,
                                            "run_kind": run.kind if run else None,
                                            "run_id": run.run_id if run else None})
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
                for row in secret_store.all_secrets(session):
                    aad = _aad(row.workspace_id, row.scope_key, row.name)
                    try:
                        token = crypto.reencrypt(row.ciphertext, rotated, aad=aad)
                    except crypto.SecretDecryptError:
                        continue  # already unreadable: its key version is kept below, in case it comes back
                    if token != row.ciphertext:
                        row.ciphertext, row.key_version = token, rotated.current_version
                        count += 1
                resealed, sealed_versions = sealed.reseal(session, rotated)
                count += resealed
                in_use = secret_store.key_versions_in_use(session) | sealed_versions
            self.keyring = rotated
            for version in previous:
                if version not in in_use:
                    self.keyring = crypto.retire_key(self.data_dir, version)
        return Rotation(previous_versions=previous, current_version=rotated.current_version, reencrypted=count)


def _run_creator(session: Session, run: RunRef | None) -> tuple[int | None, str]:
    """The user who created the run (a review run's task's creator), and the name the audit log shows."""
    if run is None:
        return None, "system"
    user_id, username = secret_store.run_creator(session, run.kind, run.run_id)
    return user_id, username or "system"
