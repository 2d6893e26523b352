"""Which provider serves which kind of ticket source, and building one for a source.

Each hosted provider is a factory `(config, credential) -> TicketProvider`, where `credential` is the plain
text of the source's named secret (None when it names none). The local tracker is built with the database
instead of a credential: `build_provider(config, credential, db=...)`.
"""

from __future__ import annotations

from collections.abc import Callable

from optio.store.db import Database
from optio.tickets import github, gitlab, jira, linear, notion
from optio.tickets.base import TicketProvider, TicketProviderError, TicketSourceConfig
from optio.tickets.local import LocalTicketProvider

__all__ = ["PROVIDERS", "build_provider", "kinds"]

PROVIDERS: dict[str, Callable[[TicketSourceConfig, str | None], TicketProvider]] = {
    "github": github.GitHubTicketProvider,
    "gitlab": gitlab.GitLabTicketProvider,
    "jira": jira.JiraProvider,
    "linear": linear.LinearProvider,
    "notion": notion.NotionProvider,
}


def kinds() -> tuple[str, ...]:
    return ("local", *sorted(PROVIDERS))



def build_provider(config: TicketSourceConfig, credential: str | None, *, db: Database | None = None
                   ) -> TicketProvider:
    if config.kind == "local":
        if db is None:
            raise TicketProviderError("the local tracker is built with the database")
        return LocalTicketProvider(db, config)
    factory = PROVIDERS.get(config.kind)
    if factory is None:
        raise TicketProviderError(f"no ticket provider {config.kind!r}; known: {', '.join(kinds())}")
    return factory(config, credential)
