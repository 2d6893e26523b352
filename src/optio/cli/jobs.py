"""`optio job ...`: define jobs and start their runs."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from optio.cli.common import AS_JSON, client_from, console, handle_errors, parse_params, print_json, print_table
from optio.cli.runs import styled, wait_for

app = typer.Typer(help="Define jobs (reusable prompts with no repo) and run them.", no_args_is_help=True)


def _json_option(text: str, name: str) -> object:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint=name) from None


@app.command("create")
@handle_errors
def create(
    ctx: typer.Context,
    name: str = typer.Option(..., "--name", help="Unique job name"),
    prompt: str = typer.Option(..., "--prompt", help="Prompt template; {{PARAM}} placeholders allowed"),
    agent: str = typer.Option("script", "--agent", help="Agent type"),
    command: str | None = typer.Option(None, "--command", help="Shell command (script agent)"),
    model: str | None = typer.Option(None, "--model", help="Model for a vendor agent"),
    max_retries: int = typer.Option(0, "--max-retries", min=0, max=100,
                                   help="Attempts after a failed one"),
    max_concurrent: int | None = typer.Option(None, "--max-concurrent", min=1,
                                                 help="Runs of this job at once"),
    timeout: float | None = typer.Option(None, "--timeout", help="Seconds per attempt"),
    budget: float | None = typer.Option(None, "--budget", help="USD per run"),
    secret: list[str] | None = typer.Option(None, "--secret", help="Secret to inject (repeatable)"),
    params_schema: str | None = typer.Option(None, "--params-schema",
                                             help='JSON: {"N": {"type": "integer", "default": 3}, ...}'),
    as_json: bool = AS_JSON,
) -> None:
    """Define a job: a prompt template run by an agent, with {{PARAM}} placeholders filled per run."""
    agent_config: dict[str, object] = {}
    if command is not None:
        agent_config["command"] = command
    if model is not None:
        agent_config["model"] = model
    body = {
        "name": name, "prompt_template": prompt, "agent_type": agent, "agent_config": agent_config,
        "max_retries": max_retries, "max_concurrent_runs": max_concurrent, "timeout_s": timeout,
        "budget_usd": budget, "secret_names": secret or [],
    }
    if params_schema is not None:
        body["params_schema"] = _json_option(params_schema, "--params-schema")
    job = client_from(ctx).post("/api/jobs", body)
    if as_json:
        print_json(job)
    else:
        console.print(f"created job [bold]{job['name']}[/bold] (id {job['id']})")


@app.command("list")
@handle_errors
def list_jobs(ctx: typer.Context, as_json: bool = AS_JSON) -> None:
    """The workspace's jobs."""
    jobs = client_from(ctx).get("/api/jobs")
    if as_json:
        print_json(jobs)
        return
    table = Table("ID", "NAME", "AGENT", "RETRIES", "PARAMS")
    for j in jobs:
        table.add_row(str(j["id"]), j["name"], j["agent_type"], str(j["max_retries"]), ", ".join(j["params_schema"]))
    print_table(table)


@app.command("show")
@handle_errors
def show(ctx: typer.Context, job: str = typer.Argument(..., help="Job name or id"), as_json: bool = AS_JSON) -> None:
    """A job's definition."""
    data = client_from(ctx).get(f"/api/jobs/{job}")
    if as_json:
        print_json(data)
        return
    for key in ("id", "name", "agent_type", "agent_config", "max_retries", "params_schema", "prompt_template"):
        console.print(f"[bold]{key}:[/bold] {data[key]}")


@app.command("run")
@handle_errors
def run(
    ctx: typer.Context,
    job: str = typer.Argument(..., help="Job name or id"),
    param: list[str] | None = typer.Option(None, "--param", "-p", help="KEY=VALUE (repeatable)"),
    wait: bool = typer.Option(False, "--wait", help="Wait for the run to end; exit 0 only if it completed"),
    as_json: bool = AS_JSON,
) -> None:
    """Start a run of the job; with --wait, follow it to the end."""
    client = client_from(ctx)
    created = client.post(f"/api/jobs/{job}/runs", {"params": parse_params(param)})
    if not wait:
        if as_json:
            print_json(created)
        else:
            console.print(f"started run [bold]{created['id']}[/bold] of job {created['job_name']}")
        return
    final = wait_for(client, f"/api/runs/{created['id']}", label=f"run {created['id']}", quiet=as_json)
    if as_json:
        print_json(final)
    else:
        console.print(f"run {final['id']} {styled(final['state'])} after {final['attempts']} attempt(s)")
        if final.get("error"):
            console.print(f"[red]error:[/red] {final['error']}")
    raise typer.Exit(0 if final["state"] == "completed" else 1)


@app.command("update")
@handle_errors
def update(
    ctx: typer.Context,
    job: str = typer.Argument(..., help="Job name or id"),
    name: str | None = typer.Option(None, "--name", help="New name"),
    prompt: str | None = typer.Option(None, "--prompt", help="New prompt template"),
    command: str | None = typer.Option(None, "--command", help="New shell command (script agent)"),
    max_retries: int | None = typer.Option(None, "--max-retries", min=0, max=100, help="Attempts after a failed one"),
    params_schema: str | None = typer.Option(None, "--params-schema", help="New params schema (JSON)"),
    as_json: bool = AS_JSON,
) -> None:
    """Change a job's definition (only the options given); runs already started keep their prompt."""
    client = client_from(ctx)
    body: dict[str, object] = {}
    if name is not None:
        body["name"] = name
    if prompt is not None:
        body["prompt_template"] = prompt
    if command is not None:
        body["agent_config"] = {**client.get(f"/api/jobs/{job}")["agent_config"], "command": command}
    if max_retries is not None:
        body["max_retries"] = max_retries
    if params_schema is not None:
        body["params_schema"] = _json_option(params_schema, "--params-schema")
    data = client.request("PATCH", f"/api/jobs/{job}", json=body)
    if as_json:
        print_json(data)
    else:
        console.print(f"updated job [bold]{data['name']}[/bold] (id {data['id']})")


@app.command("clone")
@handle_errors
def clone(ctx: typer.Context, job: str = typer.Argument(..., help="Job name or id"),
          name: str = typer.Option(..., "--name", help="The copy's name"), as_json: bool = AS_JSON) -> None:
    """Copy a job under a new name."""
    data = client_from(ctx).post(f"/api/jobs/{job}/clone", {"name": name})
    if as_json:
        print_json(data)
    else:
        console.print(f"created job [bold]{data['name']}[/bold] (id {data['id']})")


@app.command("delete")
@handle_errors
def delete(ctx: typer.Context, job: str = typer.Argument(..., help="Job name or id")) -> None:
    """Delete a job with its finished runs and its triggers (refused while a run is unfinished)."""
    client_from(ctx).request("DELETE", f"/api/jobs/{job}")
    console.print(f"deleted job {job}")
