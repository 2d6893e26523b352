"""`optio trigger ...`: start a job now, on a schedule, or from a signed webhook."""

from __future__ import annotations

import typer
from rich.table import Table

from optio.cli.common import AS_JSON, client_from, console, handle_errors, parse_params, print_json, print_table

app = typer.Typer(help="Triggers: run a job now, on a cron schedule, when a signed webhook arrives, or per ticket.",
                  no_args_is_help=True)


def _map(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"expected PARAM=$.path, got {item!r}", param_hint="--map")
        out[name] = path
    return out


@app.command("create")
@handle_errors
def create(
    ctx: typer.Context,
    target: str = typer.Option(..., "--target", help="The job's (or blueprint's) name or id"),
    kind: str = typer.Option(..., "--type", help="manual, schedule, webhook or ticket"),
    target_type: str = typer.Option("job", "--target-type", help="What the trigger starts: job or blueprint"),
    cron: str | None = typer.Option(None, "--cron", help="Schedule: cron expression, e.g. '0 9 * * 1-5'"),
    timezone: str | None = typer.Option(None, "--timezone", "--tz", help="Schedule: IANA time zone (default UTC)"),
    param: list[str] | None = typer.Option(None, "--param", "-p", help="KEY=VALUE given on every fire (repeatable)"),
    mapping: list[str] | None = typer.Option(None, "--map", help="Webhook: PARAM=$.path into the body (repeatable)"),
    source: str | None = typer.Option(None, "--source", help="Ticket: the ticket source's name"),
    label: str | None = typer.Option(None, "--label", help="Ticket: pick up tickets with this label"),
    state: str | None = typer.Option(None, "--state", help="Ticket: open (default) or closed"),
    assignee: str | None = typer.Option(None, "--assignee", help="Ticket: assigned to this user"),
    project: str | None = typer.Option(None, "--project", help="Ticket: the tracker's project (GitHub: milestone)"),
    as_json: bool = AS_JSON,
) -> None:
    """Create a trigger; a webhook's URL and signing secret are printed this once. A ticket trigger turns each
    matching ticket of a source into a repo task from a blueprint."""
    body = {"type": kind, "target_type": target_type, "target": target, "cron": cron, "timezone": timezone,
            "params": parse_params(param), "param_map": _map(mapping)}
    ticket = {"source": source, "label": label, "state": state, "assignee": assignee, "project": project}
    body.update({k: v for k, v in ticket.items() if v is not None})
    created = client_from(ctx).post("/api/triggers", body)
    if as_json:
        print_json(created)
        return
    console.print(f"created {created['type']} trigger [bold]{created['id']}[/bold] for {created['target_type']} "
                  f"{created['target']}")
    if created.get("next_due_at"):
        console.print(f"next due: {created['next_due_at']}")
    if created.get("secret"):
        console.print(f"url:    {created['url']}")
        console.print(f"secret: {created['secret']}  (shown once: store it now)")


@app.command("list")
@handle_errors
def list_triggers(ctx: typer.Context, as_json: bool = AS_JSON) -> None:
    """The workspace's triggers."""
    rows = client_from(ctx).get("/api/triggers")
    if as_json:
        print_json(rows)
        return
    table = Table("ID", "TYPE", "TARGET", "SCHEDULE", "STATE", "NEXT DUE", "LAST FIRED")
    for t in rows:
        schedule = f"{t['cron']} {t['timezone']}" if t["cron"] else (t.get("url") or "")
        if t["type"] == "ticket":
            schedule = f"source {t.get('source_id')} " + " ".join(f"{k}={v}" for k, v in
                                                                  (t.get("ticket_filter") or {}).items())
        table.add_row(str(t["id"]), t["type"], f"{t['target_type']} {t['target']}", schedule,
                      "paused" if t["paused"] else "active", t.get("next_due_at") or "", t.get("last_fired_at") or "")
    print_table(table)


def _simple(ctx: typer.Context, trigger: int, action: str, as_json: bool) -> None:
    data = client_from(ctx).post(f"/api/triggers/{trigger}/{action}")
    if as_json:
        print_json(data)
    else:
        console.print(f"trigger {data['id']} {'paused' if data['paused'] else 'active'}")


@app.command("pause")
@handle_errors
def pause(ctx: typer.Context, trigger: int = typer.Argument(..., help="Trigger id"), as_json: bool = AS_JSON) -> None:
    """Stop the trigger firing (a schedule skips its due times until resumed)."""
    _simple(ctx, trigger, "pause", as_json)


@app.command("resume")
@handle_errors
def resume(ctx: typer.Context, trigger: int = typer.Argument(..., help="Trigger id"), as_json: bool = AS_JSON) -> None:
    """Fire again; a schedule counts from now, not making up the ticks it skipped."""
    _simple(ctx, trigger, "resume", as_json)


@app.command("delete")
@handle_errors
def delete(ctx: typer.Context, trigger: int = typer.Argument(..., help="Trigger id")) -> None:
    """Delete the trigger (its runs stay)."""
    client_from(ctx).request("DELETE", f"/api/triggers/{trigger}")
    console.print(f"deleted trigger {trigger}")


@app.command("fire")
@handle_errors
def fire(
    ctx: typer.Context,
    trigger: int = typer.Argument(..., help="Trigger id"),
    param: list[str] | None = typer.Option(None, "--param", "-p", help="KEY=VALUE over the trigger's own"),
    as_json: bool = AS_JSON,
) -> None:
    """Run the trigger's target now."""
    data = client_from(ctx).post(f"/api/triggers/{trigger}/fire", {"params": parse_params(param)})
    if as_json:
        print_json(data)
    else:
        console.print(f"started {data['run_kind']} {data['run_id']}")
