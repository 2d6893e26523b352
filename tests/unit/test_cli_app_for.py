"""`optio` builds only the command it runs: what a person sees must not change by it (help, errors, exit codes)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from optio.cli.main import app, app_for

CASES = [
    "--help", "repo --help", "--url http://127.0.0.1:9 repo list --help", "task new --help", "serve --help",
    "login --help", "whoami --help", "events --help", "secrets list --help", "agent apply --help",
    "--token t --workspace w pr show --help", "nosuch", "repo", "repo nosuch", "repo list --bogus", "--url",
]


@pytest.mark.parametrize("line", CASES)
def test_the_pruned_cli_answers_like_the_whole_one(line: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTIO_URL", "http://127.0.0.1:9")
    argv = line.split()
    runner = CliRunner()
    whole = runner.invoke(app, argv, prog_name="optio")
    pruned = runner.invoke(app_for(argv), argv, prog_name="optio")
    assert (pruned.exit_code, pruned.output) == (whole.exit_code, whole.output)


def test_only_the_invoked_group_is_built_and_the_tree_is_whole_when_asked_for() -> None:
    assert [g.name for g in app_for(["--url", "http://x", "repo", "list"]).registered_groups] == ["repo"]
    assert app_for(["serve"]).registered_groups == [] and len(app_for(["serve"]).registered_commands) == 1
    for whole in (["--help"], ["--help", "repo"], ["nosuch"], []):
        assert app_for(whole) is app
