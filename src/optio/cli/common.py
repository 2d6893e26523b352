"""Shared CLI plumbing: the client from global options, JSON output, error handling."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console

from optio.cli.client import ApiError, Client, err_console

console = Console()
F = TypeVar("F", bound=Callable[..., Any])


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
