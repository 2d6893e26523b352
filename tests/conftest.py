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


@pytest.fixture(scope="module")
def module_optio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OptioServer]:
    """One server for a module whose tests each use resources of their own (repos by name, tasks by id).

    A module opts in by overriding `optio_server` with it; the suite then pays one server start per module
    instead of one per test. Remotes may live in any test's temporary directory (the session's base temp).
    """
    roots = str(tmp_path_factory.getbasetemp().resolve())
    server = OptioServer(tmp_path_factory.mktemp("server") / "data", env={"OPTIO_LOCAL_REMOTE_ROOTS": roots}).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test (skips locally without OPTIO_TEST_POSTGRES_URL)."""
    yield from postgres.fresh_database()


# The files that take minutes, longest first: they go to the workers before everything else, and the many
# short files fill the gaps at the end (with `--dist loadfile` each file goes to the next free worker in
# collection order, so a long file collected last would run alone at the end). Then by directory, slowest
# kind first.
_LONG_FILES = (
    "e2e/test_api_schema_fuzz.py",
    "e2e/test_forge_loop_matrix.py",
    "e2e/test_every_vendor_loop.py",
    "e2e/test_github_loop.py",
    "e2e/test_repo_loop.py",
    "e2e/test_ticket_intake.py",
    "faults/test_kill9_batch.py",
)
_DIRECTORIES = ("faults", "e2e", "integration", "unit")
_TESTS = Path(__file__).parent


def _run_order(item: pytest.Item) -> tuple[int, int]:
    try:
        relative = Path(str(item.path)).relative_to(_TESTS).as_posix()
    except ValueError:
        return (len(_LONG_FILES), len(_DIRECTORIES))
    if relative in _LONG_FILES:
        return (_LONG_FILES.index(relative), 0)
    top = relative.split("/", 1)[0]
    return (len(_LONG_FILES), _DIRECTORIES.index(top) if top in _DIRECTORIES else len(_DIRECTORIES))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_run_order)  # stable: a file's own tests keep their order
