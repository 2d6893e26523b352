"""Where the SaaS trackers' published API models are: npm packages `.ci/run` installs at pinned versions.

`.ci/run` installs them into ``$OPTIO_CI_CACHE/ticket-models`` (default ``~/.cache/optio-ci``) and exports
``OPTIO_TICKET_MODELS`` (its ``node_modules``); locally the same cache is used when present. A schema check
is skipped without them locally and fails in CI, like the GitHub OpenAPI check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

PACKAGES = {"@linear/sdk": "98.0.0", "jira.js": "6.2.0", "@notionhq/client": "5.26.0"}
ENV = "OPTIO_TICKET_MODELS"


def modules_dir() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    cache = Path(os.environ.get("OPTIO_CI_CACHE") or Path.home() / ".cache" / "optio-ci")
    return cache / "ticket-models" / "node_modules"


def package(name: str) -> Path | None:
    """The installed package at its pinned version, or None."""
    manifest = modules_dir() / name / "package.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("version") == PACKAGES[name]:
        return manifest.parent
    return None


def require(name: str) -> Path:
    found = package(name)
    if found is None:
        message = f"{name}@{PACKAGES[name]} is not installed under {modules_dir()} (.ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found
