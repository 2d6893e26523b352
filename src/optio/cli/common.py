"""Shared CLI plumbing: the client from global options, JSON output, error handling."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from optio.cli.client import ApiError, Client, err_console

# Piped output is never cut at 80 columns: without a terminal Rich gets a width no line reaches, and tables
# become plain tab-separated rows (`--json` stays the format for programs).
PIPED_WIDTH = 1_000_000
console = Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])
AS_JSON = typer.Option(False, "--json", help="Machine-readable output")


def is_terminal() -> bool:
    return sys.stdout.isatty()


def clip(text: str, width: int) -> str:
    """Shorten a long cell for a terminal table; piped rows keep every character."""
    return text[:width] if is_terminal() else text


def print_table(table: Table) -> None:
    """The table on a terminal; piped, one tab-separated line per row (header first, markup stripped)."""
    if is_terminal():
        console.print(table)
        return
    columns = [[str(column.header), *(plain(cell) for cell in column.cells)] for column in table.columns]
    lines = ["\t".join(row) for row in zip(*columns, strict=True)] if columns else []
    sys.stdout.write("".join(line + "\n" for line in lines))


def plain(cell: object) -> str:
    text = cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain
    return text.replace("\t", " ").replace("\n", " ")


def client_from(ctx: typer.Context) -> Client:
    obj = ctx.find_root().obj or {}
    return Client(url=obj["url"], workspace=obj.get("workspace"), token=obj.get("token"))


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def handle_errors(fn: F) -> F:
    """Turn API errors into one red line and exit code 1 (2 for usage-like 4xx)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            err_console.print(f"[red]error:[/red] {exc.message}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def parse_params(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--param")
        key, value = item.split("=", 1)
        if not key:
            raise typer.BadParameter(f"empty key in {item!r}", param_hint="--param")
        out[key] = value
    return out
