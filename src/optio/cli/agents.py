"""`optio agents ...`: which vendor CLIs are installed here and whether their credentials are set."""

from __future__ import annotations

import os

import typer

from optio.agents.doctor import doctor as run_doctor
from optio.agents.doctor import render_doctor
from optio.cli.common import console, print_json

app = typer.Typer(help="Agent CLIs on this machine.", no_args_is_help=True)


@app.command("doctor")
def doctor(as_json: bool = typer.Option(False, "--json")) -> None:
    """Report each vendor CLI: on PATH (and its version), credentials configured, and how to install it."""
    rows = run_doctor(dict(os.environ))
    if as_json:
        print_json([row.__dict__ for row in rows])
        return
    console.print(render_doctor(rows))
