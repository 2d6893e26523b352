"""The local tracker as a ticket provider: tickets in Optio's own database, comments beside them.

It is the one provider built with the database (the others speak HTTP to their tracker). Its webhook is
Optio's own signed form (`X-Optio-Timestamp`, `X-Optio-Signature: sha256=<hex HMAC(secret, "<ts>." + body)>`,
body `{"number": N}`), for scripts that file local tickets and want them picked up before the next poll.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from optio.security import signatures
from optio.store import tickets as ticket_store
from optio.store.db import Database
from optio.store.models import Ticket as TicketRow
from optio.tickets.base import (
    BadTicketSignature,
    Ticket,
    TicketEvent,
    TicketFilter,
    TicketProviderError,
    TicketSourceConfig,
)

MAX_SKEW_S = 300


class LocalTicketProvider:
    kind = "local"

    def __init__(self, db: Database, config: TicketSourceConfig) -> None:
        self.db, self.config = db, config

    def _ticket(self, row: TicketRow) -> Ticket:
        base = self.config.api_url.rstrip("/")
        return Ticket(external_id=str(row.number), key=f"#{row.number}", title=row.title, body=row.body or "",
                      url=f"{base}/tickets#ticket-{row.number}" if base else f"/tickets#ticket-{row.number}",
                      state="closed" if row.state == "closed" else "open", labels=tuple(row.labels or ()),
                      updated_at=row.updated_at)

    def _number(self, external_id: str) -> int:
        if not external_id.isdigit():
            raise TicketProviderError(f"{external_id!r} is not a local ticket number")
        return int(external_id)

    def list_tickets(self, flt: TicketFilter, *, limit: int = 100) -> list[Ticket]:
        with self.db.read() as session:
            rows = ticket_store.list_tickets(session, self.config.workspace_id, flt.state, limit=limit * 5)
            found = [self._ticket(r) for r in rows]
        return [t for t in found if t.matches(flt)][:limit]

    def get(self, external_id: str) -> Ticket:
        with self.db.read() as session:
            row = ticket_store.find_ticket(session, self.config.workspace_id, self._number(external_id))
            if row is None:
                raise TicketProviderError(f"local ticket {external_id} not found")
            return self._ticket(row)

    def comment(self, external_id: str, text: str) -> None:
        with self.db.write() as session:
            row = ticket_store.find_ticket(session, self.config.workspace_id, self._number(external_id))
            if row is None:
                raise TicketProviderError(f"local ticket {external_id} not found")
            ticket_store.add_comment(session, row, text)

    def close(self, external_id: str, comment: str | None = None) -> None:
        with self.db.write() as session:
            row = ticket_store.find_ticket(session, self.config.workspace_id, self._number(external_id))
            if row is None:
                raise TicketProviderError(f"local ticket {external_id} not found")
            if comment:
                ticket_store.add_comment(session, row, comment)
            ticket_store.close(row, "its task's pull request merged")

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, secret: str | None) -> list[TicketEvent]:
        lower = {k.lower(): v for k, v in headers.items()}
        ts = (lower.get("x-optio-timestamp") or "").strip()
        if not secret or not (ts.isascii() and ts.isdigit() and len(ts) <= 12):
            raise BadTicketSignature("missing signature or timestamp")
        if abs(time.time() - int(ts)) > MAX_SKEW_S:
            raise BadTicketSignature("stale timestamp")
        if not signatures.verify(secret, ts.encode("ascii") + b"." + body, lower.get("x-optio-signature")):
            raise BadTicketSignature("bad signature")
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return []
        number = data.get("number") if isinstance(data, dict) else None
        if not isinstance(number, int) or isinstance(number, bool):
            return []
        return [TicketEvent(external_id=str(number), action=str(data.get("action") or "changed"))]
