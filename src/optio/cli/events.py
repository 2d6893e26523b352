"""`optio events`: what happens in the workspace, as it happens."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from optio.cli.common import client_from, handle_errors


def line_for(event: str, data: dict[str, Any]) -> str | None:
    """One readable line per event; None for the stream's own bookkeeping."""
    if event in ("state", "event"):
        change = f"{data['from_state']} → {data['to_state']}" if event == "state" else data["event"]
        reason = f"  {data['reason']}" if data.get("reason") else ""
        return f"#{data['event_id']}  {data['kind']} {data['run_id']}  {change}{reason}"
    if event == "log":
        return f"·  {data['kind']} {data['run_id']}  output up to line {data['last_seq']}"
    if event == "cost":
        imputed = " (imputed)" if data.get("cost_imputed") else ""
        return (f"$  {data['kind']} {data['run_id']}  ${data['cost_usd']:.4f}{imputed}, tokens in "
                f"{data['input_tokens']} / out {data['output_tokens']}")
    return None


@handle_errors
def events(
    ctx: typer.Context,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep streaming (Ctrl-C to stop)"),
    after: int | None = typer.Option(None, "--after", min=0,
                                     help="Replay events after this event id (default: from now)"),
    activity: bool = typer.Option(True, "--activity/--no-activity", help="Show log activity and cost updates"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line: {event, id, data}"),
) -> None:
    """State changes, PR/CI/review events, log activity and costs in the workspace; --follow keeps streaming.

    Without --follow, prints what happened after --after and exits once caught up.
    """
    client = client_from(ctx)
    params = {"after": after} if after is not None else None
    try:
        for event, data in client.sse("/api/events/stream", params=params):
            if event == "live" and not follow:
                return
            if event in ("hello", "live") or (not activity and event in ("log", "cost")):
                continue
            if as_json:
                sys.stdout.write(json.dumps({"event": event, "id": data.get("event_id"), "data": data}) + "\n")
            else:
                text = line_for(event, data)
                if text is not None:
                    sys.stdout.write(text + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        return
