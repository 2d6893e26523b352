"""What a running Optio needs to authenticate people and guard secrets, built once at start.

The session secret signs CSRF tokens. Like the encryption key it comes from the environment
(`OPTIO_SESSION_SECRET`) or from a file created in the data dir on first start, readable by the owner
only, so a restart keeps every signed-in browser's CSRF token valid.
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from optio.config import Settings
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
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077:
            raise ValueError(f"refusing to use {path}: it must be a regular file readable by its owner only "
                             f"(chmod 600 {path})") from None
        return path.read_bytes().strip()
    value = secrets.token_urlsafe(48).encode("ascii")
    with os.fdopen(fd, "wb") as handle:
        handle.write(value + b"\n")
    return value


def build_auth_state(settings: Settings, db: Database) -> AuthState:
    """Create the admin on an empty install (printing its key once), load keys, teach the redactor."""
    data_dir = settings.resolved_data_dir
    store = SecretStore(db, data_dir, settings.encryption_key, default_redactor)
    store.teach_redactor()
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
