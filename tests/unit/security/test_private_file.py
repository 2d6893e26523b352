"""Owner-only files written atomically: the key file and the session secret never appear half-written."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from optio.security import crypto, private_file
from optio.services.auth_state import SESSION_SECRET_FILE, load_session_secret


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_and_replace_write_owner_only_files_and_leave_no_temporaries(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # even under a permissive umask
    try:
        target = tmp_path / "f"
        assert private_file.create(target, b"one")
        assert not private_file.create(target, b"two")  # an existing file is left alone
        assert target.read_bytes() == b"one" and mode(target) == 0o600
        os.chmod(target, 0o644)
        private_file.replace(target, b"three")
        assert target.read_bytes() == b"three" and mode(target) == 0o600
        assert [p.name for p in tmp_path.iterdir()] == ["f"]
    finally:
        os.umask(old_umask)


def test_open_private_tightens_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "stdout.log"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    with private_file.open_private(path) as handle:
        handle.write(b"new")
    assert path.read_bytes() == b"new" and mode(path) == 0o600


def test_secure_data_dir_strips_group_and_other_access(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "optio.db").write_bytes(b"")
    os.chmod(data / "optio.db", 0o644)
    private_file.secure_data_dir(data)
    assert mode(data) == 0o700 and mode(data / "optio.db") == 0o600


def test_session_secret_is_created_once_and_an_empty_one_is_replaced(tmp_path: Path) -> None:
    first = load_session_secret(tmp_path, None)
    assert len(first) >= 48 and load_session_secret(tmp_path, None) == first
    assert mode(tmp_path / SESSION_SECRET_FILE) == 0o600
    (tmp_path / SESSION_SECRET_FILE).write_bytes(b"")  # what a crash of an unsynced write could leave
    repaired = load_session_secret(tmp_path, None)
    assert repaired and repaired != first and (tmp_path / SESSION_SECRET_FILE).read_bytes().strip() == repaired


def test_session_secret_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_session_secret(tmp_path, None)
    os.chmod(tmp_path / SESSION_SECRET_FILE, 0o644)
    with pytest.raises(ValueError, match="readable by its owner only"):
        load_session_secret(tmp_path, None)


def test_key_file_is_written_through_the_atomic_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[Path] = []
    real_replace = private_file.replace

    def spy(path: Path, data: bytes) -> None:
        written.append(path)
        real_replace(path, data)

    monkeypatch.setattr(private_file, "replace", spy)
    crypto.load_keyring(tmp_path, None)
    crypto.rotate_keyring(tmp_path)
    assert written == [crypto.key_file_path(tmp_path)]
    assert mode(crypto.key_file_path(tmp_path)) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".encryption.keys.lock")) == [
        crypto.KEY_FILE_NAME]
