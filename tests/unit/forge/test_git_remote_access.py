"""What Optio's git is allowed to do for one remote operation: transport, pinned address, credential."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from optio.forge import gitcmd
from optio.forge.gitcmd import git_env, remote_access, run_git
from optio.security.ssrf import UnsafeURLError, pin_url


def resolver_for(address: str, family: int = socket.AF_INET) -> Any:
    def resolve(host: str, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]
    return resolve


def pairs(config: tuple[str, ...]) -> dict[str, str]:
    assert all(flag == "-c" for flag in config[::2])
    return dict(item.split("=", 1) for item in config[1::2])


def test_https_remote_is_pinned_allows_only_its_transport_and_never_redirects() -> None:
    access = remote_access("https://git.example.com/team/repo.git", resolver=resolver_for("93.184.216.34"))
    cfg = pairs(access.config)
    assert cfg == {"protocol.https.allow": "always", "http.followRedirects": "false",
                   "http.curloptResolve": "git.example.com:443:93.184.216.34"}
    assert access.env == {}


def test_ipv6_pin_is_bracketed() -> None:
    access = remote_access("http://git.example.com:8080/r.git",
                           resolver=resolver_for("2606:2800:220:1::248", socket.AF_INET6))
    assert pairs(access.config)["http.curloptResolve"] == "git.example.com:8080:[2606:2800:220:1::248]"


def test_internal_answer_is_refused_at_operation_time() -> None:
    with pytest.raises(UnsafeURLError, match="private address"):
        remote_access("https://git.example.com/r.git", resolver=resolver_for("10.0.0.7"))
    with pytest.raises(UnsafeURLError, match="loopback"):
        remote_access("ssh://git@git.example.com/r.git", resolver=resolver_for("127.0.0.1"))
    with pytest.raises(UnsafeURLError):
        remote_access("git@git.example.com:team/r.git", resolver=resolver_for("169.254.169.254"))
    with pytest.raises(UnsafeURLError, match="neither a URL"):
        remote_access("ext::sh -c touch% /tmp/pwned", resolver=resolver_for("93.184.216.34"))


def test_allowlisted_name_is_still_pinned_to_what_it_resolved_to() -> None:
    assert pin_url("http://gitlab.lan/", allowlist=["gitlab.lan"], resolver=resolver_for("10.1.1.1"))[2] is not None
    access = remote_access("http://gitlab.lan/r.git", allowlist=["gitlab.lan"], resolver=resolver_for("10.1.1.1"))
    assert pairs(access.config)["http.curloptResolve"] == "gitlab.lan:80:10.1.1.1"


def test_local_path_gets_only_the_file_transport(tmp_path: Path) -> None:
    cfg = pairs(remote_access(str(tmp_path)).config)
    assert cfg["protocol.file.allow"] == "always"
    assert not any(k.startswith("protocol.http") for k in cfg)


def test_credential_travels_only_in_the_environment_of_that_call() -> None:
    access = remote_access("https://alice@git.example.com/r.git", credential="tok-0123456789",
                           resolver=resolver_for("93.184.216.34"))
    assert "tok-0123456789" not in " ".join(access.config)
    assert access.env["OPTIO_GIT_PASSWORD"] == "tok-0123456789"
    assert access.env["OPTIO_GIT_USERNAME"] == "alice"
    askpass = access.env["GIT_ASKPASS"]
    assert "tok-0123456789" not in Path(askpass).read_text()
    answer = subprocess.run([askpass, "Password for 'https://alice@git.example.com': "], env=access.env,
                            capture_output=True, text=True, check=True).stdout
    assert answer == "tok-0123456789\n"


def test_git_env_is_built_from_scratch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTIO_ADMIN_API_KEY", "optio_secret")
    monkeypatch.setenv("HOME", "/root")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
    env = git_env()
    assert "OPTIO_ADMIN_API_KEY" not in env and "SSH_AUTH_SOCK" not in env
    assert env["HOME"] != "/root" and env["GIT_CONFIG_GLOBAL"] == "/dev/null" and env["GIT_CONFIG_NOSYSTEM"] == "1"


def test_no_transport_without_opting_in(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    run_git(["init", "--quiet", "--bare", str(tmp_path / "a")], cwd=tmp_path)
    proc = run_git(["ls-remote", str(tmp_path / "a")], cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "not allowed" in proc.stderr


def _fresh_askpass(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(gitcmd, "_askpass_file", None)
    return Path(remote_access("https://git.example.com/r.git", credential="t",
                              resolver=resolver_for("93.184.216.34")).env["GIT_ASKPASS"])


def test_askpass_is_one_script_per_user_so_killed_servers_leave_nothing_behind(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    first = _fresh_askpass(monkeypatch, tmp_path)
    again = _fresh_askpass(monkeypatch, tmp_path)  # as a second server process would
    assert first == again == tmp_path / f"optio-askpass-{os.getuid()}" / "askpass"
    assert [p.name for p in tmp_path.iterdir()] == [f"optio-askpass-{os.getuid()}"]
    assert stat.S_IMODE(first.parent.stat().st_mode) == 0o700
    first.write_text("#!/bin/sh\necho tampered\n")  # a wrong script is put right, never run
    assert _fresh_askpass(monkeypatch, tmp_path).read_text() == gitcmd._ASKPASS_SCRIPT


@pytest.mark.parametrize("plant", ["symlink", "group_writable"])
def test_askpass_refuses_a_shared_folder_it_cannot_trust(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                          plant: str) -> None:
    shared = tmp_path / f"optio-askpass-{os.getuid()}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if plant == "symlink":
        shared.symlink_to(elsewhere)
    else:
        shared.mkdir()
        shared.chmod(0o777)
    script = _fresh_askpass(monkeypatch, tmp_path)
    assert script.parent not in (shared, elsewhere) and script.parent.name.startswith("optio-askpass-")
    assert stat.S_IMODE(script.parent.stat().st_mode) == 0o700 and not any(elsewhere.iterdir())
