"""Schemathesis hooks for the spec run.

Filters keep the fuzzer from revoking its own key or demoting itself: both would turn the rest of the run
into 401/403s; every other value of those parameters is still generated, and the two operations are
exercised with real ids by the auth tests.

Checks (enabled by name in the run's `-c` list) hold the API to its input rules on every generated case:
`control_characters_refused` — free text with a control character (newline and tab aside in multi-line
fields) sent to a resource that reaches git or a shell is never accepted; `strict_integers` — an integer
parameter written as anything but plain digits in range (`"1 "`, `"+1"`, `"1.0"`, `true`) is never accepted.
"""

from __future__ import annotations

import os
import unicodedata
from typing import Any

import schemathesis

PROTECTED_KEY_ID = os.environ.get("OPTIO_FUZZ_KEY_ID", "")
PROTECTED_USERNAME = os.environ.get("OPTIO_FUZZ_USERNAME", "admin")
# Routes whose free text reaches git, a shell or an agent's prompt.
TEXT_ROUTES = ("/api/jobs", "/api/repos", "/api/repo-tasks", "/api/tasks", "/api/tickets", "/api/prs", "/api/runs",
               "/api/blueprints", "/api/agents")
MULTILINE_FIELDS = {"prompt", "prompt_template", "description", "body", "ci_command", "review_prompt", "comment",
                    "default", "command", "system_prompt", "operator_manual"}
MULTILINE_CONTAINERS = {"agent_config", "review_agent_config", "params"}  # their values may be multi-line
MAX_INT = 2**63 - 1


@schemathesis.hook
def filter_path_parameters(ctx: Any, path_parameters: dict[str, Any] | None) -> bool:
    params = path_parameters or {}
    if str(params.get("key_id", "")) == PROTECTED_KEY_ID:
        return False
    return str(params.get("username", "")) != PROTECTED_USERNAME


def _controls(value: Any, field: str = "", multiline: bool = False) -> list[str]:
    """Field names under `value` holding a string with a control character not allowed there."""
    found: list[str] = []
    if isinstance(value, str):
        allowed = "\n\t" if multiline else ""
        if any(unicodedata.category(ch) in ("Cc", "Cs") and ch not in allowed for ch in value):
            found.append(field or "value")
    elif isinstance(value, dict):
        for key, item in value.items():
            name = f"{field}.{key}" if field else str(key)
            if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in str(key)):
                found.append(name)
            inner = multiline or field in MULTILINE_CONTAINERS or str(key) in MULTILINE_FIELDS
            found += _controls(item, name, inner)
    elif isinstance(value, list):
        for item in value:
            found += _controls(item, field, multiline)
    return found


@schemathesis.check
def control_characters_refused(ctx: Any, response: Any, case: Any) -> None:
    if not case.path.startswith(TEXT_ROUTES) or case.method.upper() not in ("POST", "PUT", "PATCH"):
        return
    bad = _controls(case.body) if isinstance(case.body, dict) else []
    if bad and 200 <= response.status_code < 300:
        raise AssertionError(f"control characters in {bad} were accepted ({response.status_code})")


def _integer_params(case: Any) -> list[tuple[str, Any]]:
    out = []
    for location, values in (("path", case.path_parameters), ("query", case.query)):
        for param in case.operation.definition.raw.get("parameters", []):
            if param.get("in") != location or (param.get("schema") or {}).get("type") != "integer":
                continue
            if values and param["name"] in values:
                out.append((param["name"], values[param["name"]]))
    return out


def _canonical(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0 <= value <= MAX_INT
    text = str(value)
    return text.isascii() and text.isdigit() and int(text) <= MAX_INT


@schemathesis.check
def strict_integers(ctx: Any, response: Any, case: Any) -> None:
    bad = [name for name, value in _integer_params(case) if not _canonical(value)]
    if bad and 200 <= response.status_code < 300:
        raise AssertionError(f"integer parameter(s) {bad} written loosely were accepted ({response.status_code})")
