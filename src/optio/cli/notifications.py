"""`optio webhook ...`: outgoing notification webhooks and their delivery log."""

from __future__ import annotations

import typer
from rich.table import Table

from optio.cli.common import AS_JSON, client_from, console, handle_errors, print_json, print_table

app = typer.Typer(help="Outgoing notification webhooks (signed JSON or Slack) and their deliveries.",
                  no_args_is_help=True)


@app.command("create")
@handle_errors
def create(
    ctx: typer.Context,
    url: str = typer.Option(..., "--url", help="Receiver URL (http/https; must pass the SSRF guard)"),
    fmt: str = typer.Option("optio", "--format", help="optio (signed JSON) or slack"),
    event: list[str] | None = typer.Option(None, "--event", help="Event to send (repeatable; default: all)"),
    as_json: bool = AS_JSON,
) -> None:
    """Add a receiver; an optio-format receiver's signing secret is printed this once."""
    data = client_from(ctx).post("/api/notifications/webhooks", {"url": url, "format": fmt, "events": event or []})
    if as_json:
        print_json(data)
        return
    console.print(f"created webhook [bold]{data['id']}[/bold] ({data['format']})")
    if data.get("secret"):
        console.print(f"secret: {data['secret']}  (shown once: store it now)")


@app.command("list")
@handle_errors
def list_webhooks(ctx: typer.Context, as_json: bool = AS_JSON) -> None:
    """The workspace's notification webhooks."""
    rows = client_from(ctx).get("/api/notifications/webhooks")
    if as_json:
        print_json(rows)
        return
    table = Table("ID", "FORMAT", "URL", "EVENTS")
    for w in rows:
        table.add_row(str(w["id"]), w["format"], w["url"], ", ".join(w["events"]) or "all")
    print_table(table)


@app.command("deliveries")
@handle_errors
def deliveries(ctx: typer.Context, webhook: int = typer.Argument(..., help="Webhook id"),
               as_json: bool = AS_JSON) -> None:
    """The delivery log of one webhook, newest first."""
    rows = client_from(ctx).get(f"/api/notifications/webhooks/{webhook}/deliveries")
    if as_json:
        print_json(rows)
        return
    table = Table("ID", "EVENT", "STATE", "ATTEMPTS", "LAST STATUS", "NEXT ATTEMPT", "ERROR")
    for d in rows:
        table.add_row(str(d["id"]), d["event"], d["state"], str(d["attempts"]), str(d["last_status"] or ""),
                      d["next_attempt_at"] if d["state"] == "pending" else "", d["last_error"] or "")
    print_table(table)


@app.command("delete")
@handle_errors
def delete(ctx: typer.Context, webhook: int = typer.Argument(..., help="Webhook id")) -> None:
    """Remove a receiver (with its delivery log)."""
    client_from(ctx).request("DELETE", f"/api/notifications/webhooks/{webhook}")
    console.print(f"deleted webhook {webhook}")
