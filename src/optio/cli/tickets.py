"""`optio ticket ...`: the local issue tracker; `work` hands a ticket to an agent."""

from __future__ import annotations

import typer
from rich.table import Table

from optio.cli.common import AS_JSON, client_from, clip, console, handle_errors, print_json, print_table

app = typer.Typer(help="Local tickets: file work, hand it to an agent, see it closed on merge.",
                  no_args_is_help=True)


@app.command("new")
@handle_errors
def new(ctx: typer.Context, title: str = typer.Option(..., "--title", help="One-line summary"),
        body: str = typer.Option("", "--body", help="The details (the agent's prompt when worked on)"),
        repo: str | None = typer.Option(None, "--repo", help="Repo the ticket is about"),
        label: list[str] | None = typer.Option(None, "--label", "-l", help="A label (repeatable)"),
        as_json: bool = AS_JSON) -> None:
    """File a ticket."""
    ticket = client_from(ctx).post("/api/tickets", {"title": title, "body": body, "repo": repo,
                                                    "labels": label or []})
    if as_json:
        print_json(ticket)
    else:
        console.print(f"ticket [bold]{ticket['number']}[/bold] opened")


@app.command("list")
@handle_errors
def list_tickets(ctx: typer.Context, state: str | None = typer.Option(None, "--state", help="open or closed"),
                 as_json: bool = AS_JSON) -> None:
    """The workspace's tickets."""
    tickets = client_from(ctx).get("/api/tickets", params={"state": state} if state else {})
    if as_json:
        print_json(tickets)
        return
    table = Table("#", "TITLE", "STATE", "TASK")
    for t in tickets:
        table.add_row(str(t["number"]), clip(t["title"], 60), t["state"], str(t["task_id"] or ""))
    print_table(table)


@app.command("show")
@handle_errors
def show(ctx: typer.Context, number: int = typer.Argument(..., help="Ticket number"), as_json: bool = AS_JSON) -> None:
    """A ticket and the task working on it."""
    ticket = client_from(ctx).get(f"/api/tickets/{number}")
    if as_json:
        print_json(ticket)
        return
    console.print(f"[bold]#{ticket['number']}[/bold] {ticket['title']} — {ticket['state']}")
    if ticket["body"]:
        console.print(ticket["body"])
    if ticket["task_id"]:
        console.print(f"task: {ticket['task_id']}")


@app.command("close")
@handle_errors
def close(ctx: typer.Context, number: int = typer.Argument(..., help="Ticket number")) -> None:
    """Close a ticket by hand."""
    ticket = client_from(ctx).post(f"/api/tickets/{number}/close")
    console.print(f"ticket {ticket['number']} {ticket['state']}")


@app.command("work")
@handle_errors
def work(
    ctx: typer.Context,
    number: int = typer.Argument(..., help="Ticket number"),
    repo: str | None = typer.Option(None, "--repo", help="Default: the ticket's repo"),
    agent: str | None = typer.Option(None, "--agent", help="Agent type (default: the repo's)"),
    command: str | None = typer.Option(None, "--command", help="Script agent command"),
    as_json: bool = AS_JSON,
) -> None:
    """Hand the ticket to an agent as a repo task; the ticket closes when the task's PR merges."""
    body = {"repo": repo, "agent_type": agent, "agent_config": {"command": command} if command else {}}
    task = client_from(ctx).post(f"/api/tickets/{number}/work", body)
    if as_json:
        print_json(task)
    else:
        console.print(f"ticket {number} → task [bold]{task['id']}[/bold] on {task['repo']}")


@app.command("label")
@handle_errors
def label(ctx: typer.Context, number: int = typer.Argument(..., help="Ticket number"),
          add: list[str] | None = typer.Option(None, "--add", help="Label to add (repeatable)"),
          remove: list[str] | None = typer.Option(None, "--remove", help="Label to remove (repeatable)"),
          as_json: bool = AS_JSON) -> None:
    """Add or remove labels (a ticket trigger picks up a ticket that gains its label)."""
    ticket = client_from(ctx).post(f"/api/tickets/{number}/labels", {"add": add or [], "remove": remove or []})
    if as_json:
        print_json(ticket)
    else:
        console.print(f"ticket {ticket['number']}: {', '.join(ticket['labels']) or 'no labels'}")


@app.command("comments")
@handle_errors
def comments(ctx: typer.Context, number: int = typer.Argument(..., help="Ticket number"),
             as_json: bool = AS_JSON) -> None:
    """A ticket's comments (Optio's pick-up, PR and merge notes among them)."""
    rows = client_from(ctx).get(f"/api/tickets/{number}/comments")
    if as_json:
        print_json(rows)
        return
    for c in rows:
        console.print(f"[bold]{c['author']}[/bold] {c['created_at']}: {c['body']}")
