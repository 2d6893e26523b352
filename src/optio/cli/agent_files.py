"""`optio agent apply -f FILE...` and `optio agent export SLUG`: persistent agents as JSON definition files.

A team of agents lives in version control as one JSON file per agent and is set up (or brought up
to date) with one command: each file's agent is created if its slug is new in the workspace, else
updated. Every file is read and checked before anything is sent, so a typo in the third file does
not leave a team half applied. ``{here}`` in the agent config's ``command`` stands for the directory
holding the file, so a team can ship its scripts beside its definitions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from optio.cli.client import ApiError, Client, fail
from optio.cli.common import client_from, console, handle_errors, print_json

FORMAT = "optio-agent/1"
# What a definition holds: the create body of POST /api/agents, nothing about its state or history.
FIELDS = ("slug", "name", "system_prompt", "operator_manual", "agent_type", "agent_config", "lifecycle",
          "idle_timeout_s", "max_consecutive_failures", "max_turn_s", "max_cost_usd", "secret_names")
HERE = "{here}"


class DefinitionError(ValueError):
    pass


def load_definition(path: Path) -> dict[str, Any]:
    """One file's definition, checked for shape (the server checks the values and names the field)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DefinitionError(f"{path}: cannot read it ({exc.strerror})") from None
    except ValueError as exc:
        raise DefinitionError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DefinitionError(f"{path}: a definition is a JSON object")
    fmt = data.pop("format", FORMAT)
    if fmt != FORMAT:
        raise DefinitionError(f"{path}: format {fmt!r} is not {FORMAT!r}")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise DefinitionError(f"{path}: unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    if not isinstance(data.get("slug"), str) or not data["slug"]:
        raise DefinitionError(f"{path}: 'slug' is required")
    config = data.get("agent_config")
    if config is not None and not isinstance(config, dict):
        raise DefinitionError(f"{path}: 'agent_config' must be an object")
    if isinstance(config, dict) and isinstance(config.get("command"), str):
        config["command"] = config["command"].replace(HERE, str(path.resolve().parent))
    return dict(data)


def definition_of(agent: dict[str, Any]) -> dict[str, Any]:
    """The definition file of an agent as the API shows it (state, counters and history left out)."""
    out: dict[str, Any] = {"format": FORMAT}
    out.update({key: agent[key] for key in FIELDS if key in agent and agent[key] is not None})
    return out


def apply_definitions(client: Client, definitions: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Create or update each agent by slug; returns (slug, "created" | "updated" | "unchanged")."""
    done: list[tuple[str, str]] = []
    for definition in definitions:
        try:
            done.append((definition["slug"], _apply_one(client, definition)))
        except ApiError as exc:
            applied = "; ".join(f"{slug} {outcome}" for slug, outcome in done) or "none"
            raise ApiError(exc.status, exc.code, f"agent {definition['slug']}: {exc.message} "
                                                 f"(applied before it: {applied})") from None
    return done


def _apply_one(client: Client, definition: dict[str, Any]) -> str:
    slug = definition["slug"]
    try:
        current = client.get(f"/api/agents/{slug}")
    except ApiError as exc:
        if exc.status != 404:
            raise
        client.post("/api/agents", definition)
        return "created"
    changes = {k: v for k, v in definition.items() if k != "slug" and current.get(k) != v}
    if changes:
        client.request("PATCH", f"/api/agents/{slug}", json=changes)
    return "updated" if changes else "unchanged"


@handle_errors
def apply(
    ctx: typer.Context,
    files: list[Path] = typer.Option(..., "-f", "--file", help="Definition file(s); repeat, or let the shell "
                                                                 "expand team/*.json"),
    extra: list[Path] = typer.Argument(None, help="More definition files (what -f team/*.json expands to)"),
) -> None:
    """Create or update agents from JSON definition files, by slug (all files are checked first)."""
    paths = [*files, *(extra or [])]
    try:
        definitions = [load_definition(p) for p in paths]
    except DefinitionError as exc:
        raise fail(str(exc)) from None
    slugs = [d["slug"] for d in definitions]
    twice = sorted({s for s in slugs if slugs.count(s) > 1})
    if twice:
        raise fail(f"slug(s) defined in more than one file: {', '.join(twice)}")
    for slug, outcome in apply_definitions(client_from(ctx), definitions):
        console.print(f"agent {slug} {outcome}")


@handle_errors
def export(
    ctx: typer.Context,
    slug: str = typer.Argument(..., help="The agent's slug"),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write to this file (default: stdout)"),
) -> None:
    """Print (or write) an agent's definition as JSON, ready for `optio agent apply -f`."""
    definition = definition_of(client_from(ctx).get(f"/api/agents/{slug}"))
    if output is None:
        print_json(definition)
        return
    output.write_text(json.dumps(definition, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    console.print(f"wrote {output}")
