"""`optio run ...`: inspect and steer job runs."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import typer
from rich.status import Status
from rich.table import Table

from optio.cli.client import ApiError, Client, err_console
from optio.cli.common import AS_JSON, client_from, clip, console, handle_errors, print_json, print_table

app = typer.Typer(help="Inspect and steer job runs.", no_args_is_help=True)

TERMINAL = {"completed", "failed", "cancelled"}
STATE_STYLE = {"completed": "green", "failed": "red", "cancelled": "yellow", "running": "cyan", "queued": "blue"}


def styled(state: str) -> str:
    return f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"


@app.command("list")
@handle_errors
def list_runs(
    ctx: typer.Context,
    job: str | None = typer.Option(None, "--job", help="Only runs of this job (name or id)"),
    state: str | None = typer.Option(None, "--state", help="Only runs in this state"),
    limit: int = typer.Option(50, "--limit", min=1, max=500, help="At most this many, newest first"),
    as_json: bool = AS_JSON,
) -> None:
    """Job runs, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if job:
        params["job"] = job
    if state:
        params["state"] = state
    page = client_from(ctx).get("/api/runs", params=params)
    if as_json:
        print_json(page["items"])
        return
    table = Table("ID", "JOB", "STATE", "ATTEMPTS", "COST", "CREATED", "ERROR")
    for r in page["items"]:
        table.add_row(str(r["id"]), r["job_name"], styled(r["state"]), str(r["attempts"]), f"${r['cost_usd']:.4f}",
                      r["created_at"][:19], clip(r["error"] or "", 60))
    print_table(table)


@app.command("show")
@handle_errors
def show(ctx: typer.Context, run_id: int = typer.Argument(..., help="Run id"), as_json: bool = AS_JSON) -> None:
    """A run with its attempts, cost and timeline."""
    client = client_from(ctx)
    run = client.get(f"/api/runs/{run_id}")
    if as_json:
        print_json(run)
        return
    console.print(f"[bold]Run {run['id']}[/bold] of job [bold]{run['job_name']}[/bold]: {styled(run['state'])}")
    console.print(f"attempts: {run['attempts']}  cost: ${run['cost_usd']:.4f}  tokens in/out: "
                  f"{run['input_tokens']}/{run['output_tokens']}")
    if run["error"]:
        console.print(f"[red]error:[/red] {run['error']}")
    events = client.get(f"/api/runs/{run_id}/events")
    table = Table("WHEN", "EVENT", "FROM", "TO", "REASON")
    for e in events:
        table.add_row(e["created_at"][11:19], e["event"], e["from_state"] or "", e["to_state"] or "", e["reason"])
    print_table(table)


def render_event(text: str) -> str | None:
    """One line for a stored agent event (Optio's event model), or None to hide it."""
    try:
        ev = json.loads(text)
    except ValueError:
        return text
    kind = ev.get("type")
    if kind == "text":
        return str(ev.get("text", ""))
    if kind == "thinking":
        return f"… {ev.get('text', '')}"
    if kind == "tool_use":
        return f"→ {ev.get('name')}: {ev.get('input_summary', '')}"
    if kind == "tool_result":
        mark = "✗" if ev.get("is_error") else "←"
        return f"  {mark} {str(ev.get('output', ''))[:300]}"
    if kind == "error":
        return f"! {ev.get('kind')}: {ev.get('message')}"
    if kind == "usage":
        cost = ev.get("cost_usd")
        price = "" if cost is None else f", ${cost:.4f}" + (" (imputed)" if ev.get("cost_imputed") else "")
        return f"· tokens in {ev.get('input_tokens', 0)} / out {ev.get('output_tokens', 0)}{price}"
    if kind == "session":
        return f"· session {ev.get('session_id')}"
    if kind == "user_message":
        return f"» {ev.get('text', '')}"
    if kind == "result":
        return f"{'✓' if ev.get('success') else '✗'} {ev.get('summary', '')}"
    return None


def print_log_line(line: dict[str, Any], *, raw: bool = False) -> None:
    stream = line["stream"]
    if stream == "raw" and not raw:
        return
    if stream == "event":
        if raw:
            return
        text = render_event(line["text"])
        if text is None:
            return
        sys.stdout.write(text + "\n")
        return
    (sys.stderr if stream == "stderr" else sys.stdout).write(line["text"] + "\n")


def dump_logs(client: Client, path: str, after: int = 0, *, raw: bool = False) -> int:
    while True:
        page = client.get(path, params={"after": after, "limit": 5000})
        for line in page["items"]:
            print_log_line(line, raw=raw)
        if not page["items"]:
            return after
        after = page["last_seq"]


def follow_logs(client: Client, path: str, after: int = 0, *, raw: bool = False) -> str:
    """Streams lines until the run ends; a stream the server dropped (this reader fell behind) is resumed."""
    while True:
        dropped_at: int | None = None
        for event, data in client.sse(path + "/stream", params={"after": after}):
            if event == "line":
                print_log_line(data, raw=raw)
                sys.stdout.flush()
                after = data["seq"]
            elif event == "end":
                return str(data.get("state", ""))
            elif event == "dropped":
                dropped_at = int(data.get("last_seq", after))
        if dropped_at is None:
            return ""
        after = dropped_at


@app.command("logs")
@handle_errors
def logs(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., help="Run id"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep streaming until the run ends"),
    after: int = typer.Option(0, "--after", help="Start after this sequence number"),
    raw: bool = typer.Option(False, "--raw", help="Vendor CLI output as printed, instead of Optio's events"),
) -> None:
    """A run's output; --follow streams it until the run ends."""
    client = client_from(ctx)
    path = f"/api/runs/{run_id}/logs"
    if follow:
        follow_logs(client, path, after, raw=raw)
    else:
        dump_logs(client, path, after, raw=raw)


@app.command("cancel")
@handle_errors
def cancel(ctx: typer.Context, run_id: int = typer.Argument(..., help="Run id")) -> None:
    """Stop the run (its agent is killed)."""
    run = client_from(ctx).post(f"/api/runs/{run_id}/cancel")
    console.print(f"cancel requested for run {run['id']} ({styled(run['state'])})")


@app.command("retry")
@handle_errors
def retry(ctx: typer.Context, run_id: int = typer.Argument(..., help="Run id")) -> None:
    """Run a failed or cancelled run again."""
    run = client_from(ctx).post(f"/api/runs/{run_id}/retry")
    console.print(f"retry requested for run {run['id']} ({styled(run['state'])})")


def stage_of(item: dict[str, Any]) -> str:
    """A run's or a task's stage as a person follows it: its state, and once it has a PR the PR, CI and review."""
    parts = [item["state"]]
    if item.get("attempts"):
        parts.append(f"attempt {item['attempts']}")
    if item.get("pr_number"):
        parts.append(f"PR #{item['pr_number']} {item.get('pr_state') or ''}".rstrip())
        if item.get("ci_status"):
            parts.append(f"CI {item['ci_status']}")
        if item.get("review_status"):
            parts.append(f"review {item['review_status']}")
    return parts[0] + (f" ({', '.join(parts[1:])})" if parts[1:] else "")


def wait_for(client: Client, path: str, *, label: str, quiet: bool = False,
             terminal: set[str] = TERMINAL, poll_s: float = 0.3) -> dict[str, Any]:
    """Poll until the run is terminal; each change of stage is one line on stderr (so also when piped, and
    beside --json, whose stdout stays the final object alone), under a live spinner on a terminal.

    States the run passed through between two polls come from its timeline, so a fast loop still shows each.
    """
    last_line = ""
    last_stage = ""
    after = 0
    seen_event = 0
    status = Status(f"{label}: starting", console=err_console) if not quiet and err_console.is_terminal else None
    if status:
        status.start()
    try:
        while True:
            events = _events(client, path)  # before the run, so the run is never behind its events
            run = client.get(path)
            passed, seen_event = _states_passed(events, seen_event, run["state"])
            for state in passed:
                if state != last_stage.split(" ", 1)[0]:
                    err_console.print(f"{label}: {state}", markup=False, highlight=False, soft_wrap=True)
                    last_stage = state
            stage = stage_of(run)
            if stage != last_stage:
                err_console.print(f"{label}: {stage}", markup=False, highlight=False, soft_wrap=True)
                last_stage = stage
            if status:
                try:
                    page = client.get(path + "/logs", params={"after": after, "limit": 1000})
                    if page["items"]:
                        after = page["last_seq"]
                        last_line = page["items"][-1]["text"][:80]
                except ApiError:
                    pass
                status.update(f"{label}: {stage} · {after} log lines · {last_line}")
            if run["state"] in terminal:
                return run
            time.sleep(poll_s)
    finally:
        if status:
            status.stop()


def _events(client: Client, path: str) -> list[dict[str, Any]]:
    try:
        events: list[dict[str, Any]] = client.get(path + "/events")
    except ApiError:
        return []
    return events


def _states_passed(events: list[dict[str, Any]], seen: int, current: str) -> tuple[list[str], int]:
    """The states entered since event `seen`, without the one the run is in now; and the last event's id."""
    entered = [e for e in events if e["id"] > seen and e.get("to_state") and e["to_state"] != e.get("from_state")]
    if not entered:
        return [], seen
    states = [e["to_state"] for e in entered]
    if states[-1] == current:
        states.pop()
    return states, max(e["id"] for e in entered)
