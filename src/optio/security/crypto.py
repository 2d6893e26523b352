"""Secrets encrypted at rest.

Optio stores forge tokens, model API keys and user secrets in its database. A
copied database file or a backup must not hand those out, so every value is
sealed with AES-256-GCM before it is written. GCM authenticates as well as
encrypts: a flipped bit or a ciphertext pasted into another row (when the row
identity is passed as ``aad``) fails loudly instead of decrypting to garbage.

Each value carries the version of the key that sealed it (``v3.<nonce>.<ct>``),
so keys can be rotated without a flag day: new writes use the current key, old
values stay readable until they are re-encrypted, then the old key is retired.

Where the key comes from:

* ``OPTIO_ENCRYPTION_KEY`` (passed to :func:`load_keyring` as ``env_key``) keeps
  the key off the data disk, which is what a scale-out deployment wants. The
  value is 32 bytes as base64 (standard or URL-safe) or 64 hex characters,
  optionally prefixed with its version, ``"2:<key>"``; without a prefix it is
  version 1 (or the version it already has in the key file).
* Otherwise ``<data_dir>/encryption.keys`` is created on first use, readable by
  the owner only, so a laptop install works with nothing configured.

Rotating an env key: while still running with the old key, build
``keyring.with_new_current(new_key)`` and :func:`reencrypt` every stored value
with it; then restart with ``OPTIO_ENCRYPTION_KEY="<new version>:<new key>"``.
Values still sealed with the old version stay readable only if that key is
still present, so finish the re-encryption before dropping it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from optio.security import private_file

KEY_FILE_NAME = "encryption.keys"
KEY_BYTES = 32
NONCE_BYTES = 12

_TOKEN_RE = re.compile(r"v([1-9][0-9]{0,8})\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")
_HEX_KEY_RE = re.compile(r"[0-9a-fA-F]{64}")
_VERSIONED_ENV_RE = re.compile(r"^\s*v?([1-9][0-9]{0,8})\s*:\s*(.*?)\s*$", re.DOTALL)


class SecretDecryptError(ValueError):
    """A stored secret could not be opened: wrong key, tampered, or not a token."""


class KeyConfigError(ValueError):
    """The encryption key material is missing, malformed or unsafe to use."""


class InsecureKeyFileError(KeyConfigError):
    """The key file can be read by users other than its owner."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Decode URL-safe or standard base64, with or without padding, strictly."""
    cleaned = text.strip()
    padded = cleaned + "=" * (-len(cleaned) % 4)
    try:
        if "-" in cleaned or "_" in cleaned:
            return base64.b64decode(padded, altchars=b"-_", validate=True)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not valid base64: {exc}") from None


def _aad_for(version: int, aad: bytes) -> bytes:
    # Binding the version into the associated data means a token cannot be
    # relabelled with another version without failing authentication.
    return f"optio-secret-v{version}".encode() + b"\x00" + aad


def _check_key(version: int, key: bytes) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise KeyConfigError(f"key version must be a positive integer, got {version!r}")
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
        raise KeyConfigError(f"key version {version} must be exactly {KEY_BYTES} bytes")


@dataclass(frozen=True, eq=False)
class Keyring:
    """Every key version Optio can still read, and the one it writes with.

    Immutable so a keyring handed to several threads never changes under them;
    rotation builds a new one.
    """

    keys: Mapping[int, bytes] = field(repr=False)
    current_version: int

    def __post_init__(self) -> None:
        keys = {int(v): bytes(k) for v, k in dict(self.keys).items()}
        if not keys:
            raise KeyConfigError("a keyring needs at least one key")
        for version, key in keys.items():
            _check_key(version, key)
        if self.current_version not in keys:
            raise KeyConfigError(f"current key version {self.current_version} is not in the keyring")
        object.__setattr__(self, "keys", MappingProxyType(keys))

    def __repr__(self) -> str:
        return f"Keyring(versions={self.versions}, current_version={self.current_version})"

    @property
    def versions(self) -> list[int]:
        return sorted(self.keys)

    def encrypt(self, plaintext: str, *, aad: bytes = b"") -> str:
        """Seal ``plaintext`` under the current key with a fresh random nonce."""
        version = self.current_version
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.keys[version]).encrypt(nonce, plaintext.encode("utf-8"), _aad_for(version, aad))
        return f"v{version}.{_b64encode(nonce)}.{_b64encode(sealed)}"

    def decrypt(self, token: str, *, aad: bytes = b"") -> str:
        """Open a token sealed by any version this keyring still holds."""
        version, nonce, sealed = _parse_token(token)
        key = self.keys.get(version)
        if key is None:
            raise SecretDecryptError(
                f"secret was encrypted with key version {version}, which is not loaded "
                f"(known versions: {self.versions}); restore that key to read it"
            )
        try:
            plain = AESGCM(key).decrypt(nonce, sealed, _aad_for(version, aad))
        except InvalidTag:
            raise SecretDecryptError(
                f"secret failed authentication under key version {version}: "
                "it was altered, belongs to another record, or the key is wrong"
            ) from None
        try:
            return plain.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretDecryptError("decrypted secret is not valid UTF-8") from None

    def with_new_current(self, key: bytes) -> Keyring:
        """A keyring that writes with ``key`` as the next version and still reads the old ones.

        This is rotation for keys supplied through ``OPTIO_ENCRYPTION_KEY``:
        Optio never writes such keys to disk, so the caller brings the new key,
        re-encrypts with the returned keyring, and restarts with the new key
        set as ``"<version>:<key>"`` (the version is ``current_version`` of the
        result).
        """
        key = bytes(key)
        _check_key(1, key)
        for version, existing in self.keys.items():
            if secrets.compare_digest(existing, key):
                raise KeyConfigError(f"this key is already key version {version}; supply a new key")
        version = max(self.keys) + 1
        return Keyring({**self.keys, version: key}, version)

    def without_version(self, version: int) -> Keyring:
        if version == self.current_version:
            raise KeyConfigError(f"key version {version} is current and cannot be retired")
        if version not in self.keys:
            raise KeyConfigError(f"key version {version} does not exist (known versions: {self.versions})")
        return Keyring({v: k for v, k in self.keys.items() if v != version}, self.current_version)

    def needs_reencrypt(self, token: str) -> bool:
        return key_version_of(token) != self.current_version


def _parse_token(token: str) -> tuple[int, bytes, bytes]:
    if not isinstance(token, str):
        raise SecretDecryptError(f"encrypted secret must be a string, got {type(token).__name__}")
    match = _TOKEN_RE.fullmatch(token)
    if match is None:
        raise SecretDecryptError("not an encrypted secret (expected 'v<version>.<nonce>.<ciphertext>')")
    version = int(match.group(1))
    try:
        nonce = _b64decode(match.group(2))
        sealed = _b64decode(match.group(3))
    except ValueError:
        raise SecretDecryptError("encrypted secret is not valid base64") from None
    if len(nonce) != NONCE_BYTES:
        raise SecretDecryptError(f"encrypted secret has a {len(nonce)}-byte nonce, expected {NONCE_BYTES}")
    if len(sealed) < 16:
        raise SecretDecryptError("encrypted secret is truncated")
    return version, nonce, sealed


def key_version_of(token: str) -> int:
    """The key version a token was sealed with, without needing the key."""
    return _parse_token(token)[0]


def reencrypt(token: str, keyring: Keyring, *, aad: bytes = b"") -> str:
    """Seal a stored value under the keyring's current version.

    A token already on the current version is returned unchanged (after it was
    checked to open), so a re-encryption sweep can run twice without rewriting
    every row.
    """
    plaintext = keyring.decrypt(token, aad=aad)
    if key_version_of(token) == keyring.current_version:
        return token
    return keyring.encrypt(plaintext, aad=aad)


def parse_key(text: str) -> bytes:
    """Decode a 32-byte key given as 64 hex characters or base64 (standard or URL-safe)."""
    value = text.strip()
    if not value:
        raise KeyConfigError("encryption key is empty")
    if _HEX_KEY_RE.fullmatch(value):
        return bytes.fromhex(value)
    try:
        key = _b64decode(value)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise KeyConfigError(
            "OPTIO_ENCRYPTION_KEY must be 32 random bytes encoded as base64 (standard or URL-safe) "
            "or as 64 hex characters, optionally prefixed by its version as '<version>:<key>'; "
            "generate one with: python -c \"import secrets; print(secrets.token_urlsafe(32))\""
        )
    return key


def _parse_env_key(env_key: str) -> tuple[int | None, bytes]:
    match = _VERSIONED_ENV_RE.match(env_key)
    if match:
        return int(match.group(1)), parse_key(match.group(2))
    return None, parse_key(env_key)


def key_file_path(data_dir: Path) -> Path:
    return Path(data_dir) / KEY_FILE_NAME


def _check_permissions(path: Path, st: os.stat_result) -> None:
    if os.name != "posix":
        return
    if not stat.S_ISREG(st.st_mode):
        raise KeyConfigError(f"{path} is not a regular file")
    if st.st_mode & 0o077:
        raise InsecureKeyFileError(
            f"refusing to use {path}: its permissions are {stat.S_IMODE(st.st_mode):04o}, "
            f"so other users can read the encryption keys; run 'chmod 600 {path}' "
            "(and consider rotating the keys if others may have read it)"
        )


def _read_key_file(path: Path) -> Keyring | None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise KeyConfigError(f"refusing to use {path}: it is a symbolic link") from None
        raise
    with os.fdopen(fd, "rb") as handle:
        _check_permissions(path, os.fstat(handle.fileno()))
        raw = handle.read()
    try:
        data = json.loads(raw)
        current = int(data["current"])
        keys = {int(v): parse_key(k) for v, k in data["keys"].items()}
    except KeyConfigError as exc:
        raise KeyConfigError(f"{path} holds an invalid key: {exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KeyConfigError(
            f'{path} is not a valid key file (expected {{"current": N, "keys": {{"N": "<base64>"}}}}): {exc}'
        ) from None
    try:
        return Keyring(keys, current)
    except KeyConfigError as exc:
        raise KeyConfigError(f"{path}: {exc}") from None


def _serialise(keyring: Keyring) -> bytes:
    body = {
        "current": keyring.current_version,
        "keys": {str(v): base64.urlsafe_b64encode(keyring.keys[v]).decode("ascii") for v in keyring.versions},
    }
    return (json.dumps(body, indent=2) + "\n").encode("ascii")


def _replace_key_file(path: Path, keyring: Keyring) -> None:
    private_file.replace(path, _serialise(keyring))


def _create_key_file(path: Path, keyring: Keyring) -> Keyring:
    """Create the key file unless another process won the race; return whichever keyring is on disk."""
    if private_file.create(path, _serialise(keyring)):
        return keyring
    existing = _read_key_file(path)
    if existing is None:
        raise KeyConfigError(f"{path} vanished while it was being created") from None
    return existing


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Serialise rotations so two at once cannot both add 'the next version'."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    lock_path = Path(data_dir) / f".{KEY_FILE_NAME}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _ensure_dir(data_dir: Path) -> Path:
    path = Path(data_dir)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def load_keyring(data_dir: Path, env_key: str | None) -> Keyring:
    """The keyring Optio encrypts with, from ``OPTIO_ENCRYPTION_KEY`` or the key file.

    With ``env_key`` the key file is optional and only supplies older versions
    still needed for reading; it is never created. Without it the key file is
    created on first use (mode 0600) and reused afterwards.
    """
    path = key_file_path(data_dir)
    if env_key is not None and env_key.strip():
        version, key = _parse_env_key(env_key)
        from_file = _read_key_file(path)
        older: dict[int, bytes] = dict(from_file.keys) if from_file else {}
        if version is None:
            matching = [v for v, k in older.items() if secrets.compare_digest(k, key)]
            if matching:
                version = matching[0]
            elif not older:
                version = 1
            else:
                raise KeyConfigError(
                    f"OPTIO_ENCRYPTION_KEY has no version and {path} already holds versions "
                    f"{sorted(older)}; set it as '<version>:<key>' with a version of your choosing, "
                    f"e.g. '{max(older) + 1}:<key>' for a new key"
                )
        elif version in older and not secrets.compare_digest(older[version], key):
            raise KeyConfigError(
                f"OPTIO_ENCRYPTION_KEY claims version {version}, but {path} holds a different key "
                f"for that version; pick an unused version (e.g. {max(older) + 1})"
            )
        return Keyring({**older, version: key}, version)

    existing = _read_key_file(path)
    if existing is not None:
        return existing
    _ensure_dir(data_dir)
    return _create_key_file(path, Keyring({1: secrets.token_bytes(KEY_BYTES)}, 1))


def rotate_keyring(data_dir: Path) -> Keyring:
    """Add a new random key version to the key file and make it current.

    Old versions stay so existing values remain readable; re-encrypt them with
    :func:`reencrypt`, then drop the old key with :func:`retire_key`.
    """
    path = key_file_path(data_dir)
    with _locked(_ensure_dir(data_dir)):
        keyring = _read_key_file(path)
        if keyring is None:
            raise KeyConfigError(
                f"no key file at {path} to rotate; if the key comes from OPTIO_ENCRYPTION_KEY, "
                "rotate by supplying a new key (Keyring.with_new_current)"
            )
        rotated = keyring.with_new_current(secrets.token_bytes(KEY_BYTES))
        _replace_key_file(path, rotated)
        return rotated


def retire_key(data_dir: Path, version: int) -> Keyring:
    """Remove an old key version from the key file once nothing is sealed with it.

    Values still sealed with a retired version can never be read again, so
    call this only after every stored value was re-encrypted.
    """
    path = key_file_path(data_dir)
    with _locked(_ensure_dir(data_dir)):
        keyring = _read_key_file(path)
        if keyring is None:
            raise KeyConfigError(f"no key file at {path}")
        retired = keyring.without_version(version)
        _replace_key_file(path, retired)
        return retired
