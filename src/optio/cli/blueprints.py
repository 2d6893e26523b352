"""`optio blueprint ...`: saved repo-task definitions, run by hand or by a trigger."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from optio.cli.common import AS_JSON, client_from, console, handle_errors, parse_params, print_json, print_table

app = typer.Typer(help="Blueprints: saved repo-task definitions that spawn tasks by hand or from a trigger.",
                  no_args_is_help=True)


@app.command("create")
@handle_errors
def create(
    ctx: typer.Context,
    name: str = typer.Option(..., "--name", help="Unique blueprint name"),
    repo: str = typer.Option(..., "--repo", help="Repo name or id"),
    title: str = typer.Option(..., "--title", help="Task title template; {{PARAM}} allowed"),
    prompt: str = typer.Option(..., "--prompt", help="Task prompt template; {{PARAM}}, {{payload.x}} allowed"),
    agent: str | None = typer.Option(None, "--agent", help="Agent type (default: the repo's)"),
    command: str | None = typer.Option(None, "--command", help="Shell command (script agent)"),
    params_schema: str | None = typer.Option(None, "--params-schema", help="JSON params schema"),
    max_retries: int = typer.Option(1, "--max-retries", min=0, max=20, help="Attempts after a failed one"),
    priority: int = typer.Option(0, "--priority", help="Higher runs first"),
    secret: list[str] | None = typer.Option(None, "--secret", help="Secret the tasks may use (repeatable)"),
    require_approval: bool | None = typer.Option(None, "--require-approval/--no-require-approval",
                                                 help="Tasks need an approving review to merge (default: repo's)"),
    auto_merge: bool | None = typer.Option(None, "--auto-merge/--no-auto-merge",
                                           help="Tasks merge by themselves when green and approved (default: repo's)"),
    review_agent: str | None = typer.Option(None, "--review-agent",
                                            help="Review agent type for the tasks, or 'none' (default: repo's)"),
    review_command: str | None = typer.Option(None, "--review-command", help="Review script's shell command"),
    review_prompt: str | None = typer.Option(None, "--review-prompt", help="Review prompt (default: repo's)"),
    as_json: bool = AS_JSON,
) -> None:
    """Save a repo-task definition."""
    review: dict[str, object] = {"require_approval": require_approval, "auto_merge": auto_merge,
                                 "review_prompt": review_prompt}
    if review_agent == "none":
        review["review_agent"] = False
    elif review_agent is not None:
        review["review_agent_type"] = review_agent
    if review_command is not None:
        review["review_agent_config"] = {"command": review_command}
    body: dict[str, object] = {
        "name": name, "repo": repo, "title_template": title, "prompt_template": prompt, "agent_type": agent,
        "agent_config": {"command": command} if command is not None else {}, "max_retries": max_retries,
        "priority": priority, "secret_names": secret or [],
        "review_settings": {k: v for k, v in review.items() if v is not None}}
    if params_schema is not None:
        try:
            body["params_schema"] = json.loads(params_schema)
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--params-schema") from None
    data = client_from(ctx).post("/api/blueprints", body)
    if as_json:
        print_json(data)
    else:
        console.print(f"created blueprint [bold]{data['name']}[/bold] (id {data['id']}) for repo {data['repo']}")


@app.command("list")
@handle_errors
def list_blueprints(ctx: typer.Context, as_json: bool = AS_JSON) -> None:
    """The workspace's blueprints."""
    rows = client_from(ctx).get("/api/blueprints")
    if as_json:
        print_json(rows)
        return
    table = Table("ID", "NAME", "REPO", "TITLE", "PARAMS")
    for b in rows:
        table.add_row(str(b["id"]), b["name"], b["repo"], b["title_template"], ", ".join(b["params_schema"]))
    print_table(table)


@app.command("show")
@handle_errors
def show(ctx: typer.Context, blueprint: str = typer.Argument(..., help="Blueprint name or id"),
         as_json: bool = AS_JSON) -> None:
    """A blueprint's definition."""
    data = client_from(ctx).get(f"/api/blueprints/{blueprint}")
    if as_json:
        print_json(data)
        return
    for key in ("id", "name", "repo", "agent_type", "agent_config", "params_schema", "title_template",
                "prompt_template"):
        console.print(f"[bold]{key}:[/bold] {data[key]}")
    settings = data.get("review_settings") or {}
    if not settings:
        console.print("[bold]review and merge:[/bold] the repo's")
    for key, value in settings.items():
        console.print(f"[bold]{key}:[/bold] {json.dumps(value)}")


@app.command("run")
@handle_errors
def run(ctx: typer.Context, blueprint: str = typer.Argument(..., help="Blueprint name or id"),
        param: list[str] | None = typer.Option(None, "--param", "-p", help="KEY=VALUE (repeatable)"),
        as_json: bool = AS_JSON) -> None:
    """Start a repo task from the blueprint now."""
    task = client_from(ctx).post(f"/api/blueprints/{blueprint}/run", {"params": parse_params(param)})
    if as_json:
        print_json(task)
    else:
        console.print(f"started task [bold]{task['id']}[/bold]: {task['title']}")


@app.command("delete")
@handle_errors
def delete(ctx: typer.Context, blueprint: str = typer.Argument(..., help="Blueprint name or id")) -> None:
    """Delete the blueprint and its triggers (the tasks it made stay)."""
    client_from(ctx).request("DELETE", f"/api/blueprints/{blueprint}")
    console.print(f"deleted blueprint {blueprint}")
