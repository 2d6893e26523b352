"""What a persistent agent's turn gets to call the inter-agent API: a token, the server's URL, the `optio` CLI.

``OPTIO_AGENT_TOKEN`` is signed for this agent, workspace and turn (`optio.security.agent_tokens`); the
API also checks that the turn is still open, so the expiry here only bounds a token whose turn's end
was never recorded. ``OPTIO_API_URL`` is the server's own URL. So that ``optio agent-msg`` runs inside
the sandbox, the directory of the server's own ``optio`` command goes first on the turn's ``PATH``
(the sandbox then shows that install read-only) and, for an editable install whose source lives
outside it, that source directory is shown read-only too.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import optio
from optio.runtime.base import Mounts
from optio.security import agent_tokens

API_URL_ENV = "OPTIO_API_URL"
TOKEN_ENV = "OPTIO_AGENT_TOKEN"
# Past the turn's own time limit: a token outlives its turn only if the turn's end is never recorded.
TOKEN_GRACE_S = 300.0
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def cli_bin_dir() -> Path | None:
    """The directory holding the server's own `optio` command (its venv's bin), if it has one."""
    candidate = Path(sys.executable).parent
    return candidate if (candidate / "optio").is_file() else None


def source_dir() -> Path | None:
    """Where the `optio` package is imported from, when that is outside the interpreter's prefix (editable)."""
    src = Path(optio.__file__).resolve().parent.parent
    prefix = Path(sys.prefix).resolve()
    return None if src == prefix or prefix in src.parents else src


def turn_api_env(secret: bytes, api_url: str, *, agent_id: int, workspace_id: int, turn_id: int,
                 turn_timeout_s: float, now: float | None = None) -> dict[str, str]:
    """The variables that let the turn's process reach its peers, and find `optio` to do it with."""
    expires = (time.time() if now is None else now) + turn_timeout_s + TOKEN_GRACE_S
    env = {API_URL_ENV: api_url.rstrip("/"),
           TOKEN_ENV: agent_tokens.issue(secret, agent_id=agent_id, workspace_id=workspace_id, turn_id=turn_id,
                                         expires_at=expires)}
    bin_dir = cli_bin_dir()
    if bin_dir is not None:
        env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH') or _DEFAULT_PATH}"
    return env


def write_turn_file(home: Path, env: dict[str, str]) -> None:
    """The URL and token also in ``$HOME/.optio/agent-turn.json`` (owner-only), for processes that lose the env."""
    path = home / agent_tokens.TURN_FILE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"api_url": env[API_URL_ENV], "token": env[TOKEN_ENV]}, out)


def turn_mounts(cwd: Path, hidden: Path) -> Mounts:
    """The usual agent layout (``cwd`` writable) plus the package source of an editable install, read-only.

    The source is not shown if it is inside or above Optio's data dir (``hidden``).
    """
    src = source_dir()
    readonly: tuple[Path, ...] = ()
    if src is not None:
        inside = src == hidden or hidden in src.parents or src in hidden.parents
        readonly = () if inside else (src,)
    return Mounts(writable=(cwd,), readonly=readonly)
