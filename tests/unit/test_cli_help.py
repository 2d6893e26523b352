"""Every `optio` command and every one of its options and arguments says what it is for in `--help`."""

from __future__ import annotations

from typing import Any

import typer

from optio.cli.main import app


def walk(command: Any, path: str) -> list[tuple[str, Any]]:
    """(path, command) of the command and everything below it (Typer's own click: groups have `commands`)."""
    out = [(path, command)]
    if getattr(command, "commands", None):
        for name, sub in command.commands.items():
            if not sub.hidden:  # an old name kept for scripts (`secrets`, `repo update`) shows no help
                out += walk(sub, f"{path} {name}")
    return out


def missing_help() -> list[str]:
    missing = []
    for path, command in walk(typer.main.get_command(app), "optio"):
        if not (command.help or command.short_help or "").strip():
            missing.append(path)
        for param in command.params:
            if param.name == "help":
                continue
            if not (getattr(param, "help", None) or "").strip():
                missing.append(f"{path} {param.opts[0] if param.opts else param.name}")
    return missing


def test_every_command_and_parameter_has_a_help_line() -> None:
    assert missing_help() == []


def test_the_walk_sees_the_whole_cli() -> None:
    """The check above is not vacuous: it reaches nested commands and their parameters."""
    paths = {path: command for path, command in walk(typer.main.get_command(app), "optio")}
    assert {"optio pr rerun-ci", "optio repo set", "optio repo remove", "optio task new", "optio login"} <= set(paths)
    assert {"--ci-command", "--auto-merge"} <= {opt for p in paths["optio repo set"].params for opt in p.opts}
