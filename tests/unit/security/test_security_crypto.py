import base64
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optio.security.crypto import (
    KEY_FILE_NAME,
    InsecureKeyFileError,
    KeyConfigError,
    Keyring,
    SecretDecryptError,
    key_version_of,
    load_keyring,
    parse_key,
    reencrypt,
    retire_key,
    rotate_keyring,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- Keyring ---------------------------------------------------------------


def test_round_trip_and_token_shape() -> None:
    ring = Keyring({1: KEY_A}, 1)
    token = ring.encrypt("hunter2-secret")
    version, nonce, _ciphertext = token.split(".")
    assert version == "v1"
    assert len(base64.urlsafe_b64decode(nonce + "==")) == 12
    assert "hunter2" not in token
    assert ring.decrypt(token) == "hunter2-secret"
    assert key_version_of(token) == 1


def test_each_encryption_uses_a_fresh_nonce() -> None:
    ring = Keyring({1: KEY_A}, 1)
    tokens = {ring.encrypt("same value") for _ in range(50)}
    assert len(tokens) == 50
    assert len({t.split(".")[1] for t in tokens}) == 50


@settings(max_examples=50, deadline=None)
@given(st.text())
def test_round_trip_any_text(value: str) -> None:
    ring = Keyring({3: KEY_A}, 3)
    assert ring.decrypt(ring.encrypt(value, aad=b"row-1"), aad=b"row-1") == value


def test_aad_binds_token_to_its_record() -> None:
    ring = Keyring({1: KEY_A}, 1)
    token = ring.encrypt("s3cret", aad=b"secret:42")
    assert ring.decrypt(token, aad=b"secret:42") == "s3cret"
    with pytest.raises(SecretDecryptError, match="authentication"):
        ring.decrypt(token, aad=b"secret:43")
    with pytest.raises(SecretDecryptError):
        ring.decrypt(token)


def test_tampered_ciphertext_is_rejected() -> None:
    ring = Keyring({1: KEY_A}, 1)
    token = ring.encrypt("value")
    prefix, nonce, ct = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(ct + "=" * (-len(ct) % 4)))
    raw[0] ^= 1
    tampered = f"{prefix}.{nonce}.{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"
    with pytest.raises(SecretDecryptError, match="altered"):
        ring.decrypt(tampered)


def test_relabelled_version_is_rejected() -> None:
    # Same key under two versions: only the version binding in the AAD catches a relabel.
    ring = Keyring({1: KEY_A, 2: KEY_A}, 1)
    token = ring.encrypt("value")
    with pytest.raises(SecretDecryptError):
        ring.decrypt("v2" + token[2:])


def test_wrong_key_is_rejected() -> None:
    token = Keyring({1: KEY_A}, 1).encrypt("value")
    with pytest.raises(SecretDecryptError):
        Keyring({1: KEY_B}, 1).decrypt(token)


def test_unknown_version_names_the_version() -> None:
    token = Keyring({7: KEY_A}, 7).encrypt("value")
    with pytest.raises(SecretDecryptError, match="key version 7"):
        Keyring({1: KEY_A}, 1).decrypt(token)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "plaintext",
        "v1.abc",
        "v0.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAA",
        "x1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAA",
        "v1.AAAA.AAAAAAAAAAAAAAAAAAAAAAAA",  # short nonce
        "v1.AAAAAAAAAAAAAAAA.AAAA",  # truncated
        "v1.AAAAAAAAAAAAAAAA.AAAA AAAA",
        "v1.AAAAAAAAAAAAAAAA.A",  # invalid base64 length
        "v1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAA\n",
    ],
)
def test_bad_format_is_a_clear_error(token: str) -> None:
    ring = Keyring({1: KEY_A}, 1)
    with pytest.raises(SecretDecryptError):
        ring.decrypt(token)


def test_non_string_token_is_rejected() -> None:
    with pytest.raises(SecretDecryptError):
        Keyring({1: KEY_A}, 1).decrypt(b"v1.x.y")  # type: ignore[arg-type]


def test_keyring_validation() -> None:
    with pytest.raises(KeyConfigError):
        Keyring({}, 1)
    with pytest.raises(KeyConfigError, match="32 bytes"):
        Keyring({1: b"short"}, 1)
    with pytest.raises(KeyConfigError, match="not in the keyring"):
        Keyring({1: KEY_A}, 2)
    with pytest.raises(KeyConfigError):
        Keyring({0: KEY_A}, 0)


def test_repr_and_keys_do_not_leak_or_mutate() -> None:
    ring = Keyring({1: KEY_A}, 1)
    assert KEY_A.hex() not in repr(ring)
    assert repr(KEY_A) not in repr(ring)
    with pytest.raises(TypeError):
        ring.keys[2] = KEY_B  # type: ignore[index]


def test_with_new_current_and_reencrypt() -> None:
    old = Keyring({1: KEY_A}, 1)
    token = old.encrypt("forge-token", aad=b"r1")
    new = old.with_new_current(KEY_B)
    assert new.current_version == 2
    assert new.versions == [1, 2]
    assert new.decrypt(token, aad=b"r1") == "forge-token"
    assert new.needs_reencrypt(token)

    moved = reencrypt(token, new, aad=b"r1")
    assert key_version_of(moved) == 2
    assert not new.needs_reencrypt(moved)
    assert Keyring({2: KEY_B}, 2).decrypt(moved, aad=b"r1") == "forge-token"
    # already current: unchanged, still verified
    assert reencrypt(moved, new, aad=b"r1") == moved
    with pytest.raises(SecretDecryptError):
        reencrypt(moved, new, aad=b"other")


def test_with_new_current_refuses_a_key_already_present() -> None:
    with pytest.raises(KeyConfigError, match="already key version 1"):
        Keyring({1: KEY_A}, 1).with_new_current(KEY_A)


# --- parse_key ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        KEY_B.hex(),
        KEY_B.hex().upper(),
        base64.b64encode(KEY_B).decode(),
        base64.urlsafe_b64encode(KEY_B).decode(),
        base64.urlsafe_b64encode(KEY_B).decode().rstrip("="),
        "  " + base64.b64encode(KEY_B).decode() + "\n",
    ],
)
def test_parse_key_accepts_hex_and_base64(text: str) -> None:
    assert parse_key(text) == KEY_B


def test_parse_key_standard_and_urlsafe_alphabets() -> None:
    key = bytes([0xFB, 0xFF] * 16)  # encodes with '+' '/' vs '-' '_'
    assert parse_key(base64.b64encode(key).decode()) == key
    assert parse_key(base64.urlsafe_b64encode(key).decode()) == key


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "password",
        KEY_B.hex()[:-2],
        base64.b64encode(KEY_B[:16]).decode(),
        base64.b64encode(KEY_B + b"x").decode(),
        "zz" * 32,
        base64.b64encode(KEY_B).decode()[:-4] + "!!!=",
    ],
)
def test_parse_key_rejects_everything_else(text: str) -> None:
    with pytest.raises(KeyConfigError):
        parse_key(text)


def test_parse_key_error_explains_the_accepted_forms() -> None:
    with pytest.raises(KeyConfigError, match=r"base64.*64 hex"):
        parse_key("not-a-key")


# --- key file ----------------------------------------------------------------


def test_key_file_created_0600_and_reused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ring = load_keyring(data, None)
    path = data / KEY_FILE_NAME
    assert path.exists()
    assert mode_of(path) == 0o600
    body = json.loads(path.read_text())
    assert body["current"] == 1
    assert base64.urlsafe_b64decode(body["keys"]["1"]) == ring.keys[1]

    again = load_keyring(data, None)
    assert again.keys[1] == ring.keys[1]
    assert again.decrypt(ring.encrypt("x")) == "x"
    assert [p.name for p in data.iterdir() if p.name.endswith(".tmp")] == []


def test_key_file_created_0600_even_with_permissive_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        load_keyring(tmp_path, None)
    finally:
        os.umask(previous)
    assert mode_of(tmp_path / KEY_FILE_NAME) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_refuses_key_file_with_wide_permissions(tmp_path: Path, mode: int) -> None:
    load_keyring(tmp_path, None)
    path = tmp_path / KEY_FILE_NAME
    path.chmod(mode)
    with pytest.raises(InsecureKeyFileError) as info:
        load_keyring(tmp_path, None)
    assert str(path) in str(info.value)
    assert "chmod 600" in str(info.value)


def test_tighter_permissions_are_fine(tmp_path: Path) -> None:
    ring = load_keyring(tmp_path, None)
    (tmp_path / KEY_FILE_NAME).chmod(0o400)
    assert load_keyring(tmp_path, None).keys == ring.keys


def test_refuses_symlinked_key_file(tmp_path: Path) -> None:
    real = tmp_path / "real"
    load_keyring(real, None)
    other = tmp_path / "other"
    other.mkdir()
    (other / KEY_FILE_NAME).symlink_to(real / KEY_FILE_NAME)
    with pytest.raises(KeyConfigError, match="symbolic link"):
        load_keyring(other, None)


def test_corrupt_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"{not json")
    os.close(fd)
    with pytest.raises(KeyConfigError, match="not a valid key file"):
        load_keyring(tmp_path, None)


def test_key_file_with_bad_key_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, json.dumps({"current": 1, "keys": {"1": "abcd"}}).encode())
    os.close(fd)
    with pytest.raises(KeyConfigError, match="invalid key"):
        load_keyring(tmp_path, None)


def test_concurrent_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    results: list[Keyring] = []
    errors: list[BaseException] = []

    def load() -> None:
        try:
            results.append(load_keyring(tmp_path, None))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    on_disk = load_keyring(tmp_path, None).keys[1]
    assert all(r.keys[1] == on_disk for r in results)


# --- env key -------------------------------------------------------------------


def test_env_key_is_current_and_no_file_is_written(tmp_path: Path) -> None:
    ring = load_keyring(tmp_path, base64.b64encode(KEY_B).decode())
    assert ring.current_version == 1
    assert ring.keys[1] == KEY_B
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_env_key_rejects_malformed_value(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError, match="OPTIO_ENCRYPTION_KEY"):
        load_keyring(tmp_path, "too-short")


def test_env_key_blank_falls_back_to_key_file(tmp_path: Path) -> None:
    load_keyring(tmp_path, "")
    assert (tmp_path / KEY_FILE_NAME).exists()


def test_env_key_with_older_versions_from_file(tmp_path: Path) -> None:
    file_ring = load_keyring(tmp_path, None)
    old_token = file_ring.encrypt("legacy")
    ring = load_keyring(tmp_path, f"2:{KEY_B.hex()}")
    assert ring.current_version == 2
    assert ring.decrypt(old_token) == "legacy"
    assert key_version_of(ring.encrypt("new")) == 2


def test_env_key_matching_a_file_version_takes_that_version(tmp_path: Path) -> None:
    file_ring = load_keyring(tmp_path, None)
    env = base64.urlsafe_b64encode(file_ring.keys[1]).decode()
    assert load_keyring(tmp_path, env).current_version == 1


def test_env_key_without_version_next_to_other_file_keys_is_ambiguous(tmp_path: Path) -> None:
    load_keyring(tmp_path, None)
    with pytest.raises(KeyConfigError, match="'2:<key>'"):
        load_keyring(tmp_path, KEY_B.hex())


def test_env_key_version_clash_with_file_is_refused(tmp_path: Path) -> None:
    load_keyring(tmp_path, None)
    with pytest.raises(KeyConfigError, match="different key"):
        load_keyring(tmp_path, f"1:{KEY_B.hex()}")


def test_env_key_still_refuses_insecure_key_file(tmp_path: Path) -> None:
    load_keyring(tmp_path, None)
    (tmp_path / KEY_FILE_NAME).chmod(0o644)
    with pytest.raises(InsecureKeyFileError):
        load_keyring(tmp_path, f"2:{KEY_B.hex()}")


def test_env_rotation_flow(tmp_path: Path) -> None:
    ring = load_keyring(tmp_path, KEY_A.hex())
    stored = [ring.encrypt(f"value-{i}", aad=str(i).encode()) for i in range(3)]

    rotated = ring.with_new_current(KEY_B)
    stored = [reencrypt(t, rotated, aad=str(i).encode()) for i, t in enumerate(stored)]

    after_restart = load_keyring(tmp_path, f"{rotated.current_version}:{KEY_B.hex()}")
    assert [after_restart.decrypt(t, aad=str(i).encode()) for i, t in enumerate(stored)] == [
        "value-0",
        "value-1",
        "value-2",
    ]


# --- rotation with the key file -------------------------------------------------


def test_rotate_reencrypt_retire(tmp_path: Path) -> None:
    ring = load_keyring(tmp_path, None)
    token = ring.encrypt("db-password")

    rotated = rotate_keyring(tmp_path)
    assert rotated.current_version == 2
    assert rotated.keys[1] == ring.keys[1]
    assert rotated.keys[2] != ring.keys[1]
    assert mode_of(tmp_path / KEY_FILE_NAME) == 0o600

    reloaded = load_keyring(tmp_path, None)
    assert reloaded.current_version == 2
    assert reloaded.decrypt(token) == "db-password"
    assert key_version_of(reloaded.encrypt("x")) == 2

    moved = reencrypt(token, reloaded)
    assert key_version_of(moved) == 2

    with pytest.raises(KeyConfigError, match="current"):
        retire_key(tmp_path, 2)
    with pytest.raises(KeyConfigError, match="does not exist"):
        retire_key(tmp_path, 9)

    retired = retire_key(tmp_path, 1)
    assert retired.versions == [2]
    final = load_keyring(tmp_path, None)
    assert final.versions == [2]
    assert final.decrypt(moved) == "db-password"
    with pytest.raises(SecretDecryptError, match="version 1"):
        final.decrypt(token)


def test_rotate_without_key_file_explains_env_rotation(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError, match="with_new_current"):
        rotate_keyring(tmp_path)


def test_rotate_refuses_insecure_key_file(tmp_path: Path) -> None:
    load_keyring(tmp_path, None)
    (tmp_path / KEY_FILE_NAME).chmod(0o644)
    with pytest.raises(InsecureKeyFileError):
        rotate_keyring(tmp_path)


def test_concurrent_rotations_each_add_a_version(tmp_path: Path) -> None:
    load_keyring(tmp_path, None)
    threads = [threading.Thread(target=rotate_keyring, args=(tmp_path,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ring = load_keyring(tmp_path, None)
    assert ring.versions == [1, 2, 3, 4, 5]
    assert ring.current_version == 5
