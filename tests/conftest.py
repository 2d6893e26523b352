"""Shared fixtures: a real Optio server over a temporary data dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support import postgres
from tests.support.optio_server import OptioServer


@pytest.fixture
def optio_server(tmp_path: Path) -> Iterator[OptioServer]:
    server = OptioServer(tmp_path / "data").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test (skips locally without OPTIO_TEST_POSTGRES_URL)."""
    yield from postgres.fresh_database()
