"""Agent definition files: what `optio agent apply` accepts before it sends anything, and what export writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optio.cli.agent_files import FIELDS, FORMAT, DefinitionError, definition_of, load_definition


def write(tmp_path: Path, data: object, name: str = "a.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_a_definition_loads_with_here_resolved_to_its_directory(tmp_path: Path) -> None:
    team = tmp_path / "team"
    team.mkdir()
    path = write(team, {"format": FORMAT, "slug": "planner", "agent_config": {"command": "python3 {here}/p.py"},
                        "lifecycle": "sticky"})
    loaded = load_definition(path)
    assert loaded == {"slug": "planner", "agent_config": {"command": f"python3 {team.resolve()}/p.py"},
                      "lifecycle": "sticky"}
    assert load_definition(write(tmp_path, {"slug": "x"})) == {"slug": "x"}  # format is optional


@pytest.mark.parametrize(("data", "says"), [
    ("{not json", "not valid JSON"), ([1, 2], "JSON object"), ({"name": "no slug"}, "'slug' is required"),
    ({"slug": "x", "colour": "red"}, "unknown field(s) colour"), ({"slug": "x", "format": "other/9"}, "format"),
    ({"slug": "x", "agent_config": "cmd"}, "'agent_config' must be an object"),
])
def test_bad_files_are_refused_naming_the_file_and_the_problem(tmp_path: Path, data: object, says: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(DefinitionError) as err:
        load_definition(path)
    assert says in str(err.value) and str(path) in str(err.value)
    with pytest.raises(DefinitionError, match="cannot read"):
        load_definition(tmp_path / "missing.json")


def test_export_keeps_the_definition_and_drops_state_and_history() -> None:
    shown = {"id": 3, "slug": "a", "name": "A", "state": "idle", "turn_count": 9, "pending_messages": 1,
             "cost_usd": 1.5, "agent_type": "script", "agent_config": {"command": "true"}, "max_turn_s": None,
             "secret_names": [], "lifecycle": "on-demand"}
    out = definition_of(shown)
    assert out == {"format": FORMAT, "slug": "a", "name": "A", "agent_type": "script",
                   "agent_config": {"command": "true"}, "secret_names": [], "lifecycle": "on-demand"}
    assert set(out) - {"format"} <= set(FIELDS)
