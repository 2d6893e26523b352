"""`optio login`, `optio whoami`, `optio password`, `optio workspace ...`, `optio apikey ...`,
`optio member ...` (a workspace admin's roles) and `optio user ...` (a server administrator's accounts)."""

from __future__ import annotations

import sys

import typer
from rich.table import Table

from optio.cli import config_file
from optio.cli.client import Client, fail
from optio.cli.common import AS_JSON, client_from, console, handle_errors, print_json, print_table

workspace_app = typer.Typer(help="List the workspaces you belong to and pick the one the CLI acts in.",
                            no_args_is_help=True)
apikey_app = typer.Typer(help="Your personal API keys (shown once at creation).", no_args_is_help=True)
member_app = typer.Typer(help="Members of the current workspace and their roles (admins change them).",
                         no_args_is_help=True)
user_app = typer.Typer(help="Every account on the server (server administrators only).", no_args_is_help=True)


def read_secret(label: str) -> str:
    """Prompted without echo on a terminal; piped, the first line of stdin (getpass would warn and echo)."""
    if sys.stdin.isatty():
        return str(typer.prompt(label, hide_input=True))
    return sys.stdin.readline().strip()


@handle_errors
def login(
    ctx: typer.Context,
    token: str | None = typer.Option(None, "--token", help="API key (optio_...); prompted for when omitted"),
) -> None:
    """Check an API key against the server and remember it for later commands."""
    obj = ctx.find_root().obj or {}
    key = token or read_secret("API key")
    if not key.strip():
        raise fail("no API key given (pass --token, type it, or pipe it on stdin)", code=2)
    me = Client(url=obj["url"], workspace=obj.get("workspace"), token=key.strip()).get("/api/me")
    path = config_file.save(token=key.strip(), url=obj["url"])
    console.print(f"signed in as [bold]{me['username']}[/bold] (workspace {me['workspace']['slug']}, "
                  f"role {me['workspace']['role']}); key stored in {path}")


@handle_errors
def whoami(ctx: typer.Context, as_json: bool = AS_JSON) -> None:
    """Who the CLI is signed in as, and in which workspace."""
    me = client_from(ctx).get("/api/me")
    if as_json:
        print_json(me)
        return
    console.print(f"{me['username']} in workspace {me['workspace']['slug']} as {me['workspace']['role']} "
                  f"(via {me['auth']})")


@workspace_app.command("list")
@handle_errors
def workspace_list(ctx: typer.Context, as_json: bool = AS_JSON) -> None:
    """Workspaces you belong to; * marks the current one."""
    client = client_from(ctx)
    items = client.get("/api/workspaces")
    current = client.get("/api/me")["workspace"]["slug"]
    if as_json:
        print_json(items)
        return
    table = Table("", "SLUG", "NAME", "ROLE")
    for w in items:
        table.add_row("*" if w["slug"] == current else "", w["slug"], w["name"], w["role"])
    print_table(table)


@workspace_app.command("switch")
@handle_errors
def workspace_switch(ctx: typer.Context, slug: str = typer.Argument(..., help="Workspace slug")) -> None:
    """Make SLUG the workspace later commands act in (must be one you belong to)."""
    items = client_from(ctx).get("/api/workspaces")
    if slug not in {w["slug"] for w in items}:
        raise typer.BadParameter(f"you are not a member of a workspace {slug!r}", param_hint="SLUG")
    config_file.save(workspace=slug)
    console.print(f"now using workspace [bold]{slug}[/bold]")


@apikey_app.command("create")
@handle_errors
def apikey_create(ctx: typer.Context, name: str = typer.Argument(..., help="A name to tell the key by"),
                  as_json: bool = AS_JSON) -> None:
    """Create a personal API key (printed once)."""
    key = client_from(ctx).post("/api/apikeys", {"name": name})
    if as_json:
        print_json(key)
        return
    console.print(f"API key {key['id']} ({name}) created. Store it now, it is not shown again:")
    typer.echo(key["key"])


@apikey_app.command("list")
@handle_errors
def apikey_list(ctx: typer.Context, as_json: bool = AS_JSON) -> None:
    """Your API keys (never the keys themselves)."""
    keys = client_from(ctx).get("/api/apikeys")
    if as_json:
        print_json(keys)
        return
    table = Table("ID", "NAME", "PREFIX", "CREATED", "LAST USED", "REVOKED")
    for k in keys:
        table.add_row(str(k["id"]), k["name"], k["prefix"] + "…", k["created_at"][:19],
                      (k["last_used_at"] or "never")[:19], (k["revoked_at"] or "")[:19])
    print_table(table)


@apikey_app.command("revoke")
@handle_errors
def apikey_revoke(ctx: typer.Context, key_id: int = typer.Argument(..., help="Key id (see `apikey list`)")) -> None:
    """Revoke one of your API keys."""
    key = client_from(ctx).request("DELETE", f"/api/apikeys/{key_id}")
    console.print(f"API key {key['id']} ({key['name']}) revoked")


@handle_errors
def password(
    ctx: typer.Context,
    first: bool = typer.Option(False, "--first", help="Set the first password of an account that has none"),
) -> None:
    """Change your own password (for the web UI); your other browser sessions are signed out.

    Reads the passwords from the terminal (or, without one, one per line from stdin: current, then new).
    """
    current = None if first else typer.prompt("Current password", hide_input=True)
    new = typer.prompt("New password (12 characters or more)", hide_input=True, confirmation_prompt=True)
    client_from(ctx).request("PUT", "/api/me/password", json={"current_password": current, "password": new})
    console.print("password changed; your other browser sessions were signed out")


@member_app.command("list")
@handle_errors
def member_list(ctx: typer.Context, as_json: bool = AS_JSON) -> None:
    """Members of the current workspace."""
    members = client_from(ctx).get("/api/members")
    if as_json:
        print_json(members)
        return
    table = Table("ID", "USERNAME", "NAME", "ROLE")
    for m in members:
        table.add_row(str(m["user_id"]), m["username"], m["display_name"], m["role"])
    print_table(table)


@member_app.command("set")
@handle_errors
def member_set(
    ctx: typer.Context,
    username: str = typer.Argument(..., help="Username"),
    role: str = typer.Option(..., "--role", help="admin, member or viewer"),
    create_api_key: bool = typer.Option(False, "--create-api-key",
                                        help="For a user a server administrator creates here: a first API key"),
    as_json: bool = AS_JSON,
) -> None:
    """Add USERNAME to the current workspace or change their role.

    A workspace admin can add only people it already shares a workspace with; a server administrator can
    also create a new user this way. Passwords are not set here (see `optio password`, `optio user`).
    """
    out = client_from(ctx).request("PUT", f"/api/members/{username}",
                                   json={"role": role, "create_api_key": create_api_key})
    if as_json:
        print_json(out)
        return
    verb = "created and added" if out["created"] else \
        f"changed from {out['previous_role']}" if out["previous_role"] else "added"
    console.print(f"{out['username']} {verb} as {out['role']}")
    if out.get("api_key"):
        console.print("API key for the new user (shown once, pass it on now):")
        typer.echo(out["api_key"])


@member_app.command("remove")
@handle_errors
def member_remove(ctx: typer.Context, username: str = typer.Argument(..., help="Username")) -> None:
    """Remove USERNAME from the current workspace."""
    client_from(ctx).request("DELETE", f"/api/members/{username}")
    console.print(f"{username} removed from the workspace")


@user_app.command("list")
@handle_errors
def user_list(ctx: typer.Context, as_json: bool = AS_JSON) -> None:
    """Every account on the server."""
    items = client_from(ctx).get("/api/users")
    if as_json:
        print_json(items)
        return
    table = Table("ID", "USERNAME", "EMAIL", "SSO", "SERVER ADMIN", "WORKSPACES")
    for u in items:
        table.add_row(str(u["id"]), u["username"], u["email"] or "", "yes" if u["sso"] else "",
                      "yes" if u["server_admin"] else "", ", ".join(f"{k}:{v}" for k, v in u["workspaces"].items()))
    print_table(table)


@user_app.command("reset-password")
@handle_errors
def user_reset_password(ctx: typer.Context, username: str = typer.Argument(..., help="Username")) -> None:
    """Set USERNAME's password (server administrators only); all of their browser sessions end."""
    new = typer.prompt("New password (12 characters or more)", hide_input=True, confirmation_prompt=True)
    client_from(ctx).request("PUT", f"/api/users/{username}/password", json={"password": new})
    console.print(f"password of {username} set; their browser sessions were signed out")
