import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optio.security.signatures import sign, verify, verify_token

BODY = b'{"action":"closed","number":7}'


def test_sign_matches_github_documented_example() -> None:
    # From GitHub's "Validating webhook deliveries" documentation.
    assert (
        sign("It's a Secret to Everybody", b"Hello, World!")
        == "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


def test_sign_is_hmac_sha256_with_prefix() -> None:
    expected = hmac.new(b"k3y", BODY, hashlib.sha256).hexdigest()
    assert sign(b"k3y", BODY) == f"sha256={expected}"
    assert sign("k3y", BODY) == sign(b"k3y", BODY)


def test_sign_refuses_empty_secret() -> None:
    with pytest.raises(ValueError, match="empty"):
        sign("", BODY)


def test_verify_accepts_valid_signature() -> None:
    header = sign("s3cret", BODY)
    assert verify("s3cret", BODY, header)
    assert verify(b"s3cret", BODY, header)
    assert verify("s3cret", BODY, header.upper().replace("SHA256=", "sha256="))
    assert verify("s3cret", BODY, f"  {header}\n")
    assert verify("s3cret", BODY, "SHA256=" + header[7:])


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha256",
        "garbage",
        "sha1=" + hmac.new(b"s3cret", BODY, hashlib.sha1).hexdigest(),
        "sha512=" + hmac.new(b"s3cret", BODY, hashlib.sha512).hexdigest(),
        hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest(),  # no prefix
        "sha256=" + "0" * 64,
        "sha256=" + "z" * 64,
        "sha256=" + hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest()[:-1],
        "sha256=" + hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest() + "00",
        "sha256=" + hmac.new(b"other", BODY, hashlib.sha256).hexdigest(),
        "sha256=" + hmac.new(b"s3cret", BODY + b" ", hashlib.sha256).hexdigest(),
        "sha256=" + "\u0661" * 64,
    ],
)
def test_verify_rejects_bad_headers(header: str | None) -> None:
    assert verify("s3cret", BODY, header) is False


def test_verify_with_empty_secret_is_false() -> None:
    assert verify("", BODY, "sha256=" + hmac.new(b"", BODY, hashlib.sha256).hexdigest()) is False


@given(st.binary(min_size=1, max_size=64), st.binary(max_size=512), st.binary(max_size=512))
def test_signature_binds_secret_and_body(secret: bytes, body: bytes, other: bytes) -> None:
    header = sign(secret, body)
    assert verify(secret, body, header)
    assert verify(secret, other, header) == (other == body)


@pytest.mark.parametrize(
    ("expected", "given_value", "ok"),
    [
        ("gl-token", "gl-token", True),
        (b"gl-token", "gl-token", True),
        ("gl-token", "gl-token ", False),
        ("gl-token", "GL-TOKEN", False),
        ("gl-token", "", False),
        ("gl-token", None, False),
        ("", "", False),
        (None, "anything", False),
        ("", "anything", False),
        ("tökën", "tökën", True),
        ("tökën", "token", False),
    ],
)
def test_verify_token(expected: str | bytes | None, given_value: str | None, ok: bool) -> None:
    assert verify_token(expected, given_value) is ok
