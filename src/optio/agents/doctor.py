"""``optio agents doctor``: which vendor CLIs are installed and which have credentials, and the sandbox.

Optio does not bundle vendor CLIs. This check runs each CLI's ``--version`` (a real subprocess with
a short timeout, so a hung or broken install shows up as such) and looks for the env vars / secrets
each vendor authenticates with, and prints the exact command that installs a missing CLI. It also
tries the sandbox agents run in (bubblewrap, user namespaces, the per-run limits) for real.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from rich.table import Table

from optio.config import Settings
from optio.runtime.sandbox import probe

# Long enough for a CLI's first start on a busy machine (a node CLI warming its caches): only a hang exceeds it.
VERSION_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class VendorCli:
    vendor: str
    cli: str
    npm_package: str
    credential_vars: tuple[str, ...]


VENDORS: tuple[VendorCli, ...] = (
    VendorCli("claude-code", "claude", "@anthropic-ai/claude-code", ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")),
    VendorCli("codex", "codex", "@openai/codex", ("OPENAI_API_KEY", "CODEX_AUTH_JSON")),
    VendorCli("gemini", "gemini", "@google/gemini-cli", ("GEMINI_API_KEY",)),
    VendorCli("copilot", "copilot", "@github/copilot", ("COPILOT_GITHUB_TOKEN", "COPILOT_PROVIDER_API_KEY")),
    VendorCli(
        "opencode", "opencode", "opencode-ai", ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY")
    ),
)


@dataclass(frozen=True)
class DoctorRow:
    vendor: str
    cli: str
    found: bool
    version: str | None
    credentials: str
    install_command: str


_VERSION = re.compile(r"\d+\.\d+(?:\.\d+)?(?:[-+.][0-9A-Za-z.-]+)?")


def cli_version(executable: str, *, env: Mapping[str, str] | None = None) -> str | None:
    """The version a CLI prints for ``--version``; None when it fails, hangs or prints none."""
    try:
        proc = subprocess.run(
            [executable, "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_S,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    match = _VERSION.search(proc.stdout or proc.stderr)
    return match.group(0) if match else None


def _credentials(vendor: VendorCli, env: Mapping[str, str]) -> str:
    present = [name for name in vendor.credential_vars if env.get(name)]
    if present:
        return "configured (" + ", ".join(present) + ")"
    return "missing: set " + " or ".join(vendor.credential_vars)


def doctor(env: Mapping[str, str], path: str | None = None) -> list[DoctorRow]:
    """One row per vendor; ``path`` defaults to ``env["PATH"]``."""
    search_path = path if path is not None else env.get("PATH", os.defpath)
    rows: list[DoctorRow] = []
    for vendor in VENDORS:
        executable = shutil.which(vendor.cli, path=search_path) if search_path else None
        version = None
        if executable is not None:
            run_env = {**os.environ, **env, "PATH": search_path}
            version = cli_version(executable, env=run_env)
        rows.append(
            DoctorRow(
                vendor=vendor.vendor,
                cli=vendor.cli,
                found=executable is not None,
                version=version,
                credentials=_credentials(vendor, env),
                install_command=f"npm install -g {vendor.npm_package}",
            )
        )
    rows.append(script_row(search_path))
    return rows


def script_row(search_path: str | None) -> DoctorRow:
    """The script agent: any shell command, run with /bin/sh; nothing to install and no credentials of its own."""
    shell = "/bin/sh" if os.access("/bin/sh", os.X_OK) else (shutil.which("sh", path=search_path) if search_path
                                                             else None)
    return DoctorRow(vendor="script", cli=shell or "sh", found=shell is not None, version=None,
                     credentials="none needed (secrets named by the task are in its environment)",
                     install_command="" if shell else "install a POSIX shell at /bin/sh")


def render_doctor(rows: list[DoctorRow]) -> Table:
    table = Table(title="Agent CLIs")
    for column in ("agent", "cli", "installed", "credentials", "install with"):
        table.add_column(column)
    for row in rows:
        if row.found:
            found = row.version or ("built in" if row.vendor == "script" else "yes (version unknown)")
            installed = f"[green]{found}[/green]"
        else:
            installed = "[red]not on PATH[/red]"
        fine = row.credentials.startswith(("configured", "none"))
        creds = row.credentials if fine else f"[yellow]{row.credentials}[/yellow]"
        table.add_row(row.vendor, row.cli, installed, creds, "" if row.found else row.install_command)
    return table


@dataclass(frozen=True)
class SandboxReport:
    mode: str
    works: bool
    bwrap: str | None
    version: str | None
    problem: str | None
    limits: dict[str, str]


def sandbox_report(settings: Settings | None = None) -> SandboxReport:
    """The sandbox as the server would set it up here, tried with a real bubblewrap run."""
    settings = settings or Settings()
    found = probe()
    limit = "set with prlimit" if found.prlimit else "not set: prlimit (util-linux) is missing"

    def show(value: int, unit: str, enforced: bool = True) -> str:
        if not value:
            return "none"
        return f"{value} {unit} ({limit if enforced else 'not enforced: the server runs as root'})"

    limits = {
        "memory": show(settings.sandbox_memory_mb, "MiB address space"),
        "processes": show(settings.sandbox_max_processes, "processes", found.nproc_enforced),
        "file size": show(settings.sandbox_max_file_mb, "MiB per file"),
    }
    return SandboxReport(mode=settings.sandbox, works=found.works, bwrap=found.bwrap, version=found.version,
                         problem=found.reason, limits=limits)


def render_sandbox(report: SandboxReport) -> Table:
    table = Table(title="Sandbox", show_header=False)
    table.add_column("what")
    table.add_column("state")
    if report.mode == "off":
        state = "[yellow]off (OPTIO_SANDBOX=off): agents run as the server's own user[/yellow]"
    elif report.works:
        state = "[green]on: user, pid, ipc and uts namespaces, data dir hidden[/green]"
    else:
        state = f"[red]unavailable: {report.problem}[/red]"
    table.add_row("sandbox", state)
    installed = f"{report.bwrap} {report.version or ''}".strip() if report.bwrap else "[red]not installed[/red]"
    table.add_row("bubblewrap", installed)
    for name, value in report.limits.items():
        table.add_row(f"limit: {name}", value)
    return table
