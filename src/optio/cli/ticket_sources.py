"""`optio ticket-source ...`: the trackers work arrives from (GitHub/GitLab Issues, Linear, Jira, Notion, local)."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from optio.cli.common import AS_JSON, client_from, clip, console, handle_errors, print_json, print_table

app = typer.Typer(help="Ticket sources: trackers whose labelled tickets become repo tasks (see `trigger create "
                       "--type ticket`).", no_args_is_help=True)


def _options(items: list[str] | None, raw: str | None) -> dict[str, object]:
    out: dict[str, object] = {}
    if raw:
        try:
            loaded = json.loads(raw)
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--options") from None
        if not isinstance(loaded, dict):
            raise typer.BadParameter("expected a JSON object", param_hint="--options")
        out.update(loaded)
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--option")
        out[key] = value
    return out


@app.command("add")
@handle_errors
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A name for the source (unique in the workspace)"),
    kind: str = typer.Option(..., "--kind", help="local, github, gitlab (linear, jira, notion where installed)"),
    api_url: str | None = typer.Option(None, "--api-url", help="The tracker's API root (default: the public one)"),
    repo: str | None = typer.Option(None, "--repo", help="GitHub: owner/name of the repo whose issues to take"),
    project: str | None = typer.Option(None, "--project", help="GitLab: group/name of the project"),
    option: list[str] | None = typer.Option(None, "--option", "-o", help="Provider option KEY=VALUE (repeatable)"),
    options: str | None = typer.Option(None, "--options", help="Provider options as a JSON object"),
    credential: str | None = typer.Option(None, "--credential-secret", "--token-secret",
                                          help="Name of the secret holding the tracker token"),
    as_json: bool = AS_JSON,
) -> None:
    """Add a source; its webhook URL and secret are printed (the secret this once)."""
    opts = _options(option, options)
    if repo:
        opts["repo"] = repo
    if project:
        opts["project"] = project
    created = client_from(ctx).post("/api/ticket-sources", {"name": name, "kind": kind, "api_url": api_url,
                                                            "options": opts, "credential_secret": credential})
    if as_json:
        print_json(created)
        return
    console.print(f"ticket source [bold]{created['name']}[/bold] ({created['kind']}) added, id {created['id']}")
    console.print(f"webhook url:    {created['webhook_url']}")
    console.print(f"webhook secret: {created['webhook_secret']}  (shown once: give it to the tracker now)")


@app.command("list")
@handle_errors
def list_sources(ctx: typer.Context, as_json: bool = AS_JSON) -> None:
    """The workspace's ticket sources."""
    rows = client_from(ctx).get("/api/ticket-sources")
    if as_json:
        print_json(rows)
        return
    table = Table("ID", "NAME", "KIND", "OPTIONS", "LAST POLLED", "ERROR")
    for s in rows:
        table.add_row(str(s["id"]), s["name"], s["kind"], json.dumps(s["options"]), s.get("last_polled_at") or "",
                      clip(s.get("last_error") or "", 60))
    print_table(table)


@app.command("show")
@handle_errors
def show(ctx: typer.Context, source: str = typer.Argument(..., help="Source name or id"),
         as_json: bool = AS_JSON) -> None:
    """One source and its webhook URL."""
    s = client_from(ctx).get(f"/api/ticket-sources/{source}")
    if as_json:
        print_json(s)
        return
    console.print(f"[bold]{s['name']}[/bold] ({s['kind']}) id {s['id']}")
    if s["api_url"]:
        console.print(f"api url:     {s['api_url']}")
    console.print(f"options:     {json.dumps(s['options'])}")
    console.print(f"credential:  {s['credential_secret'] or '-'}")
    console.print(f"webhook url: {s['webhook_url']}")
    if s.get("last_error"):
        console.print(f"last error:  {s['last_error']}")


@app.command("delete")
@handle_errors
def delete(ctx: typer.Context, source: str = typer.Argument(..., help="Source name or id")) -> None:
    """Delete the source, its ticket triggers and links (the tasks stay)."""
    client_from(ctx).request("DELETE", f"/api/ticket-sources/{source}")
    console.print(f"deleted ticket source {source}")


@app.command("links")
@handle_errors
def links(ctx: typer.Context, as_json: bool = AS_JSON) -> None:
    """Provider tickets that became tasks, and the notes posted back to them."""
    rows = client_from(ctx).get("/api/ticket-links")
    if as_json:
        print_json(rows)
        return
    table = Table("SOURCE", "TICKET", "TITLE", "TASK", "POSTED")
    for r in rows:
        table.add_row(r["source"], r["key"], clip(r["title"], 50), str(r["task_id"]), ", ".join(r["posted"]))
    print_table(table)
