"""Shared fixtures: a real Optio server over a temporary data dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.optio_server import OptioServer


@pytest.fixture
def optio_server(tmp_path: Path) -> Iterator[OptioServer]:
    server = OptioServer(tmp_path / "data").start()
    try:
        yield server
    finally:
        server.stop()
