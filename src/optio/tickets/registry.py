"""Which provider serves which kind of ticket source, and building one for a source.

Each hosted provider is a factory `(config, credential) -> TicketProvider`, where `credential` is the plain
text of the source's named secret (None when it names none). The local tracker is built with the database
instead of a credential: `build_provider(config, credential, db=...)`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from optio.store.db import Database
from optio.tickets.base import TicketProvider, TicketProviderError, TicketSourceConfig
from optio.tickets.local import LocalTicketProvider

__all__ = ["PROVIDERS", "build_provider", "factory", "kinds"]

# Each provider's module, imported when a source of its kind is first built: their client libraries
# (python-gitlab, gql with graphql-core, notion-client) cost a server start about a second of CPU otherwise,
# and most servers use one tracker or none.
PROVIDERS: dict[str, str] = {
    "github": "optio.tickets.github:GitHubTicketProvider",
    "gitlab": "optio.tickets.gitlab:GitLabTicketProvider",
    "jira": "optio.tickets.jira:JiraProvider",
    "linear": "optio.tickets.linear:LinearProvider",
    "notion": "optio.tickets.notion:NotionProvider",
}


def factory(kind: str) -> Callable[[TicketSourceConfig, str | None], TicketProvider]:
    module, _, name = PROVIDERS[kind].partition(":")
    built: Callable[[TicketSourceConfig, str | None], TicketProvider] = getattr(importlib.import_module(module), name)
    return built


def kinds() -> tuple[str, ...]:
    return ("local", *sorted(PROVIDERS))



def build_provider(config: TicketSourceConfig, credential: str | None, *, db: Database | None = None
                   ) -> TicketProvider:
    if config.kind == "local":
        if db is None:
            raise TicketProviderError("the local tracker is built with the database")
        return LocalTicketProvider(db, config)
    if config.kind not in PROVIDERS:
        raise TicketProviderError(f"no ticket provider {config.kind!r}; known: {', '.join(kinds())}")
    return factory(config.kind)(config, credential)
