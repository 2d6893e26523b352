"""The CLI's own small state: the API key from `optio login` and the workspace from `workspace switch`.

Kept in `$OPTIO_CONFIG_DIR/cli.json` (default `~/.config/optio/cli.json`), created readable by the
owner only because it holds an API key. `OPTIO_TOKEN` / `--token` and `OPTIO_WORKSPACE` /
`--workspace` always win over it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def config_path() -> Path:
    base = os.environ.get("OPTIO_CONFIG_DIR") or str(Path.home() / ".config" / "optio")
    return Path(base).expanduser() / "cli.json"


def load() -> dict[str, Any]:
    try:
        data = json.loads(config_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save(**changes: Any) -> Path:
    """Merge `changes` (None removes a key) into the file, written 0600 and replaced atomically."""
    data = load()
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)
    return path
