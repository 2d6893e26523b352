"""`optio task ...`: repo tasks from prompt to merged pull request."""

from __future__ import annotations

import sys
import time
from typing import Any

import typer
from rich.table import Table

from optio.cli.client import Client
from optio.cli.common import AS_JSON, client_from, clip, console, handle_errors, print_json, print_table
from optio.cli.runs import dump_logs, follow_logs, print_log_line, styled, wait_for

app = typer.Typer(help="Repo tasks: an agent works in a worktree and its branch becomes a pull request.",
                  no_args_is_help=True)

TASK_END = {"completed", "failed", "cancelled", "needs_attention"}
SHOW_KEYS = ("id", "state", "pr_number", "pr_state", "pr_ref", "pr_head_sha", "ci_status", "review_status",
             "resume_count", "human_resumes", "started_at", "finished_at", "cost_usd", "error", "note")


@app.command("new")
@handle_errors
def new(
    ctx: typer.Context,
    repo: str = typer.Option(..., "--repo", help="Repo name or id"),
    title: str = typer.Option(..., "--title", help="Title of the task, its commit and its PR"),
    prompt: str = typer.Option(..., "--prompt", help="What the agent is asked to do"),
    agent: str | None = typer.Option(None, "--agent", help="Agent type (default: the repo's)"),
    command: str | None = typer.Option(None, "--command", help="Script agent command"),
    model: str | None = typer.Option(None, "--model", help="Model for a vendor agent"),
    depends_on: list[int] | None = typer.Option(None, "--depends-on", help="Task id to wait for (repeatable)"),
    priority: int = typer.Option(0, "--priority", help="Higher starts first when the repo is busy"),
    max_retries: int = typer.Option(1, "--max-retries", min=0, max=20, help="Attempts after a failed one"),
    secret: list[str] | None = typer.Option(None, "--secret", help="Secret to inject (repeatable)"),
    wait: bool = typer.Option(False, "--wait", help="Wait until merged (exit 0) or stopped (exit 1)"),
    as_json: bool = AS_JSON,
) -> None:
    """Hand a prompt to an agent on a repo; its changes become a pull request the loop drives to merge."""
    config: dict[str, object] = {}
    if command is not None:
        config["command"] = command
    if model is not None:
        config["model"] = model
    body = {"repo": repo, "title": title, "prompt": prompt, "agent_type": agent, "agent_config": config,
            "depends_on": depends_on or [], "priority": priority, "max_retries": max_retries,
            "secret_names": secret or []}
    client = client_from(ctx)
    task = client.post("/api/repo-tasks", body)
    if not wait:
        if as_json:
            print_json(task)
        else:
            console.print(f"created task [bold]{task['id']}[/bold] on {task['repo']}")
        return
    final = wait_for(client, f"/api/repo-tasks/{task['id']}", label=f"task {task['id']}", quiet=as_json,
                     terminal=TASK_END)
    if as_json:
        print_json(final)
    else:
        console.print(f"task {final['id']} {styled(final['state'])}"
                      + (f" (PR #{final['pr_number']} {final['pr_state']})" if final["pr_number"] else ""))
        if final.get("error"):
            console.print(f"[red]error:[/red] {final['error']}")
    raise typer.Exit(0 if final["state"] == "completed" else 1)


@app.command("list")
@handle_errors
def list_tasks(
    ctx: typer.Context,
    repo: str | None = typer.Option(None, "--repo", help="Only tasks of this repo"),
    state: str | None = typer.Option(None, "--state", help="Only tasks in this state"),
    limit: int = typer.Option(50, "--limit", min=1, max=500, help="At most this many, newest first"),
    cursor: str | None = typer.Option(None, "--cursor", help="Start after the page that printed this cursor"),
    as_json: bool = AS_JSON,
) -> None:
    """Repo tasks, newest first, a page at a time."""
    params: dict[str, object] = {"limit": limit}
    if cursor:
        params["cursor"] = cursor
    if repo:
        params["repo"] = repo
    if state:
        params["state"] = state
    page = client_from(ctx).get("/api/repo-tasks", params=params)
    if as_json:
        print_json(page["items"])
        return
    table = Table("ID", "REPO", "TITLE", "STATE", "PR", "CI", "REVIEW", "RESUMES", "COST")
    for t in page["items"]:
        table.add_row(str(t["id"]), t["repo"], clip(t["title"], 40), styled(t["state"]),
                      f"#{t['pr_number']} {t['pr_state']}" if t["pr_number"] else "", t["ci_status"] or "",
                      t["review_status"] or "", str(t["resume_count"]), f"${t['cost_usd']:.4f}")
    print_table(table)
    if page["next_cursor"]:  # on stderr: a pipeline reading the table sees only its rows
        typer.echo(f"more: optio task list --cursor {page['next_cursor']}", err=True)


@app.command("show", help="A task's state, PR, CI, review status and each attempt's times.")
@handle_errors
def show(ctx: typer.Context, task_id: int = typer.Argument(..., help="The task's id"), as_json: bool = AS_JSON) -> None:
    client = client_from(ctx)
    task = client.get(f"/api/repo-tasks/{task_id}")
    if as_json:
        print_json(task)
        return
    console.print(f"[bold]Task {task['id']}[/bold] on {task['repo']}: {task['title']} — {styled(task['state'])}")
    for key in SHOW_KEYS[2:]:
        if task.get(key) not in (None, ""):
            console.print(f"  {key}: {task[key]}")
    if task.get("attempt_runs"):
        attempts = Table("ATTEMPT", "STARTED", "FINISHED", "STATUS", "EXIT")
        for a in task["attempt_runs"]:
            attempts.add_row(str(a["attempt"]), a["started_at"], a["finished_at"] or "", a["status"],
                             "" if a["exit_code"] is None else str(a["exit_code"]))
        console.print(attempts)
    table = Table("WHEN", "EVENT", "FROM", "TO", "REASON")
    for e in client.get(f"/api/repo-tasks/{task_id}/events"):
        table.add_row(e["created_at"][11:19], e["event"], e["from_state"] or "", e["to_state"] or "", e["reason"])
    console.print(table)


def _separator(section: dict[str, Any]) -> str:
    status = f" ({section['status']})" if section.get("status") else ""
    started = f" started {section['started_at'][:19].replace('T', ' ')}" if section.get("started_at") else ""
    return f"===== {section['source']}{status}{started} ====="


def _print_timeline(client: Client, task_id: int, printed: dict[tuple[str, int], int], open_: set[tuple[str, int]],
                    *, raw: bool) -> bool:
    """Print what is new in the task's timeline since `printed` (lines seen per section); True once it ended.

    A section first seen while its run was still going (`open_`) gets a closing line with its outcome.
    """
    got = client.get(f"/api/repo-tasks/{task_id}/timeline-logs")
    for section in got["sections"]:
        key = (section["kind"], section["ref"])
        seen = printed.get(key)
        if seen is None:
            sys.stdout.write(_separator(section) + "\n")
            seen = 0
            if section["finished_at"] is None:
                open_.add(key)
        for line in section["lines"][seen:]:
            print_log_line(line, raw=raw)
        printed[key] = len(section["lines"])
        if key in open_ and section["finished_at"] is not None:
            open_.discard(key)
            sys.stdout.write(f"----- {section['source']}: {section['status']} -----\n")
    sys.stdout.flush()
    return bool(got["done"])


@app.command("logs")
@handle_errors
def logs(ctx: typer.Context, task_id: int = typer.Argument(..., help="The task's id"),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the task ends"),
         after: int = typer.Option(0, "--after", help="Only the agent's lines after this sequence number"),
         raw: bool = typer.Option(False, "--raw", help="Vendor CLI output as printed"),
         poll: float = typer.Option(1.0, "--poll", min=0.1, max=60, help="Seconds between checks with --follow"),
         ) -> None:
    """The agent's attempts, the CI runs and the review runs of the task, in order, one separator each."""
    client = client_from(ctx)
    if after:  # the agent's own log from a sequence number, as before
        path = f"/api/repo-tasks/{task_id}/logs"
        if follow:
            follow_logs(client, path, after, raw=raw)
        else:
            dump_logs(client, path, after, raw=raw)
        return
    printed: dict[tuple[str, int], int] = {}
    open_: set[tuple[str, int]] = set()
    done = _print_timeline(client, task_id, printed, open_, raw=raw)
    while follow and not done:
        time.sleep(poll)
        done = _print_timeline(client, task_id, printed, open_, raw=raw)


def _intent(ctx: typer.Context, task_id: int, intent: str) -> None:
    task = client_from(ctx).post(f"/api/repo-tasks/{task_id}/{intent}")
    console.print(f"{intent} requested for task {task['id']} ({styled(task['state'])})")


@app.command("cancel")
@handle_errors
def cancel(ctx: typer.Context, task_id: int = typer.Argument(..., help="Task id")) -> None:
    """Stop the task: its agent is killed, its PR closed and its branch deleted."""
    _intent(ctx, task_id, "cancel")


@app.command("retry")
@handle_errors
def retry(ctx: typer.Context, task_id: int = typer.Argument(..., help="Task id")) -> None:
    """Start a failed or cancelled task again."""
    _intent(ctx, task_id, "retry")


@app.command("resume")
@handle_errors
def resume(ctx: typer.Context, task_id: int = typer.Argument(..., help="Task id")) -> None:
    """Resume a task that needs attention: its agent continues where it stopped."""
    _intent(ctx, task_id, "resume")


@app.command("message")
@handle_errors
def message(
    ctx: typer.Context,
    task_id: int = typer.Argument(..., help="Task id"),
    text: str = typer.Argument(..., help="The message"),
    interrupt: bool = typer.Option(False, "--interrupt", help="Stop the current attempt and resume with it at once"),
) -> None:
    """Talk to the task's agent: mid-run where its CLI takes input (Claude Code), else at its next start."""
    out = client_from(ctx).post(f"/api/repo-tasks/{task_id}/messages", {"text": text, "interrupt": interrupt})
    how = {"sent": "sent to the running agent", "delivered": "delivered",
           "queued": "queued for the agent's next start"}[out["status"]]
    if interrupt:
        how = "queued; the agent is stopped and resumed with it now"
    console.print(f"message #{out['id']} {how}")
