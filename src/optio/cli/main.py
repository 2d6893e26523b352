"""The `optio` command."""

from __future__ import annotations

import copy
import gc
import os
import sys

import typer
from typer.main import get_command_name

from optio.cli import account, agent_files, agents, config_file, jobs, prs, repos, runs, tasks, tickets
from optio.cli import agent_msg as agent_msg_cli
from optio.cli import agent_tools as agent_tools_cli
from optio.cli import blueprints as blueprint_cli
from optio.cli import events as event_cli
from optio.cli import notifications as notification_cli
from optio.cli import persistent_agents as persistent_agent_cli
from optio.cli import secrets as secret_cli
from optio.cli import templates as template_cli
from optio.cli import ticket_sources as ticket_source_cli
from optio.cli import triggers as trigger_cli

app = typer.Typer(help="Optio: a self-hosted control plane for AI coding agents.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.add_typer(jobs.app, name="job")
app.add_typer(runs.app, name="run")
app.add_typer(repos.app, name="repo")
app.add_typer(tasks.app, name="task")
app.add_typer(prs.app, name="pr")
app.add_typer(agents.app, name="agents")
app.add_typer(persistent_agent_cli.app, name="agent")
app.add_typer(tickets.app, name="ticket")
app.add_typer(ticket_source_cli.app, name="ticket-source")
app.add_typer(secret_cli.app, name="secret")
app.add_typer(trigger_cli.app, name="trigger")
app.add_typer(blueprint_cli.app, name="blueprint")
app.add_typer(notification_cli.app, name="webhook")
app.add_typer(template_cli.app, name="template")
app.add_typer(secret_cli.app, name="secrets", hidden=True)
app.add_typer(agent_tools_cli.mcp_app, name="mcp")
app.add_typer(agent_msg_cli.app, name="agent-msg")
persistent_agent_cli.app.command("apply")(agent_files.apply)
persistent_agent_cli.app.command("export")(agent_files.export)
app.add_typer(agent_tools_cli.skill_app, name="skill")
app.add_typer(account.workspace_app, name="workspace")
app.add_typer(account.apikey_app, name="apikey")
app.add_typer(account.member_app, name="member")
app.add_typer(account.user_app, name="user")
app.command("login")(account.login)
app.command("whoami")(account.whoami)
app.command("password")(account.password)
app.command("events")(event_cli.events)


def _default_url() -> str:
    """The server's own address from its settings: read only when neither --url, OPTIO_URL nor `optio login`
    named one, since loading the settings costs a command a noticeable share of its start."""
    from optio.config import Settings

    return Settings().api_url


@app.callback()
def main(
    ctx: typer.Context,
    url: str | None = typer.Option(None, "--url", envvar="OPTIO_URL",
                                   help="Optio server URL, e.g. http://127.0.0.1:8470 (or OPTIO_URL)"),
    workspace: str | None = typer.Option(None, "--workspace", envvar="OPTIO_WORKSPACE",
                                    help="Workspace slug to act in (default: the one `workspace switch` chose)"),
    token: str | None = typer.Option(None, "--token", envvar="OPTIO_TOKEN",
                                     help="API key (default: the one `optio login` stored)"),
) -> None:
    saved = config_file.load()
    ctx.obj = {"url": url or saved.get("url") or _default_url(), "workspace": workspace or saved.get("workspace"),
               "token": token or saved.get("token")}


@app.command()
def serve(
    host: str | None = typer.Option(None, "--host", help="Bind address (default OPTIO_HOST or 127.0.0.1)"),
    port: int | None = typer.Option(None, "--port", help="Port (default OPTIO_PORT or 8470)"),
    role: str | None = typer.Option(None, "--role", help="api (HTTP only), worker (reconcilers and sweeps; HTTP "
                                    "serves /api/health only) or all (default OPTIO_ROLE or all)"),
) -> None:
    """Run the API, the reconciler and the local runtime in this process (or one of them: --role)."""
    import uvicorn

    from optio.api.app import create_app
    from optio.config import Settings
    from optio.server import configure_logging, uvicorn_proxy_options

    overrides: dict[str, object] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    if role:
        if role not in ("api", "worker", "all"):
            typer.echo(f"error: --role must be api, worker or all, not {role!r}", err=True)
            raise typer.Exit(2)
        overrides["role"] = role
    settings = Settings(**overrides)  # type: ignore[arg-type]
    configure_logging(settings.log_level)
    if not settings.auth_enabled:
        if settings.host != "127.0.0.1":
            typer.echo(f"warning: OPTIO_AUTH=disabled, so binding 127.0.0.1 instead of {settings.host}", err=True)
        settings = Settings(**{**overrides, "host": "127.0.0.1"})  # type: ignore[arg-type]
        typer.echo("WARNING: authentication is DISABLED (OPTIO_AUTH=disabled): every local user and process on "
                   "this machine has full admin access. Use this only on a single-user laptop.", err=True)
    from optio.runtime.sandbox import SandboxUnavailable, from_settings

    try:
        sandboxed = from_settings(settings) is not None
    except SandboxUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if not sandboxed:
        typer.echo("WARNING: the agent sandbox is OFF: agents, CI and review commands run as this server's own "
                   "user and can read its data dir (database, keys). Use this only on a single-user machine.",
                   err=True)
    typer.echo(f"Optio serving on http://{settings.host}:{settings.port} as {settings.role} "
               f"(data dir {settings.resolved_data_dir})", err=True)
    application = create_app(settings)
    # What is alive now (modules, classes, the app: some 280,000 objects) lives as long as the process: out of
    # the collector's way, or every full collection walks all of it again: about 0.1 s each, and taking in a busy
    # agent's output (or streaming it to viewers) sets one off every second or so.
    gc.collect()
    gc.freeze()
    gc.enable()  # off while the command loaded (optio.cli.entry)
    # Live streams (the event stream above all) never end by themselves: give them a few seconds, then close.
    uvicorn.run(application, host=settings.host, port=settings.port, log_level="warning",
                timeout_graceful_shutdown=5, **uvicorn_proxy_options(settings))  # type: ignore[arg-type]


# The callback's options that take a value: skipped with their value when looking for the command's name.
_VALUE_OPTIONS = frozenset({"--url", "--workspace", "--token"})
# Top-level options that need the whole command tree (help lists every command; completion completes them).
_WHOLE_TREE_OPTIONS = frozenset({"--help", "--install-completion", "--show-completion"})


def _invoked_name(argv: list[str]) -> str | None:
    """The command or group `argv` invokes, or None when it asks for the whole tree (help, completion)."""
    args = iter(argv)
    for arg in args:
        if arg in _WHOLE_TREE_OPTIONS:
            return None
        if arg in _VALUE_OPTIONS:
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def app_for(argv: list[str]) -> typer.Typer:
    """`app` with only the command or group that `argv` invokes (when it names one), else the whole of it.

    Typer turns every registered command into a click command on each run: some 120 of them, a third of a
    short command's start. Only the invoked one is needed to parse, run and print its help; top-level help,
    shell completion and a mistyped name still get the whole tree.
    """
    name = None if any(k.endswith("_COMPLETE") for k in os.environ) else _invoked_name(argv)
    groups = [g for g in app.registered_groups if g.name == name]
    commands = [c for c in app.registered_commands
                if (c.name or get_command_name(getattr(c.callback, "__name__", ""))) == name]
    if name is None or len(groups) + len(commands) != 1:
        return app
    pruned = copy.copy(app)  # the same settings and callback; only the registered commands differ
    pruned.registered_groups = groups
    pruned.registered_commands = commands
    return pruned


def run() -> None:
    """Runs the command in `sys.argv` (see `optio.cli.entry`, which calls this with the collector off)."""
    argv = sys.argv[1:]
    command = app_for(argv)
    if _invoked_name(argv) != "serve":  # `serve` turns it on once its long-lived objects are frozen
        gc.enable()
    command()


if __name__ == "__main__":
    run()
