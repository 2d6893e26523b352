"""The sandbox as tests use it: on when bubblewrap works, as the server's default ``auto`` is.

``OPTIO_SANDBOX=off`` in the test environment runs everything unconfined; ``OPTIO_SANDBOX=on`` (CI) makes a
missing bubblewrap an error. A test that is about the sandbox itself calls :func:`require_sandbox`: it
skips with the reason on a machine without bubblewrap, and fails in CI (``CI=true``), where it must run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from optio.runtime.sandbox import Limits, Sandbox, probe


def mode() -> str:
    return os.environ.get("OPTIO_SANDBOX", "auto")


def require_sandbox() -> None:
    found = probe()
    if found.works:
        return
    if os.environ.get("CI") == "true" or mode() == "on":
        pytest.fail(f"the sandbox must work here: {found.reason}")
    pytest.skip(f"sandbox unavailable: {found.reason}")


def server_mode() -> str:
    """``OPTIO_SANDBOX`` for a test server: as exported, else on when it works and explicitly off when not."""
    if "OPTIO_SANDBOX" in os.environ:
        return os.environ["OPTIO_SANDBOX"]
    return "auto" if probe().works else "off"


def runtime_sandbox(*hidden: Path, limits: Limits | None = None) -> Sandbox | None:
    """A sandbox for a directly built runtime, following the same rules as a test server."""
    if server_mode() == "off":
        return None
    require_sandbox()
    found = probe()
    assert found.bwrap is not None
    return Sandbox(bwrap=found.bwrap, hidden=tuple(hidden), limits=limits or Limits(), prlimit=found.prlimit)
