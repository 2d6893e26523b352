"""`optio agents doctor` as a person runs it: a real subprocess, once with the real vendor CLIs on PATH
(installed from npm by `scripts/install-vendor-clis.sh`) and once on a machine without them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI_BIN = Path(os.environ.get("OPTIO_VENDOR_CLI_BIN") or ROOT / ".cache" / "vendor-clis" / "node_modules" / ".bin")


def doctor(path: str, extra: dict[str, str] | None = None) -> list[dict]:
    env = {"PATH": path, "HOME": "/nonexistent", **(extra or {})}
    res = subprocess.run([sys.executable, "-m", "optio.cli.main", "agents", "doctor", "--json"], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(res.stdout)["agents"]


def test_doctor_without_any_cli_says_how_to_install(tmp_path: Path) -> None:
    rows = {r["vendor"]: r for r in doctor(str(tmp_path))}
    assert set(rows) == {"claude-code", "codex", "gemini", "copilot", "opencode", "script"}
    script = rows.pop("script")  # the built-in agent: a shell command, nothing to install
    assert script["found"] and script["cli"] == "/bin/sh" and script["credentials"].startswith("none needed")
    for row in rows.values():
        assert not row["found"] and row["version"] is None
        assert row["install_command"].startswith("npm install -g ")
        assert row["credentials"].startswith("missing")


def test_doctor_with_the_installed_clis_reports_versions_and_credentials() -> None:
    if not (CLI_BIN / "claude").exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"vendor CLIs not installed in {CLI_BIN}")
        pytest.skip("vendor CLIs not installed")
    path = f"{CLI_BIN}:{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    rows = {r["vendor"]: r for r in doctor(path, {"ANTHROPIC_API_KEY": "sk-ant-x"})}
    for vendor in ("claude-code", "codex", "opencode"):
        assert rows[vendor]["found"], rows[vendor]
        assert rows[vendor]["version"] and rows[vendor]["version"][0].isdigit()
    assert not rows["claude-code"]["credentials"].startswith("missing")
    assert "ANTHROPIC_API_KEY" in rows["claude-code"]["credentials"]
    assert rows["codex"]["credentials"].startswith("missing")


def test_doctor_table_lists_the_script_agent() -> None:
    res = subprocess.run([sys.executable, "-m", "optio.cli.main", "agents", "doctor"], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PATH": os.environ.get("PATH", "")})
    assert res.returncode == 0, res.stderr
    row = next(line for line in res.stdout.splitlines() if "script" in line)
    assert "/bin/sh" in row and "built in" in row


def pinned_versions() -> dict[str, str]:
    """The versions `scripts/install-vendor-clis.sh` pins, by npm package."""
    script = (ROOT / "scripts" / "install-vendor-clis.sh").read_text()
    specs = re.findall(r'^\s+"(@?[^"@]+)@([^"]+)"$', script, flags=re.MULTILINE)
    return dict(specs)


def test_doctor_reports_all_five_vendor_clis_installed_at_their_pinned_versions() -> None:
    if not os.environ.get("OPTIO_VENDOR_CLI_BIN"):
        if os.environ.get("CI") == "true":
            pytest.fail("CI must set OPTIO_VENDOR_CLI_BIN (see .ci/run)")
        pytest.skip("OPTIO_VENDOR_CLI_BIN is not set")
    path = f"{CLI_BIN}:{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    rows = {r["vendor"]: r for r in doctor(path, {"GEMINI_API_KEY": "g", "COPILOT_PROVIDER_API_KEY": "c"})}
    pinned = pinned_versions()
    packages = {"claude-code": "@anthropic-ai/claude-code", "codex": "@openai/codex", "opencode": "opencode-ai",
                "gemini": "@google/gemini-cli", "copilot": "@github/copilot"}
    assert set(packages.values()) <= set(pinned), pinned
    for vendor, package in packages.items():
        assert rows[vendor]["found"], rows[vendor]
        assert rows[vendor]["version"] == pinned[package], (vendor, rows[vendor])
    assert "GEMINI_API_KEY" in rows["gemini"]["credentials"]
    assert "COPILOT_PROVIDER_API_KEY" in rows["copilot"]["credentials"]
