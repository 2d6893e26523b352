"""`optio pr ...`: the human side of the loop on the local forge."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from optio.cli.client import Client
from optio.cli.common import client_from, console, handle_errors, print_json

app = typer.Typer(help="Pull requests: list, inspect, approve, request changes, merge, close.",
                  no_args_is_help=True)

REF_HELP = "A task id (12, task:12) or a PR number (#3, pr:3)"
CI_TAIL_LINES = 20


def _resolve(client: Client, ref: str, repo: str | None) -> dict[str, Any]:
    params = {"ref": ref}
    if repo:
        params["repo"] = repo
    return client.get("/api/prs/resolve", params=params)  # type: ignore[no-any-return]


@app.command("list")
@handle_errors
def list_prs(ctx: typer.Context, state: str | None = typer.Option(None, "--state"),
             as_json: bool = typer.Option(False, "--json")) -> None:
    params = {"state": state} if state else {}
    prs = client_from(ctx).get("/api/prs", params=params)
    if as_json:
        print_json(prs)
        return
    table = Table("REPO", "#", "TASK", "TITLE", "STATE", "CI", "REVIEW", "MERGEABLE", "HEAD")
    for p in prs:
        table.add_row(p["repo"], str(p["number"]), str(p["task_id"] or ""), p["title"][:40], p["state"],
                      p["ci_status"] or "", p["review_status"] or "", str(p["mergeable"]), p["head_sha"][:10])
    console.print(table)


@app.command("show")
@handle_errors
def show(ctx: typer.Context, ref: str = typer.Argument(..., help=REF_HELP),
         repo: str | None = typer.Option(None, "--repo"), as_json: bool = typer.Option(False, "--json")) -> None:
    pr = _resolve(client_from(ctx), ref, repo)
    if as_json:
        print_json(pr)
        return
    console.print(f"[bold]#{pr['number']}[/bold] {pr['title']} ({pr['repo']}) — {pr['state']}")
    console.print(f"  {pr['head_branch']} @ {pr['head_sha'][:10]} → {pr['base_branch']}  "
                  f"mergeable: {pr['mergeable']}  CI: {pr['ci_status']}  review: {pr['review_status']}")
    if pr["conflicting_files"]:
        console.print(f"  conflicts: {', '.join(pr['conflicting_files'])}")
    for ci in pr["ci_runs"]:
        console.print(_ci_line(ci), markup=False)
    last = pr["ci_runs"][-1] if pr["ci_runs"] else None
    if last is not None and last["status"] in ("failing", "error") and last["output"]:
        console.print(f"  CI output of {last['head_sha'][:10]} (last {CI_TAIL_LINES} lines):", markup=False)
        for line in last["output"].rstrip("\n").splitlines()[-CI_TAIL_LINES:]:
            console.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)
    for r in pr["reviews"]:
        console.print(f"  review by {r['author']} on {r['head_sha'][:10]}: {r['verdict']} {r['comments'][:200]}")


def _ci_line(ci: dict[str, Any]) -> str:
    took = f", {ci['duration_s']:.1f}s" if ci.get("duration_s") is not None else ""
    kind = f" — could not run: {ci['failure_kind']}" if ci.get("failure_kind") else ""
    return f"  CI {ci['head_sha'][:10]}: {ci['status']} (exit {ci['exit_code']}{took}){kind}"


def _act(ctx: typer.Context, ref: str, repo: str | None, action: str, body: dict[str, Any] | None = None) -> None:
    client = client_from(ctx)
    pr = _resolve(client, ref, repo)
    after = client.post(f"/api/prs/{pr['id']}/{action}", body)
    console.print(f"#{after['number']} ({after['repo']}): {action.replace('-', ' ')} done — {after['state']}")


@app.command("approve")
@handle_errors
def approve(ctx: typer.Context, ref: str = typer.Argument(..., help=REF_HELP),
            repo: str | None = typer.Option(None, "--repo"), comment: str = typer.Option("", "--comment")) -> None:
    _act(ctx, ref, repo, "approve", {"comment": comment})


@app.command("request-changes")
@handle_errors
def request_changes(ctx: typer.Context, ref: str = typer.Argument(..., help=REF_HELP),
                    comment: str = typer.Option(..., "--comment"),
                    repo: str | None = typer.Option(None, "--repo")) -> None:
    _act(ctx, ref, repo, "request-changes", {"comment": comment})


@app.command("merge")
@handle_errors
def merge(ctx: typer.Context, ref: str = typer.Argument(..., help=REF_HELP),
          repo: str | None = typer.Option(None, "--repo"),
          force: bool = typer.Option(False, "--force", help="Admins only: merge past red CI or a missing "
                                                            "approval (recorded in the audit log)")) -> None:
    """Squash-merge; refused unless CI passed and the repo's approval rule holds on the head."""
    _act(ctx, ref, repo, "merge", {"force": True} if force else None)


@app.command("close")
@handle_errors
def close(ctx: typer.Context, ref: str = typer.Argument(..., help=REF_HELP),
          repo: str | None = typer.Option(None, "--repo")) -> None:
    _act(ctx, ref, repo, "close")
