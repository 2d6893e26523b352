"""What a running Optio needs to authenticate people and guard secrets, built once at start.

The session secret signs CSRF tokens. Like the encryption key it comes from the environment
(`OPTIO_SESSION_SECRET`) or from a file created in the data dir on first start, readable by the owner
only, so a restart keeps every signed-in browser's CSRF token valid.
"""

from __future__ import annotations

import secrets
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from optio.config import Settings
from optio.security import private_file
from optio.security.redact import Redactor, default_redactor
from optio.services import users
from optio.services.secrets import SecretStore
from optio.store.db import Database

SESSION_SECRET_FILE = "session.secret"


@dataclass
class AuthState:
    secrets: SecretStore
    session_secret: bytes
    bootstrap: users.Bootstrap
    redactor: Redactor


def load_session_secret(data_dir: Path, configured: str | None) -> bytes:
    if configured:
        return configured.encode("utf-8")
    path = data_dir / SESSION_SECRET_FILE
    value = secrets.token_urlsafe(48).encode("ascii")
    # Written whole and synced before it appears (see optio.security.private_file): an empty file left by a
    # crash would break every login after the restart.
    if private_file.create(path, value + b"\n"):
        return value
    st = path.lstat()
    if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077:
        raise ValueError(f"refusing to use {path}: it must be a regular file readable by its owner only "
                         f"(chmod 600 {path})")
    existing = path.read_bytes().strip()
    if not existing:  # left by a version that wrote it without syncing: replace it rather than sign with b""
        private_file.replace(path, value + b"\n")
        return value
    return existing


def build_auth_state(settings: Settings, db: Database) -> AuthState:
    """Create the admin on an empty install (printing its key once), load keys, teach the redactor."""
    data_dir = settings.resolved_data_dir
    store = SecretStore(db, data_dir, settings.encryption_key, default_redactor)
    store.load_redactors()  # an unreadable row is logged and shown by /api/health, not fatal
    bootstrap = users.ensure_bootstrap_admin(db, settings.admin_api_key)
    if bootstrap.api_key is not None:
        # Written straight to the console, not through structlog: the log redactor would mask it, and
        # this is the one moment the admin is meant to see it.
        sys.stderr.write(
            "\n  Optio created the admin user of the default workspace.\n"
            f"  Admin API key (shown once, store it now): {bootstrap.api_key}\n"
            "  Use it with: export OPTIO_TOKEN=<key>   or   optio login\n\n"
        )
        sys.stderr.flush()
    return AuthState(secrets=store, session_secret=load_session_secret(data_dir, settings.session_secret),
                     bootstrap=bootstrap, redactor=default_redactor)
