"""What a persistent agent's turn is given to reach the inter-agent API: a verifiable token, the URL, the CLI."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

from optio.control import agent_turn_api
from optio.security import agent_tokens


def test_the_turn_env_carries_a_token_for_this_turn_and_the_servers_url() -> None:
    env = agent_turn_api.turn_api_env(b"secret", "http://127.0.0.1:8470/", agent_id=4, workspace_id=2, turn_id=17,
                                      turn_timeout_s=60, now=1000.0)
    assert env["OPTIO_API_URL"] == "http://127.0.0.1:8470"
    claims = agent_tokens.verify(b"secret", env["OPTIO_AGENT_TOKEN"], now=1000.0)
    assert claims is not None and (claims.agent_id, claims.workspace_id, claims.turn_id) == (4, 2, 17)
    # It outlives the turn's time limit by the grace only.
    limit = 1000.0 + 60 + agent_turn_api.TOKEN_GRACE_S
    assert agent_tokens.verify(b"secret", env["OPTIO_AGENT_TOKEN"], now=limit - 1) is not None
    assert agent_tokens.verify(b"secret", env["OPTIO_AGENT_TOKEN"], now=limit) is None
    # The optio command of this interpreter comes first on PATH (this venv has one).
    if (Path(sys.executable).parent / "optio").is_file():
        assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)


def test_the_turn_file_is_owner_only_json(tmp_path: Path) -> None:
    home = tmp_path / "home"
    agent_turn_api.write_turn_file(home, {"OPTIO_API_URL": "http://x", "OPTIO_AGENT_TOKEN": "optio-agent.a.b"})
    path = home / agent_tokens.TURN_FILE
    assert json.loads(path.read_text()) == {"api_url": "http://x", "token": "optio-agent.a.b"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_editable_source_is_shown_read_only_unless_it_holds_the_data_dir(tmp_path: Path) -> None:
    cwd = tmp_path / "ws"
    mounts = agent_turn_api.turn_mounts(cwd, tmp_path / "data")
    assert mounts.writable == (cwd,)
    src = agent_turn_api.source_dir()
    assert mounts.readonly == ((src,) if src is not None else ())
    if src is not None:
        assert agent_turn_api.turn_mounts(cwd, src / "data").readonly == ()  # the data dir inside the source
        assert agent_turn_api.turn_mounts(cwd, src.parent).readonly == ()  # the source inside the data dir
