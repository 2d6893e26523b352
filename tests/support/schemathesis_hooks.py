"""Schemathesis hooks for the spec run: keep the fuzzer from revoking its own key or demoting itself.

Both would turn the rest of the run into 401/403s; every other value of those parameters is still
generated, and the two operations are exercised with real ids by the auth tests.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

PROTECTED_KEY_ID = os.environ.get("OPTIO_FUZZ_KEY_ID", "")
PROTECTED_USERNAME = os.environ.get("OPTIO_FUZZ_USERNAME", "admin")


@schemathesis.hook
def filter_path_parameters(ctx: Any, path_parameters: dict[str, Any] | None) -> bool:
    params = path_parameters or {}
    if str(params.get("key_id", "")) == PROTECTED_KEY_ID:
        return False
    return str(params.get("username", "")) != PROTECTED_USERNAME
