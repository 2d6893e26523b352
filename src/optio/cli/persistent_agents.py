"""`optio agent ...`: persistent agents: define them, send them messages, steer them, read their turns."""

from __future__ import annotations

import typer
from rich.table import Table

from optio.cli.common import AS_JSON, client_from, console, handle_errors, print_json, print_table
from optio.cli.runs import dump_logs, follow_logs

app = typer.Typer(help="Persistent agents: named, long-lived agents with an inbox; each message wakes a turn.",
                  no_args_is_help=True)


@app.command("create")
@handle_errors
def create(
    ctx: typer.Context,
    slug: str = typer.Option(..., "--slug", help="Unique per workspace: lowercase letters, digits and -"),
    agent: str = typer.Option("script", "--agent", help="Agent type: script, claude-code, codex, gemini, ..."),
    command: str | None = typer.Option(None, "--command", help="The script agent's shell command"),
    name: str | None = typer.Option(None, "--name", help="A display name (default: the slug)"),
    system_prompt: str = typer.Option("", "--system-prompt", help="Text every turn's prompt starts with"),
    operator_manual: str = typer.Option("", "--operator-manual", help="Instructions after the system prompt"),
    lifecycle: str = typer.Option("on-demand", "--lifecycle", help="always-on, sticky or on-demand"),
    idle_timeout: float = typer.Option(600.0, "--idle-timeout", help="Sticky: seconds a session stays warm"),
    secret: list[str] | None = typer.Option(None, "--secret", help="Secret injected into every turn (repeatable)"),
    max_cost_usd: float | None = typer.Option(None, "--max-cost-usd", help="Daily budget; reaching it pauses"),
    max_failures: int = typer.Option(3, "--max-failures", help="Failed turns in a row before the agent fails"),
    max_turn_s: float | None = typer.Option(None, "--max-turn-seconds", help="Wall-clock limit of one turn"),
    model: str | None = typer.Option(None, "--model", help="Vendor agents: the model"),
    as_json: bool = AS_JSON,
) -> None:
    """Create a persistent agent (idle until its first message)."""
    config: dict[str, object] = {}
    if command is not None:
        config["command"] = command
    if model is not None:
        config["model"] = model
    body = {"slug": slug, "name": name, "agent_type": agent, "agent_config": config, "system_prompt": system_prompt,
            "operator_manual": operator_manual, "lifecycle": lifecycle, "idle_timeout_s": idle_timeout,
            "secret_names": list(secret or []), "max_cost_usd": max_cost_usd,
            "max_consecutive_failures": max_failures, "max_turn_s": max_turn_s}
    created = client_from(ctx).post("/api/agents", body)
    if as_json:
        print_json(created)
        return
    console.print(f"created agent [bold]{created['slug']}[/bold] ({created['agent_type']}, {created['lifecycle']})")


@app.command("update")
@handle_errors
def update(
    ctx: typer.Context,
    slug: str = typer.Argument(..., help="Agent slug"),
    command: str | None = typer.Option(None, "--command", help="The script agent's new shell command"),
    system_prompt: str | None = typer.Option(None, "--system-prompt", help="New system prompt"),
    operator_manual: str | None = typer.Option(None, "--operator-manual", help="New operator manual"),
    lifecycle: str | None = typer.Option(None, "--lifecycle", help="always-on, sticky or on-demand"),
    max_cost_usd: float | None = typer.Option(None, "--max-cost-usd", help="New daily budget"),
    as_json: bool = AS_JSON,
) -> None:
    """Change an agent's definition; the next turn uses it."""
    client = client_from(ctx)
    body: dict[str, object] = {k: v for k, v in {"system_prompt": system_prompt, "operator_manual": operator_manual,
                                                 "lifecycle": lifecycle, "max_cost_usd": max_cost_usd}.items()
                               if v is not None}
    if command is not None:
        config = dict(client.get(f"/api/agents/{slug}")["agent_config"])
        config["command"] = command
        body["agent_config"] = config
    changed = client.request("PATCH", f"/api/agents/{slug}", json=body)
    if as_json:
        print_json(changed)
        return
    console.print(f"updated agent [bold]{changed['slug']}[/bold]")


@app.command("list")
@handle_errors
def list_agents(ctx: typer.Context, as_json: bool = AS_JSON) -> None:
    """The workspace's persistent agents."""
    rows = client_from(ctx).get("/api/agents")
    if as_json:
        print_json(rows)
        return
    table = Table("SLUG", "STATE", "AGENT", "LIFECYCLE", "TURNS", "PENDING", "FAILURES", "COST")
    for a in rows:
        state = a["state"] + (f" ({a['paused_reason']})" if a.get("paused_reason") else "")
        table.add_row(a["slug"], state, a["agent_type"], a["lifecycle"], str(a["turn_count"]),
                      str(a["pending_messages"]), str(a["consecutive_failures"]), f"${a['cost_usd']:.4f}")
    print_table(table)


@app.command("show")
@handle_errors
def show(ctx: typer.Context, slug: str = typer.Argument(..., help="Agent slug"), as_json: bool = AS_JSON) -> None:
    """One agent: its state, turns, inbox depth and failures."""
    a = client_from(ctx).get(f"/api/agents/{slug}")
    if as_json:
        print_json(a)
        return
    for key in ("slug", "name", "state", "paused_reason", "agent_type", "lifecycle", "turn_count", "pending_messages",
                "consecutive_failures", "max_consecutive_failures", "current_turn", "session_id", "cost_usd",
                "max_cost_usd", "secret_names", "error"):
        console.print(f"{key:<26} {a.get(key)}", markup=False, highlight=False)


@app.command("send")
@handle_errors
def send(ctx: typer.Context, slug: str = typer.Argument(..., help="Agent slug"),
         text: str = typer.Argument(..., help="The message"), as_json: bool = AS_JSON) -> None:
    """Send the agent a message: it wakes for a turn (or after the turn in progress)."""
    msg = client_from(ctx).post(f"/api/agents/{slug}/messages", {"body": text})
    if as_json:
        print_json(msg)
        return
    console.print(f"message {msg['id']} sent to {slug}")


@app.command("inbox")
@handle_errors
def inbox(ctx: typer.Context, slug: str = typer.Argument(..., help="Agent slug"),
          pending: bool = typer.Option(False, "--pending", help="Only messages no turn has processed"),
          as_json: bool = AS_JSON) -> None:
    """The agent's messages, oldest first."""
    rows = client_from(ctx).get(f"/api/agents/{slug}/messages", params={"pending": str(pending).lower()})
    if as_json:
        print_json(rows)
        return
    table = Table("ID", "FROM", "TYPE", "PROCESSED BY", "BODY")
    for m in rows:
        table.add_row(str(m["id"]), m["sender"], m["type"], str(m["processed_by_turn"] or ""), m["body"][:80])
    print_table(table)


@app.command("turns")
@handle_errors
def turns(ctx: typer.Context, slug: str = typer.Argument(..., help="Agent slug"), as_json: bool = AS_JSON) -> None:
    """The agent's turns, newest first."""
    rows = client_from(ctx).get(f"/api/agents/{slug}/turns")
    if as_json:
        print_json(rows)
        return
    table = Table("TURN", "STATE", "OUTCOME", "MESSAGES", "WAKE", "COST", "STARTED", "FINISHED")
    for t in rows:
        table.add_row(str(t["number"]), t["state"], t["outcome"] or "", str(len(t["message_ids"])), t["wake_reason"],
                      f"${t['cost_usd']:.4f}", t["started_at"], t["finished_at"] or "")
    print_table(table)


@app.command("logs")
@handle_errors
def logs(ctx: typer.Context, slug: str = typer.Argument(..., help="Agent slug"),
         turn: int = typer.Argument(..., help="Turn number"),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep streaming until the turn ends"),
         raw: bool = typer.Option(False, "--raw", help="Vendor CLI output as printed")) -> None:
    """One turn's output; --follow streams it until the turn ends."""
    client = client_from(ctx)
    path = f"/api/agents/{slug}/turns/{turn}/logs"
    if follow:
        follow_logs(client, path, 0, raw=raw)
    else:
        dump_logs(client, path, 0, raw=raw)


def _steer(intent: str, help_text: str) -> None:
    @handle_errors
    def command(ctx: typer.Context, slug: str = typer.Argument(..., help="Agent slug")) -> None:
        a = client_from(ctx).post(f"/api/agents/{slug}/{intent}")
        console.print(f"{intent} requested for agent {a['slug']} ({a['state']})")

    command.__doc__ = help_text
    app.command(intent)(command)


_steer("pause", "Pause the agent: a turn in progress stops; messages wait until it resumes.")
_steer("resume", "Resume a paused or failed agent; waiting messages are handled.")
_steer("restart", "End the turn in progress (its messages stay pending) and start over with a fresh session.")
_steer("archive", "Archive the agent for good: it takes no more messages.")
