"""``agents doctor`` with real ``--version`` subprocesses of stand-in executables on a temp PATH."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from optio.agents.doctor import doctor, render_doctor


def fake_cli(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def rendered(rows: list) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(render_doctor(rows))
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_doctor_reports_installed_clis_with_versions_and_credentials(tmp_path: Path) -> None:
    fake_cli(tmp_path, "claude", 'echo "2.1.331 (Claude Code)"')
    fake_cli(tmp_path, "codex", 'echo "codex-cli 0.169.0"')
    fake_cli(tmp_path, "gemini", "echo broken >&2; exit 3")
    rows = {r.vendor: r for r in doctor({"ANTHROPIC_API_KEY": "k"}, path=str(tmp_path))}
    assert set(rows) == {"claude-code", "codex", "gemini", "copilot", "opencode", "script"}
    assert rows["script"].found and rows["script"].cli == "/bin/sh"  # built in: nothing to install
    assert rows["claude-code"].found and rows["claude-code"].version == "2.1.331"
    assert rows["claude-code"].credentials == "configured (ANTHROPIC_API_KEY)"
    assert rows["codex"].version == "0.169.0" and rows["codex"].credentials.startswith("missing")
    assert rows["gemini"].found and rows["gemini"].version is None
    assert not rows["copilot"].found and rows["copilot"].install_command == "npm install -g @github/copilot"
    text = rendered(list(rows.values()))
    assert "built in" in text and "2.1.331" in text and "not on PATH" in text and "npm install -g opencode-ai" in text


def test_doctor_with_an_empty_path_finds_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    rows = [r for r in doctor({}, path=str(empty)) if r.vendor != "script"]  # /bin/sh is found by its path
    assert rows and not any(r.found for r in rows)
    assert all(r.credentials.startswith("missing: set ") for r in rows)
    assert {r.install_command for r in rows} == {
        "npm install -g @anthropic-ai/claude-code",
        "npm install -g @openai/codex",
        "npm install -g @google/gemini-cli",
        "npm install -g @github/copilot",
        "npm install -g opencode-ai",
    }
    assert doctor({"PATH": ""})[0].found is False
