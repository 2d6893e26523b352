"""Ticket sources: the trackers a workspace takes work from (create, list, show, delete), and building the
provider for one with its credential.

A source's credential is a named workspace secret; its webhook secret is generated here, shown once at
creation and stored sealed (like every secret). Its API URL passes the SSRF guard when saved and again on
every request the provider makes.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optio.errors import Invalid
from optio.security.crypto import Keyring, SecretDecryptError
from optio.security.ssrf import UnsafeURLError, check_url
from optio.services.secret_refs import require_visible
from optio.store import ticket_sources as store
from optio.store.db import Database
from optio.store.models import TicketSource
from optio.store.ticket_sources import aad_for
from optio.tickets.base import TicketProvider, TicketProviderError, TicketSourceConfig
from optio.tickets.registry import build_provider, kinds

if TYPE_CHECKING:
    from optio.services.secrets import SecretStore

# The option each hosted kind cannot work without (the other kinds check their own when built).
# What each tracker cannot work without, checked when a source is saved (any one of the alternatives).
REQUIRED_OPTION: dict[str, tuple[str, ...]] = {"github": ("repo",), "gitlab": ("project",), "jira": ("email",),
                                               "notion": ("database_id", "data_source_id")}
# Trackers with no public default API root: each customer's site is its own (https://SITE.atlassian.net).
NEEDS_API_URL = frozenset({"jira"})


@dataclass(frozen=True)
class Created:
    source: TicketSource
    webhook_secret: str


def create(db: Database, keyring: Keyring, workspace_id: int, data: dict[str, Any], *,
           allowlist: Sequence[str]) -> Created:
    kind = data["kind"]
    if kind not in kinds():
        raise Invalid(f"kind must be one of {', '.join(kinds())}", field="kind")
    options = dict(data.get("options") or {})
    need = REQUIRED_OPTION.get(kind, ())
    if need and not any(options.get(name) for name in need):
        raise Invalid(f"a {kind} source needs options.{' or options.'.join(need)}", field=f"options.{need[0]}")
    api_url = (data.get("api_url") or "").strip()
    if kind in NEEDS_API_URL and not api_url:
        raise Invalid(f"a {kind} source needs its site's URL (e.g. https://SITE.atlassian.net)", field="api_url")
    if api_url:
        try:
            check_url(api_url, allowlist=allowlist)
        except UnsafeURLError as exc:
            raise Invalid(str(exc), field="api_url") from None
        except ValueError as exc:
            raise Invalid(f"not a usable URL: {exc}", field="api_url") from None
    credential = data.get("credential_secret") or None
    if kind != "local" and not credential:
        raise Invalid(f"a {kind} source needs a credential secret (the name of a secret holding its token)",
                      field="credential_secret")
    with db.write() as session:
        if credential:
            require_visible(session, workspace_id, [credential], field="credential_secret")
        row = store.insert(session, workspace_id, {"name": data["name"], "kind": kind, "api_url": api_url,
                                                   "options": options, "credential_secret": credential})
        secret = "whsec_" + secrets.token_urlsafe(32)
        store.set_webhook_secret(row, keyring.encrypt(secret, aad=aad_for(row.id)))
        return Created(row, secret)


def list_sources(db: Database, workspace_id: int) -> list[TicketSource]:
    with db.read() as session:
        return store.list_sources(session, workspace_id)


def get(db: Database, workspace_id: int, ref: str | int) -> TicketSource:
    with db.read() as session:
        return store.find(session, workspace_id, ref)


def delete(db: Database, workspace_id: int, ref: str | int) -> None:
    """The source, its ticket triggers and its links (the tasks stay)."""
    with db.write() as session:
        store.delete(session, store.find(session, workspace_id, ref))


def config_of(row: TicketSource) -> TicketSourceConfig:
    return TicketSourceConfig(id=row.id, workspace_id=row.workspace_id, kind=row.kind, api_url=row.api_url or "",
                              options=dict(row.options or {}))


def webhook_secret(keyring: Keyring, row: TicketSource) -> str | None:
    if not row.webhook_secret_ciphertext:
        return None
    try:
        return keyring.decrypt(row.webhook_secret_ciphertext, aad=aad_for(row.id))
    except SecretDecryptError:
        return None


def provider_for(db: Database, vault: SecretStore | None, row: TicketSource) -> TicketProvider:
    """The provider for a source, with its credential read now (a changed secret applies at once)."""
    credential = None
    if row.credential_secret:
        if vault is None:
            raise TicketProviderError("the source's credential cannot be read here")
        credential = vault.env_for(row.workspace_id, [row.credential_secret]).get(row.credential_secret)
        if credential is None:
            raise TicketProviderError(f"the credential secret {row.credential_secret!r} is not set")
    return build_provider(config_of(row), credential, db=db)


def view(row: TicketSource, base_url: str) -> dict[str, Any]:
    return dict(id=row.id, name=row.name, kind=row.kind, api_url=row.api_url or "", options=row.options or {},
                credential_secret=row.credential_secret,
                webhook_url=f"{base_url.rstrip('/')}/api/ticket-hooks/{row.id}",
                last_polled_at=row.last_polled_at, last_error=row.last_error, created_at=row.created_at)
