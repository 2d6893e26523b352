"""`optio pr ...`: the human side of the loop on the local forge."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from optio.cli.client import ApiError, Client, fail
from optio.cli.common import AS_JSON, client_from, clip, console, handle_errors, print_json, print_table

app = typer.Typer(help="Pull requests: list, inspect, approve, request changes, merge, close.",
                  no_args_is_help=True)

REF_HELP = "The pull request as REPO#N (PR numbers are per repo); omit it and pass --task ID instead"
TASK_HELP = "Act on the pull request of this task instead of naming it as REPO#N"
FORMS = "name a pull request as REPO#N (e.g. demo#3) or a task's as --task ID"
CI_TAIL_LINES = 20
DIFF_SHOW_FILES = 30  # `pr show` lists this many files at most; `pr diff` lists them all


def parse_ref(ref: str | None, task: int | None) -> dict[str, str]:
    """The API's lookup for REPO#N or --task ID; anything else (a bare number above all) is refused, not guessed."""
    if task is not None:
        if ref:
            raise fail(f"give either REPO#N or --task, not both; {FORMS}", code=2)
        return {"ref": f"task:{task}"}
    if not ref:
        raise fail(f"no pull request given: {FORMS}", code=2)
    repo, sep, number = ref.strip().rpartition("#")
    if not sep or not repo or not number.isdigit():
        hint = f" (PR numbers are per repo; task {ref}'s PR is --task {ref})" if ref.strip().isdigit() else ""
        raise fail(f"{ref!r} is not a pull request reference{hint}: {FORMS}", code=2)
    return {"ref": f"#{int(number)}", "repo": repo}


def _resolve(client: Client, ref: str | None, task: int | None) -> dict[str, Any]:
    return client.get("/api/prs/resolve", params=parse_ref(ref, task))  # type: ignore[no-any-return]


def _diff(client: Client, ref: str | None, task: int | None) -> dict[str, Any]:
    return client.get("/api/prs/diff", params=parse_ref(ref, task))  # type: ignore[no-any-return]


def _diff_lines(diff: dict[str, Any]) -> list[str]:
    """`git diff --stat`-like lines: each file with its +/- counts, then the totals."""
    lines = []
    for f in diff["files"]:
        name = f"{f['old_path']} → {f['path']}" if f.get("old_path") else f["path"]
        counts = "binary" if f["binary"] else f"+{f['additions']} -{f['deletions']}"
        lines.append(f"  {f['status']:<8} {counts:<14} {name}")
    more = " (truncated: the forge listed only these)" if diff["truncated"] else ""
    lines.append(f"  {diff['changed_files']} files changed, +{diff['additions']} -{diff['deletions']}{more}")
    return lines


@app.command("list")
@handle_errors
def list_prs(ctx: typer.Context, state: str | None = typer.Option(None, "--state", help="open, merged or closed"),
             as_json: bool = AS_JSON) -> None:
    """Pull requests of the workspace, newest first."""
    params = {"state": state} if state else {}
    prs = client_from(ctx).get("/api/prs", params=params)
    if as_json:
        print_json(prs)
        return
    table = Table("REPO", "#", "FORGE", "TASK", "TITLE", "STATE", "CI", "REVIEW", "MERGEABLE", "HEAD")
    for p in prs:
        table.add_row(p["repo"], str(p["number"]), p.get("forge") or "local", str(p["task_id"] or ""),
                      clip(p["title"], 40), p["state"], p["ci_status"] or "", p["review_status"] or "",
                      str(p["mergeable"]), p["head_sha"][:10])
    print_table(table)


@app.command("show")
@handle_errors
def show(ctx: typer.Context, ref: str | None = typer.Argument(None, help=REF_HELP),
         task: int | None = typer.Option(None, "--task", help=TASK_HELP),
         as_json: bool = AS_JSON) -> None:
    """The pull request with its diff summary, CI runs and reviews."""
    client = client_from(ctx)
    pr = _resolve(client, ref, task)
    try:
        diff: dict[str, Any] | None = _diff(client, ref, task)
        diff_error = ""
    except ApiError as exc:  # a forge that cannot list the files now still shows the PR
        diff, diff_error = None, exc.message
    if as_json:
        print_json({**pr, "diff": diff})
        return
    console.print(f"[bold]#{pr['number']}[/bold] {pr['title']} ({pr['repo']}) — {pr['state']}")
    if pr.get("forge", "local") != "local":
        console.print(f"  on {pr['forge']} (read from the forge)")
    console.print(f"  {pr['head_branch']} @ {pr['head_sha'][:10]} → {pr['base_branch']}  "
                  f"mergeable: {pr['mergeable']}  CI: {pr['ci_status']}  review: {pr['review_status']}")
    if pr["conflicting_files"]:
        console.print(f"  conflicts: {', '.join(pr['conflicting_files'])}")
    if diff is not None:
        for line in _diff_lines(diff)[-1:] if len(diff["files"]) > DIFF_SHOW_FILES else _diff_lines(diff):
            console.print(line, markup=False, highlight=False)
    else:
        console.print(f"  diff: not available ({diff_error})", markup=False)
    for ci in pr["ci_runs"]:
        console.print(_ci_line(ci), markup=False)
    last = pr["ci_runs"][-1] if pr["ci_runs"] else None
    if last is not None and last["status"] in ("failing", "error") and last["output"]:
        console.print(f"  CI output of {last['head_sha'][:10]} (last {CI_TAIL_LINES} lines):", markup=False)
        for line in last["output"].rstrip("\n").splitlines()[-CI_TAIL_LINES:]:
            console.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)
    for r in pr["reviews"]:
        console.print(f"  review by {r['author']} on {r['head_sha'][:10]}: {r['verdict']} {r['comments'][:200]}")


@app.command("diff")
@handle_errors
def diff(ctx: typer.Context, ref: str | None = typer.Argument(None, help=REF_HELP),
         task: int | None = typer.Option(None, "--task", help=TASK_HELP), as_json: bool = AS_JSON) -> None:
    """The files the pull request changes, with lines added and deleted (local and hosted forges)."""
    found = _diff(client_from(ctx), ref, task)
    if as_json:
        print_json(found)
        return
    for line in _diff_lines(found):
        console.print(line, markup=False, highlight=False)


def _ci_line(ci: dict[str, Any]) -> str:
    took = f", {ci['duration_s']:.1f}s" if ci.get("duration_s") is not None else ""
    kind = f" — could not run: {ci['failure_kind']}" if ci.get("failure_kind") else ""
    return f"  CI {ci['head_sha'][:10]}: {ci['status']} (exit {ci['exit_code']}{took}){kind}"


def _act(ctx: typer.Context, ref: str | None, task: int | None, action: str,
         body: dict[str, Any] | None = None) -> None:
    client = client_from(ctx)
    pr = _resolve(client, ref, task)
    if pr.get("id") is None:
        raise fail(f"{pr['repo']}#{pr['number']} is on {pr.get('forge') or 'a hosted forge'}: {action} it there",
                   code=2)
    after = client.post(f"/api/prs/{pr['id']}/{action}", body)
    console.print(f"{after['repo']}#{after['number']}: {action.replace('-', ' ')} done — {after['state']}")


Ref = typer.Argument(None, help=REF_HELP, show_default=False)
Task = typer.Option(None, "--task", help=TASK_HELP)


@app.command("approve")
@handle_errors
def approve(ctx: typer.Context, ref: str | None = Ref, task: int | None = Task,
            comment: str = typer.Option("", "--comment", help="Optional comment with the approval")) -> None:
    """Approve the pull request's current head."""
    _act(ctx, ref, task, "approve", {"comment": comment})


@app.command("request-changes")
@handle_errors
def request_changes(ctx: typer.Context, ref: str | None = Ref, task: int | None = Task,
                    comment: str = typer.Option(..., "--comment", help="What to change (the agent is resumed "
                                                                       "with it)")) -> None:
    """Ask for changes; the task's agent is resumed with the comment."""
    _act(ctx, ref, task, "request-changes", {"comment": comment})


@app.command("merge")
@handle_errors
def merge(ctx: typer.Context, ref: str | None = Ref, task: int | None = Task,
          force: bool = typer.Option(False, "--force", help="Admins only: merge past red CI or a missing "
                                                            "approval (recorded in the audit log)")) -> None:
    """Squash-merge; refused unless CI passed and the repo's approval rule holds on the head."""
    _act(ctx, ref, task, "merge", {"force": True} if force else None)


@app.command("close")
@handle_errors
def close(ctx: typer.Context, ref: str | None = Ref, task: int | None = Task) -> None:
    """Close the pull request without merging it."""
    _act(ctx, ref, task, "close")


@app.command("rerun-ci")
@handle_errors
def rerun_ci(ctx: typer.Context, ref: str | None = Ref, task: int | None = Task) -> None:
    """Run the repo's CI again on the pull request's current head (e.g. after fixing a flaky runner)."""
    _act(ctx, ref, task, "rerun-ci")
