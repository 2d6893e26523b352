"""Secret names a job, repo or task asks for: valid, existing and visible to it when it is created.

A name that does not resolve used to be accepted and then silently not injected, so a run failed later on
its own terms (or worse, ran without a credential). Visible means a secret of the caller's workspace, or of
the repo the thing belongs to; never another workspace's or another repo's.
"""

from __future__ import annotations

from collections.abc import Iterable

from optio.errors import Invalid
from optio.services.secrets import NAME_RE, scope_key
from optio.store import secrets as secret_store
from optio.store.session import Session


def require_visible(session: Session, workspace_id: int, names: Iterable[str], *, repo_id: int | None = None,
                    field: str = "secret_names") -> None:
    wanted = list(dict.fromkeys(names))
    for name in wanted:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise Invalid(f"{name!r} is not a secret name (letters, digits and _, not starting with a digit)",
                          field=field)
    if not wanted:
        return
    scopes = [scope_key(None)] + ([scope_key(repo_id)] if repo_id is not None else [])
    found = secret_store.existing_names(session, workspace_id, wanted, scopes)
    missing = [name for name in wanted if name not in found]
    if missing:
        where = "this workspace or this repo" if repo_id is not None else "this workspace"
        raise Invalid(f"secret {missing[0]!r} does not exist in {where}; set it first", field=field)
