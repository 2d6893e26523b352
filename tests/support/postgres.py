"""A fresh PostgreSQL database per test on the server `scripts/start-test-postgres.sh` started.

`OPTIO_TEST_POSTGRES_URL` points at that server. Without it a test using `pg_url` skips locally and fails in
CI, which always starts the server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def server_url() -> str:
    """The server's URL, or skip (fail in CI) without one."""
    url = os.environ.get("OPTIO_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("OPTIO_TEST_POSTGRES_URL is not set; .ci/run starts PostgreSQL for these tests")
        pytest.skip("OPTIO_TEST_POSTGRES_URL not set (run scripts/start-test-postgres.sh)")
    return url


def fresh_database() -> Iterator[str]:
    """Create a uniquely named database, yield its URL, drop it (and its connections) afterwards."""
    with database_on(server_url()) as url:
        yield url


@contextmanager
def database_on(base: str, *, prefix: str = "optio_test") -> Iterator[str]:
    """A uniquely named database on the server at `base`, dropped (connections and all) on the way out."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
