"""`optio agents ...`: which vendor CLIs are installed here and whether their credentials are set."""

from __future__ import annotations

import os

import typer

from optio.agents.doctor import doctor as run_doctor
from optio.agents.doctor import render_doctor, render_sandbox, sandbox_report
from optio.cli.common import AS_JSON, console, print_json

app = typer.Typer(help="Agent CLIs on this machine.", no_args_is_help=True)


@app.command("doctor")
def doctor(as_json: bool = AS_JSON) -> None:
    """Report each vendor CLI (on PATH, version, credentials, how to install) and the sandbox agents run in."""
    rows = run_doctor(dict(os.environ))
    sandbox = sandbox_report()
    if as_json:
        print_json({"agents": [row.__dict__ for row in rows], "sandbox": sandbox.__dict__})
        return
    console.print(render_doctor(rows))
    console.print(render_sandbox(sandbox))
