"""`optio mcp ...` and `optio skill ...`: MCP servers and skills every run of a workspace (or repo) gets."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from optio.cli.client import fail
from optio.cli.common import AS_JSON, client_from, console, handle_errors, print_json, print_table

mcp_app = typer.Typer(help="MCP servers given to every agent run of the workspace or of one repo.",
                      no_args_is_help=True)
skill_app = typer.Typer(help="Skills (named instructions) given to every agent run of the workspace or of one repo.",
                        no_args_is_help=True)
REPO = typer.Option(None, "--repo", help="Scope to this repo (default: the whole workspace)")


def _scope(item: dict[str, object]) -> str:
    return f"repo {item['repo_id']}" if item["scope"] == "repo" else "workspace"


@mcp_app.command("add")
@handle_errors
def mcp_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Server name; Claude Code sees its tools as mcp__<name>__<tool>"),
    command: str | None = typer.Option(None, "--command", help="stdio server: the program (the sandbox must show it)"),
    arg: list[str] = typer.Option(None, "--arg", help="An argument of the command (repeatable)"),
    url: str | None = typer.Option(None, "--url", help="HTTP server: its URL"),
    env: list[str] = typer.Option(None, "--env", help="NAME=secret:SECRET_NAME (repeatable); from secrets only"),
    repo: str | None = REPO,
) -> None:
    """Add an MCP server: `--command PROG --arg A ...` (stdio) or `--url URL`."""
    pairs: dict[str, str] = {}
    for item in env or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise fail(f"--env {item!r}: write NAME=secret:SECRET_NAME")
        pairs[key] = value
    body = {"name": name, "command": command, "args": list(arg or []), "url": url, "env": pairs, "repo": repo}
    out = client_from(ctx).post("/api/mcp-servers", body)
    console.print(f"MCP server {out['name']} added ({_scope(out)} scope)")


@mcp_app.command("list")
@handle_errors
def mcp_list(ctx: typer.Context, repo: str | None = REPO, as_json: bool = AS_JSON) -> None:
    """MCP servers and their scopes; env shows the secrets it names, never values."""
    items = client_from(ctx).get("/api/mcp-servers", params={"repo": repo} if repo else None)
    if as_json:
        print_json(items)
        return
    table = Table("NAME", "SCOPE", "SERVER", "ENV")
    for s in items:
        server = s["url"] or " ".join([s["command"], *s["args"]])
        table.add_row(s["name"], _scope(s), server, " ".join(f"{k}={v}" for k, v in s["env"].items()))
    print_table(table)


@mcp_app.command("remove")
@handle_errors
def mcp_remove(ctx: typer.Context, name: str = typer.Argument(..., help="Server name"),
               repo: str | None = REPO) -> None:
    """Remove an MCP server."""
    client_from(ctx).request("DELETE", f"/api/mcp-servers/{name}", params={"repo": repo} if repo else None)
    console.print(f"MCP server {name} removed")


@skill_app.command("add")
@handle_errors
def skill_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Skill name"),
    text: str | None = typer.Option(None, "--text", help="The instructions"),
    file: Path | None = typer.Option(None, "--file", help="Read the instructions from this file now"),
    repo_path: str | None = typer.Option(None, "--repo-path", help="REPO:PATH, read from the repo when a run starts"),
    description: str = typer.Option("", "--description", help="One line: when the skill applies"),
    repo: str | None = REPO,
) -> None:
    """Add a skill from `--text`, `--file` or `--repo-path REPO:PATH`."""
    if file is not None:
        if text is not None:
            raise fail("give --text or --file, not both")
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise fail(f"cannot read {file}: {exc}") from None
    body = {"name": name, "text": text, "repo_path": repo_path, "description": description, "repo": repo}
    out = client_from(ctx).post("/api/skills", body)
    console.print(f"skill {out['name']} added ({_scope(out)} scope)")


@skill_app.command("list")
@handle_errors
def skill_list(ctx: typer.Context, repo: str | None = REPO, as_json: bool = AS_JSON) -> None:
    """Skills and their scopes."""
    items = client_from(ctx).get("/api/skills", params={"repo": repo} if repo else None)
    if as_json:
        print_json(items)
        return
    table = Table("NAME", "SCOPE", "SOURCE", "DESCRIPTION")
    for s in items:
        source = s["repo_path"] if s["source"] == "repo" else f"text ({len(s['text'] or '')} chars)"
        table.add_row(s["name"], _scope(s), source, s["description"])
    print_table(table)


@skill_app.command("remove")
@handle_errors
def skill_remove(ctx: typer.Context, name: str = typer.Argument(..., help="Skill name"),
                 repo: str | None = REPO) -> None:
    """Remove a skill."""
    client_from(ctx).request("DELETE", f"/api/skills/{name}", params={"repo": repo} if repo else None)
    console.print(f"skill {name} removed")
