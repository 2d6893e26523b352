"""The `optio` command."""

from __future__ import annotations

import typer

from optio.cli import agents, jobs, prs, repos, runs, tasks
from optio.config import Settings

app = typer.Typer(help="Optio: a self-hosted control plane for AI coding agents.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.add_typer(jobs.app, name="job")
app.add_typer(runs.app, name="run")
app.add_typer(repos.app, name="repo")
app.add_typer(tasks.app, name="task")
app.add_typer(prs.app, name="pr")
app.add_typer(agents.app, name="agents")


@app.callback()
def main(
    ctx: typer.Context,
    url: str | None = typer.Option(None, "--url", envvar="OPTIO_URL", help="Optio API base URL"),
    workspace: str | None = typer.Option(None, "--workspace", envvar="OPTIO_WORKSPACE"),
    token: str | None = typer.Option(None, "--token", envvar="OPTIO_TOKEN", help="API key"),
) -> None:
    settings = Settings()
    ctx.obj = {"url": url or settings.api_url, "workspace": workspace, "token": token}


@app.command()
def serve(
    host: str | None = typer.Option(None, "--host", help="Bind address (default OPTIO_HOST or 127.0.0.1)"),
    port: int | None = typer.Option(None, "--port", help="Port (default OPTIO_PORT or 8470)"),
) -> None:
    """Run the API, the reconciler and the local runtime in this process."""
    import uvicorn

    from optio.api.app import create_app
    from optio.server import configure_logging

    overrides: dict[str, object] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    settings = Settings(**overrides)  # type: ignore[arg-type]
    configure_logging(settings.log_level)
    typer.echo(f"Optio serving on http://{settings.host}:{settings.port} (data dir {settings.resolved_data_dir})",
               err=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")


if __name__ == "__main__":
    app()
