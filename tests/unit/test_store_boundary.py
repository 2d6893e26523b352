"""The services, API and CLI reach the database only through `optio.store` function modules.

Read from the source (no import needed), so a stray `from sqlalchemy import select` in a route, or an API
module reaching for ORM models or a concrete forge or runtime, fails here with the file and line named.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "optio"
LAYERS = ("services", "api", "cli")
API_CLI_FORBIDDEN = ("optio.store.models", "optio.forge.local", "optio.forge.git", "optio.runtime.local")


def _modules(layer: str) -> list[Path]:
    return sorted((SRC / layer).rglob("*.py"))


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _hits(layers: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(SRC)}:{line} imports {name}"
        for layer in layers for path in _modules(layer) for line, name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]


@pytest.mark.parametrize("layer", LAYERS)
def test_no_sqlalchemy_outside_the_store(layer: str) -> None:
    assert _modules(layer), f"no modules found under {layer}/"
    assert _hits((layer,), ("sqlalchemy",)) == []


def test_api_and_cli_use_no_models_and_no_concrete_forge_or_runtime() -> None:
    assert _hits(("api", "cli"), API_CLI_FORBIDDEN) == []


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "route.py"
    module.write_text("from optio.store.models import Job\nimport sqlalchemy.orm\n")
    assert [name for _line, name in _imports(module)] == ["optio.store.models", "optio.store.models.Job",
                                                          "sqlalchemy.orm"]


def test_run_kinds_share_one_events_logs_and_stream_factory() -> None:
    from optio.api.routes import repo_tasks, runs

    def tails(router: object, param: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for route in router.routes:  # type: ignore[attr-defined]
            path = route.path.split("{" + param + "}", 1)[-1]
            if path in ("/events", "/logs", "/logs/stream"):
                out[path] = route.endpoint.__qualname__
        return out

    job_runs, tasks = tails(runs.router, "run_id"), tails(repo_tasks.router, "task_id")
    assert set(job_runs) == set(tasks) == {"/events", "/logs", "/logs/stream"}
    assert job_runs == tasks  # the same functions of one factory, not two copies
    assert all(name.startswith("add_run_routes.") for name in job_runs.values())
