"""`optio agent-msg ...`: what code running inside a persistent agent's turn uses to reach its peers.

It reads the two variables every turn's process gets, ``OPTIO_API_URL`` (the server) and
``OPTIO_AGENT_TOKEN`` (a token good for this turn only, see `optio.security.agent_tokens`), and so
needs no login, no workspace and no API key. The same verbs are offered as MCP tools by
``optio agent-msg mcp`` (a stdio server, `optio.cli.agent_msg_mcp`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from optio.cli.client import ApiError, Client, fail
from optio.cli.common import AS_JSON, console, print_json, print_table
from optio.security.agent_tokens import TURN_FILE

API_URL_ENV = "OPTIO_API_URL"
TOKEN_ENV = "OPTIO_AGENT_TOKEN"
BASE = "/api/agent-msg"

app = typer.Typer(help="Reach the other persistent agents of this workspace from inside a turn "
                       f"(uses {API_URL_ENV} and {TOKEN_ENV}).", no_args_is_help=True)


class AgentMsgClient:
    """The inter-agent API's four verbs over HTTP; raises ApiError with the server's message."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.http = Client(url=url, token=token, timeout=timeout)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> AgentMsgClient:
        env = dict(os.environ) if env is None else env
        url, token = env.get(API_URL_ENV, ""), env.get(TOKEN_ENV, "")
        if (not url or not token) and env.get("HOME"):
            url, token = _turn_file(Path(env["HOME"]) / TURN_FILE) or (url, token)
        if not url or not token:
            raise ApiError(0, "not_in_turn", f"{API_URL_ENV} and {TOKEN_ENV} are not set: `optio agent-msg` "
                                             "works only inside a persistent agent's turn")
        return cls(url, token)

    def peers(self) -> list[dict[str, Any]]:
        return list(self.http.get(f"{BASE}/peers")["peers"])

    def send(self, slug: str, text: str, type_: str = "text") -> dict[str, Any]:
        return dict(self.http.post(f"{BASE}/send", {"to": slug, "body": text, "type": type_}))

    def broadcast(self, text: str, type_: str = "text") -> dict[str, Any]:
        return dict(self.http.post(f"{BASE}/broadcast", {"body": text, "type": type_}))

    def inbox(self, pending_only: bool = False) -> list[dict[str, Any]]:
        params = {"pending": "true"} if pending_only else None
        return list(self.http.get(f"{BASE}/inbox", params=params)["messages"])


def _turn_file(path: Path) -> tuple[str, str] | None:
    """The URL and token the turn also wrote under HOME (for a process started with a filtered environment)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return str(data["api_url"]), str(data["token"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _client() -> AgentMsgClient:
    try:
        return AgentMsgClient.from_env()
    except ApiError as exc:
        raise fail(exc.message) from None


def _run(call: Any) -> Any:
    try:
        return call()
    except ApiError as exc:
        raise fail(exc.message, 2 if exc.status in (401, 404) else 1) from None


@app.command("peers")
def peers(as_json: bool = AS_JSON) -> None:
    """The other agents of this workspace (archived ones excluded)."""
    rows = _run(lambda: _client().peers())
    if as_json:
        print_json({"peers": rows})
        return
    table = Table("SLUG", "NAME", "STATE")
    for row in rows:
        table.add_row(row["slug"], row.get("name") or "", row.get("state") or "")
    print_table(table)


@app.command("send")
def send(
    slug: str = typer.Argument(..., help="The peer's slug"),
    text: str = typer.Argument(..., help="The message"),
    as_json: bool = AS_JSON,
) -> None:
    """Send a message to one peer; it wakes for a turn to read it."""
    out = _run(lambda: _client().send(slug, text))
    if as_json:
        print_json(out)
        return
    console.print(f"sent message {out['id']} to {slug}")


@app.command("broadcast")
def broadcast(text: str = typer.Argument(..., help="The message"), as_json: bool = AS_JSON) -> None:
    """Send a message to every peer (not to yourself)."""
    out = _run(lambda: _client().broadcast(text))
    if as_json:
        print_json(out)
        return
    console.print(f"sent to {len(out['sent'])} peer(s): {', '.join(s['to'] for s in out['sent']) or 'none'}")


@app.command("inbox")
def inbox(
    pending: bool = typer.Option(False, "--pending", help="Only messages no turn has processed yet"),
    as_json: bool = AS_JSON,
) -> None:
    """Your own inbox, oldest first: what this turn drained and anything that arrived since."""
    rows = _run(lambda: _client().inbox(pending))
    if as_json:
        print_json({"messages": rows})
        return
    table = Table("ID", "FROM", "TYPE", "PROCESSED BY TURN", "BODY")
    for row in rows:
        table.add_row(str(row["id"]), row["sender"], row["type"], str(row.get("processed_by_turn_id") or ""),
                      row["body"])
    print_table(table)


@app.command("mcp")
def mcp() -> None:
    """Serve these verbs as MCP tools over stdio (for a vendor CLI's MCP configuration)."""
    from optio.cli.agent_msg_mcp import serve_stdio

    serve_stdio()
