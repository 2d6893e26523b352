"""`optio secret ...`: set, list and remove secrets; values go in and are never printed back."""

from __future__ import annotations

import sys

import typer
from rich.table import Table

from optio.cli.common import AS_JSON, client_from, console, handle_errors, print_json, print_table

app = typer.Typer(help="Workspace and repo secrets (write-only values, injected into runs that name them).",
                  no_args_is_help=True)


@app.command("set")
@handle_errors
def set_secret(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Secret name (an environment variable name)"),
    value: str | None = typer.Option(None, "--value", help="The value; read from stdin (or prompted) if omitted"),
    repo: str | None = typer.Option(None, "--repo", help="Scope the secret to this repo"),
) -> None:
    """Create or replace a secret; its value is never shown again."""
    if value is None:
        value = sys.stdin.read().rstrip("\n") if not sys.stdin.isatty() else typer.prompt(
            f"value for {name}", hide_input=True)
    body = {"value": value, "repo": repo} if repo else {"value": value}
    out = client_from(ctx).request("PUT", f"/api/secrets/{name}", json=body)
    scope = f"repo {out['repo_id']}" if out["scope"] == "repo" else "workspace"
    console.print(f"secret {out['name']} {'created' if out['created'] else 'updated'} ({scope} scope)")


@app.command("list")
@handle_errors
def list_secrets(
    ctx: typer.Context,
    repo: str | None = typer.Option(None, "--repo", help="Also the secrets of this repo"),
    as_json: bool = AS_JSON,
) -> None:
    """Secret names and scopes (never values)."""
    items = client_from(ctx).get("/api/secrets", params={"repo": repo} if repo else None)
    if as_json:
        print_json(items)
        return
    table = Table("NAME", "SCOPE", "REPO", "KEY VERSION", "UPDATED")
    for s in items:
        table.add_row(s["name"], s["scope"], str(s["repo_id"] or ""), str(s["key_version"]), s["updated_at"][:19])
    print_table(table)


@app.command("rm")
@handle_errors
def remove(ctx: typer.Context, name: str = typer.Argument(..., help="Secret name"),
           repo: str | None = typer.Option(None, "--repo", help="Remove the repo's secret of that name")) -> None:
    """Delete a secret."""
    client_from(ctx).request("DELETE", f"/api/secrets/{name}", params={"repo": repo} if repo else None)
    console.print(f"secret {name} removed")


@app.command("rotate-key")
@handle_errors
def rotate_key(ctx: typer.Context) -> None:
    """Re-encrypt every secret under a new key and retire the old one (admin of the default workspace)."""
    out = client_from(ctx).post("/api/admin/encryption-key/rotate")
    console.print(f"encryption key rotated to version {out['current_version']}: {out['reencrypted']} secret(s) "
                  f"re-encrypted, version(s) {', '.join(map(str, out['previous_versions']))} retired")
