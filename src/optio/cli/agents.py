"""`optio agents ...`: which vendor CLIs are installed here and whether their credentials are set."""

from __future__ import annotations

import os

import typer

from optio.cli.common import AS_JSON, console, print_json

app = typer.Typer(help="Agent CLIs on this machine.", no_args_is_help=True)


@app.command("doctor")
def doctor(as_json: bool = AS_JSON) -> None:
    """Report each vendor CLI (on PATH, version, credentials, how to install) and the sandbox agents run in."""
    # Here, not at the top: the server's settings it reads cost every other command their import.
    from optio.agents.doctor import doctor as run_doctor
    from optio.agents.doctor import render_doctor, render_sandbox, sandbox_report

    rows = run_doctor(dict(os.environ))
    sandbox = sandbox_report()
    if as_json:
        print_json({"agents": [row.__dict__ for row in rows], "sandbox": sandbox.__dict__})
        return
    console.print(render_doctor(rows))
    console.print(render_sandbox(sandbox))


@app.command("models")
def models(
    vendor: str = typer.Argument(..., help="Agent type: claude-code, codex, gemini, copilot or opencode"),
    as_json: bool = AS_JSON,
) -> None:
    """Known models of a vendor's CLI with their list prices (USD per million tokens) and reasoning efforts."""
    from rich.table import Table

    from optio.agents import models as vendor_models
    from optio.cli.client import fail
    from optio.cli.common import print_table

    try:
        known = vendor_models.known_models(vendor)
    except vendor_models.VendorOptionError as exc:
        raise fail(str(exc)) from None
    efforts = list(vendor_models.REASONING_EFFORTS.get(vendor, ()))
    if as_json:
        print_json({"vendor": vendor, "reasoning_efforts": efforts, "models": [
            {"model": m.name, "input_per_mtok": m.price.input, "output_per_mtok": m.price.output,
             "cache_read_per_mtok": m.price.cache_read, "cache_write_per_mtok": m.price.cache_write}
            for m in known]})
        return
    table = Table("MODEL", "INPUT $/MTOK", "OUTPUT $/MTOK", "CACHE READ", "CACHE WRITE")
    for m in known:
        table.add_row(m.name, f"{m.price.input:g}", f"{m.price.output:g}", f"{m.price.cache_read:g}",
                      f"{m.price.cache_write:g}")
    print_table(table)
    console.print("reasoning effort: " + (", ".join(efforts) if efforts else "not settable for this vendor"))
