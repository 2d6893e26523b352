"""`optio template ...`: the prompt template library (task, review and job prompts)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from optio.cli.common import AS_JSON, client_from, console, handle_errors, parse_params, print_json, print_table

app = typer.Typer(help="Prompt templates: workspace defaults and repo overrides of the task, review and job "
                       "prompts.", no_args_is_help=True)
KIND = typer.Option(..., "--kind", help="task, review or job")
REPO = typer.Option(None, "--repo", help="Repo name or id (its override); omitted: the workspace default")


def _query(repo: str | None) -> dict[str, str]:
    return {"repo": repo} if repo is not None else {}


@app.command("list")
@handle_errors
def list_templates(ctx: typer.Context, as_json: bool = AS_JSON) -> None:
    """Each kind's built-in text and every workspace default and repo override."""
    rows = client_from(ctx).get("/api/templates")
    if as_json:
        print_json(rows)
        return
    table = Table("KIND", "SOURCE", "REPO", "VERSION", "FIRST LINE")
    for t in rows:
        first = (t["body"].splitlines() or [""])[0]
        table.add_row(t["kind"], t["source"], t["repo"] or "", str(t["version"] or ""),
                      first[:60] + ("…" if len(first) > 60 else ""))
    print_table(table)


@app.command("show")
@handle_errors
def show(ctx: typer.Context, kind: str = KIND, repo: str | None = REPO, as_json: bool = AS_JSON) -> None:
    """The template the kind's prompts use (for the repo), where it comes from, and its variables."""
    data = client_from(ctx).get(f"/api/templates/{kind}", params=_query(repo))
    if as_json:
        print_json(data)
        return
    where = {"repo": f"repo override ({data['repo']})", "workspace": "workspace default",
             "builtin": "built-in"}.get(data["source"], data["source"])
    version = f", version {data['version']}" if data["version"] else ""
    console.print(f"[bold]{data['kind']} template[/bold]: {where}{version}")
    console.print("[bold]variables:[/bold]")
    for name, what in data["variables"].items():
        console.print(f"  {{{{{name}}}}}  {what}", markup=False)
    console.print("[bold]body:[/bold]")
    console.print(data["body"], markup=False, highlight=False)


@app.command("set")
@handle_errors
def set_template(
    ctx: typer.Context,
    kind: str = KIND,
    repo: str | None = REPO,
    file: Path | None = typer.Option(None, "--file", "-f", help="Read the template from this file ('-': stdin)"),
    body: str | None = typer.Option(None, "--body", help="The template text"),
    version: int | None = typer.Option(None, "--version", help="Refuse if the stored version is not this one"),
    as_json: bool = AS_JSON,
) -> None:
    """Set the workspace default, or with --repo the repo's override."""
    if (file is None) == (body is None):
        raise typer.BadParameter("give exactly one of --file and --body", param_hint="--file/--body")
    if file is not None:
        text = typer.get_text_stream("stdin").read() if str(file) == "-" else file.read_text(encoding="utf-8")
    else:
        text = body or ""
    payload: dict[str, object] = {"body": text, "repo": repo}
    if version is not None:
        payload["version"] = version
    data = client_from(ctx).request("PUT", f"/api/templates/{kind}", json=payload)
    if as_json:
        print_json(data)
    else:
        where = f"repo {data['repo']}" if data["repo"] else "the workspace"
        console.print(f"saved the {data['kind']} template of {where} (version {data['version']})")


@app.command("delete")
@handle_errors
def delete(ctx: typer.Context, kind: str = KIND, repo: str | None = REPO) -> None:
    """Remove the repo's override (or the workspace default); the next level applies again."""
    client_from(ctx).request("DELETE", f"/api/templates/{kind}", params=_query(repo))
    console.print(f"deleted the {kind} template of {'repo ' + repo if repo else 'the workspace'}")


@app.command("preview")
@handle_errors
def preview(
    ctx: typer.Context,
    kind: str = KIND,
    repo: str | None = REPO,
    param: list[str] | None = typer.Option(None, "--param", "-p",
                                           help="VARIABLE=VALUE (repeatable; params.NAME=V for a job's param); "
                                                "the others get sample values"),
    file: Path | None = typer.Option(None, "--file", "-f", help="Preview this template instead (unsaved)"),
    as_json: bool = AS_JSON,
) -> None:
    """Render the effective template (or --file) with the given values, as an agent would get it."""
    payload: dict[str, object] = {"repo": repo, "values": parse_params(param)}
    if file is not None:
        payload["body"] = file.read_text(encoding="utf-8")
    data = client_from(ctx).post(f"/api/templates/{kind}/preview", payload)
    if as_json:
        print_json(data)
    else:
        console.print(data["rendered"], markup=False, highlight=False, end="")
