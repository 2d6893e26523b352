import hashlib
import re

import pytest

from optio.security.redact import Redactor
from optio.security.tokens import (
    SCRYPT_N,
    ApiKeyMaterial,
    check_csrf,
    csrf_token_for,
    generate_api_key,
    hash_api_key,
    hash_password,
    hash_token,
    looks_like_api_key,
    new_session_token,
    password_needs_rehash,
    verify_api_key,
    verify_password,
)

FAST = {"n": 2**10, "r": 8, "p": 1}

# --- API keys -----------------------------------------------------------------


def test_generated_api_key_shape() -> None:
    key = generate_api_key()
    assert isinstance(key, ApiKeyMaterial)
    assert re.fullmatch(r"optio_[A-Za-z0-9]{40}", key.plaintext)
    assert key.prefix == key.plaintext[:12]
    assert key.prefix.startswith("optio_")
    assert key.digest == hashlib.sha256(key.plaintext.encode()).hexdigest()
    assert key.digest == hash_api_key(key.plaintext)
    assert looks_like_api_key(key.plaintext)


def test_generated_keys_are_unique_and_use_the_whole_alphabet() -> None:
    keys = [generate_api_key().plaintext for _ in range(300)]
    assert len(set(keys)) == 300
    used = set("".join(k[6:] for k in keys))
    assert len(used) == 62


def test_plaintext_is_not_in_repr() -> None:
    key = generate_api_key()
    assert key.plaintext not in repr(key)
    assert key.prefix in repr(key)


def test_generated_keys_are_redacted_from_logs() -> None:
    key = generate_api_key()
    assert key.plaintext not in Redactor().redact(f"curl -H 'X-Api-Key: {key.plaintext}'")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "optio_",
        "optio_" + "a" * 39,
        "optio_" + "a" * 41,
        "optio_" + "a" * 39 + "-",
        "OPTIO_" + "a" * 40,
        "ghp_" + "a" * 40,
        " optio_" + "a" * 40,
        "optio_" + "a" * 40 + "\n",
    ],
)
def test_looks_like_api_key_rejects_other_shapes(value: str) -> None:
    assert not looks_like_api_key(value)


def test_verify_api_key() -> None:
    key = generate_api_key()
    assert verify_api_key(key.plaintext, key.digest)
    assert verify_api_key(key.plaintext, key.digest.upper())
    assert not verify_api_key(generate_api_key().plaintext, key.digest)
    assert not verify_api_key("", key.digest)
    assert not verify_api_key(key.plaintext, "")
    assert not verify_api_key(key.plaintext, "ü" * 64)


def test_hash_token_is_the_same_digest() -> None:
    token = new_session_token()
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()


# --- passwords ------------------------------------------------------------------


def test_password_round_trip_with_defaults() -> None:
    encoded = hash_password("correct horse battery staple")
    scheme, n, r, p, salt, digest = encoded.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", SCRYPT_N, 8, 1)
    assert salt and digest
    assert verify_password("correct horse battery staple", encoded)
    assert not verify_password("correct horse battery stapl", encoded)
    assert not password_needs_rehash(encoded)


def test_salt_is_random() -> None:
    assert hash_password("same", **FAST) != hash_password("same", **FAST)


def test_unicode_passwords() -> None:
    encoded = hash_password("pässwörd 🔑", **FAST)
    assert verify_password("pässwörd 🔑", encoded)
    assert not verify_password("passwort 🔑", encoded)


def test_parameters_are_read_from_the_hash() -> None:
    encoded = hash_password("pw-123", **FAST)
    assert encoded.startswith("scrypt$1024$8$1$")
    assert verify_password("pw-123", encoded)
    assert password_needs_rehash(encoded)


def test_empty_password_is_refused() -> None:
    with pytest.raises(ValueError):
        hash_password("")
    assert not verify_password("", hash_password("x", **FAST))


@pytest.mark.parametrize("params", [{"n": 1000}, {"n": 1}, {"r": 0}, {"p": 0}, {"n": 2**22, "r": 8}])
def test_bad_parameters_are_refused(params: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        hash_password("pw", **{**FAST, **params})


def _tamper(encoded: str, index: int, value: str) -> str:
    parts = encoded.split("$")
    parts[index] = value
    return "$".join(parts)


def test_malformed_hashes_are_false_not_errors() -> None:
    good = hash_password("pw-123", **FAST)
    bad = [
        "",
        "plain",
        "bcrypt$2b$12$abc",
        good.replace("scrypt$", "argon2$"),
        good + "$extra",
        _tamper(good, 1, "x"),
        _tamper(good, 1, "1000"),
        _tamper(good, 1, str(2**30)),  # would need 1 TiB: refused, not attempted
        _tamper(good, 2, "0"),
        _tamper(good, 4, "!!!"),
        _tamper(good, 4, ""),
        _tamper(good, 5, "AAAA"),
        _tamper(good, 5, good.split("$")[5][:-2] + "AA"),
        _tamper(good, 4, good.split("$")[4][:-2] + "AA"),
    ]
    for encoded in bad:
        assert verify_password("pw-123", encoded) is False, encoded


def test_unreadable_hash_needs_rehash() -> None:
    assert password_needs_rehash("plain")
    assert password_needs_rehash("")


# --- sessions and CSRF -------------------------------------------------------------


def test_session_tokens_are_unique_and_url_safe() -> None:
    tokens = {new_session_token() for _ in range(200)}
    assert len(tokens) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", t) for t in tokens)


def test_csrf_round_trip() -> None:
    session = new_session_token()
    token = csrf_token_for(session, "app-secret")
    assert token == csrf_token_for(session, b"app-secret")
    assert check_csrf(session, "app-secret", token)


def test_csrf_is_bound_to_session_and_secret() -> None:
    session, other_session = new_session_token(), new_session_token()
    token = csrf_token_for(session, "app-secret")
    assert not check_csrf(other_session, "app-secret", token)
    assert not check_csrf(session, "other-secret", token)
    assert not check_csrf(session, "app-secret", token[:-1])
    assert not check_csrf(session, "app-secret", token + "A")
    assert not check_csrf(session, "app-secret", "")
    assert not check_csrf(session, "app-secret", None)
    assert not check_csrf("", "app-secret", token)
    assert not check_csrf(None, "app-secret", token)
    assert not check_csrf(session, "", token)
    assert not check_csrf(session, "app-secret", "é" * len(token))
    assert token != session


def test_csrf_refuses_empty_secret() -> None:
    with pytest.raises(ValueError):
        csrf_token_for(new_session_token(), b"")
