import base64
import re
import threading
import urllib.parse

import pytest

from optio.security import redact as redact_module
from optio.security.redact import MASK, Redactor, RedactorRegistry, default_redactor, redact

GITHUB_CLASSIC = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A"
FAKE_JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


def test_known_values_are_masked_everywhere() -> None:
    r = Redactor()
    r.add("hunter2-password")
    assert r.redact("pw=hunter2-password and again hunter2-password.") == f"pw={MASK} and again {MASK}."


def test_longest_value_wins() -> None:
    r = Redactor(["abcd", "abcdefgh"])
    assert r.redact("x abcdefgh y abcd z") == f"x {MASK} y {MASK} z"
    assert "efgh" not in r.redact("abcdefgh")


def test_short_values_are_ignored() -> None:
    r = Redactor(["abc", "on", "", "1"])
    assert len(r) == 0
    assert r.redact("abc on 1 config") == "abc on 1 config"


def test_values_with_regex_metacharacters_are_literal() -> None:
    r = Redactor(["a.b*c+(d)", "p@ss|word"])
    assert r.redact("a.b*c+(d) p@ss|word aXbbbc") == f"{MASK} {MASK} aXbbbc"


def test_set_values_replaces_the_set() -> None:
    r = Redactor(["first-secret"])
    r.set_values(["second-secret"])
    assert r.redact("first-secret second-secret") == f"first-secret {MASK}"
    r.set_values([])
    assert r.redact("second-secret") == "second-secret"


def test_update_adds_many() -> None:
    r = Redactor()
    r.update(["alpha-secret", "beta-secret"])
    r.add("gamma-secret")
    assert r.redact("alpha-secret beta-secret gamma-secret") == f"{MASK} {MASK} {MASK}"


def test_multiline_and_unicode_values() -> None:
    r = Redactor(["pässwörd-ünïcode", "line1\nline2"])
    assert r.redact("a pässwörd-ünïcode b line1\nline2 c") == f"a {MASK} b {MASK} c"


@pytest.mark.parametrize(
    "secret",
    [
        GITHUB_CLASSIC,
        "gho_" + "A" * 36,
        "ghu_" + "b1" * 18,
        "ghs_" + "Z9" * 18,
        "ghr_" + "q" * 36,
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV",
        "glpat-xY1_zA2-bC3dE4fG5hI6",
        "sk-proj-Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0",
        "sk-ant-api03-Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0-uVwXyZ",
        "sk-" + "a1B2" * 12,
        "xoxb-1234567890-0987654321-AbCdEfGhIjKl",
        "xoxp-1234567890-abcdef",
        "AKIAIOSFODNN7EXAMPLE",
        "ASIAIOSFODNN7EXAMPLE",
        "optio_" + "Ab1" * 13 + "x",
        FAKE_JWT,
    ],
)
def test_credential_shapes_are_masked(secret: str) -> None:
    line = f"export TOKEN={secret} # done"
    out = Redactor().redact(line)
    assert secret not in out
    assert out == f"export TOKEN={MASK} # done"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi_jkl", f"Authorization: Bearer {MASK}"),
        ("authorization: bearer abcdefgh", f"authorization: bearer {MASK}"),
        ('curl -H "Authorization: token zzzzzzzz" https://x', f'curl -H "Authorization: token {MASK}" https://x'),
        ("Authorization: Basic dXNlcjpwYXNz", f"Authorization: Basic {MASK}"),
        ('{"authorization": "Bearer qwerty"}', f'{{"authorization": "Bearer {MASK}"}}'),
        ("sent Bearer a1b2c3d4e5f6 upstream", f"sent Bearer {MASK} upstream"),
    ],
)
def test_authorization_values_are_masked_and_header_kept(line: str, expected: str) -> None:
    assert Redactor().redact(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "Cloning into '/var/lib/optio/worktrees/repo-12/task-345'...",
        "HEAD is now at 3f786850e387550fdab836ed7e6dc881de23001b Fix flaky test",
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
        "run 123e4567-e89b-12d3-a456-426614174000 finished in 12.5s with 0 errors",
        "pytest --skip-tests=slow -k 'not e2e' --maxfail=1",
        "disk-usage: 93% of /dev/sda1; task-sk-count=3",
        "Bearer authentication failed for user bob",
        "the authorization header was missing",
        "sha256=2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        "GET /api/v1/runs?limit=50&offset=100 200 4.2ms",
        "optio_version=0.1.0 ghp_short sk-short xoxb- AKIA123",
        "eyJ is a base64 prefix but eyJhbGciOiJIUzI1NiJ9 alone is not a JWT",
        "12345678901234567890 0xdeadbeef 2024-05-01T12:00:00Z",
        "",
    ],
)
def test_ordinary_log_text_is_untouched(line: str) -> None:
    r = Redactor(["not-in-any-line-secret"])
    assert r.redact(line) == line


def test_redact_value_walks_nested_structures() -> None:
    r = Redactor(["nested-secret"])
    data = {"a": ["x nested-secret", ("nested-secret", 3)], "b": {"c": GITHUB_CLASSIC}, "n": None, "i": 7}
    assert r.redact_value(data) == {"a": [f"x {MASK}", (MASK, 3)], "b": {"c": MASK}, "n": None, "i": 7}


def test_structlog_processor() -> None:
    r = Redactor(["proc-secret"])
    out = r.structlog_processor(None, "info", {"event": "got proc-secret", "count": 1})
    assert out == {"event": f"got {MASK}", "count": 1}


def test_default_instance_and_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redact_module, "default_redactor", Redactor())
    redact_module.default_redactor.add("module-level-secret")
    assert redact_module.redact("x module-level-secret") == f"x {MASK}"
    assert isinstance(default_redactor, Redactor)
    assert redact(f"t {GITHUB_CLASSIC}") == f"t {MASK}"


def test_pattern_is_rebuilt_only_when_values_change() -> None:
    r = Redactor(["stable-secret"])
    before = r._pattern
    r.add("stable-secret")
    r.set_values(["stable-secret"])
    r.add("abc")
    assert r._pattern is before
    r.add("another-secret")
    assert r._pattern is not before


def test_concurrent_updates_and_redaction() -> None:
    r = Redactor()
    errors: list[BaseException] = []
    values = [f"thread-secret-{i:04d}" for i in range(200)]

    def writer() -> None:
        for v in values:
            r.add(v)

    def reader() -> None:
        try:
            for _ in range(300):
                out = r.redact("prefix thread-secret-0000 suffix")
                assert out in ("prefix thread-secret-0000 suffix", f"prefix {MASK} suffix")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer), *(threading.Thread(target=reader) for _ in range(3))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(r) == 200
    assert r.redact(" ".join(values)) == " ".join([MASK] * 200)


# --- encodings and prefixes ------------------------------------------------------------------------------

ENC_SECRET = "s3cr3t-Value_with/odd+chars?&="


def _b64_variants(data: bytes) -> list[str]:
    std = base64.b64encode(data).decode()
    url = base64.urlsafe_b64encode(data).decode()
    return [std, std.rstrip("="), url, url.rstrip("=")]


@pytest.mark.parametrize("encoded", [
    *_b64_variants(ENC_SECRET.encode()),
    ENC_SECRET.encode().hex(),
    ENC_SECRET.encode().hex().upper(),
    urllib.parse.quote(ENC_SECRET, safe=""),
    urllib.parse.quote(ENC_SECRET),
    urllib.parse.quote_plus(ENC_SECRET),
    re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), urllib.parse.quote(ENC_SECRET, safe="")),
])
def test_common_encodings_of_a_value_are_masked(encoded: str) -> None:
    r = Redactor([ENC_SECRET])
    out = r.redact(f"leak: {encoded} end")
    assert out == f"leak: {MASK} end", out


@pytest.mark.parametrize("before", [b"", b"x", b"xy", b"{\"k\": 1, \"token\": \""])
@pytest.mark.parametrize("after", [b"", b"z", b"zw", b"\"}\n"])
def test_value_inside_a_larger_base64_blob_is_masked_at_every_alignment(before: bytes, after: bytes) -> None:
    r = Redactor([ENC_SECRET])
    for blob in _b64_variants(before + ENC_SECRET.encode() + after):
        out = r.redact(blob)
        assert MASK in out, blob
        # What is left around the mask cannot be decoded back into more than a couple of bytes of the value.
        assert len(out.replace(MASK, "")) <= len(blob) - len(ENC_SECRET) * 4 // 3 + 4


def test_a_leaked_prefix_of_at_least_half_the_value_is_masked() -> None:
    value = "pat-0123456789abcdefghijKLMNOPQRSTUV"  # 36 characters: prefixes of 18+ are leaks
    r = Redactor([value])
    assert r.redact(f"x {value[:18]} y") == f"x {MASK} y"
    assert r.redact(f"x {value[:30]}... y") == f"x {MASK}... y"
    assert r.redact(f"{value[:25]}ZZZ") == f"{MASK}ZZZ"  # the mask stops where the value stops matching
    assert r.redact(f"x {value[:17]} y") == f"x {value[:17]} y"  # shorter than half: not a leak by the rule


def test_short_values_leak_from_eight_characters() -> None:
    r = Redactor(["FAILED_01x"])  # 10 characters: the rule's floor of 8 applies
    assert r.redact("FAILED_0 and FAILED_ and FAILED") == f"{MASK} and FAILED_ and FAILED"
    assert r.redact("3 tests FAILED") == "3 tests FAILED"


def test_prefix_length_rule() -> None:
    assert [redact_module.prefix_length("x" * n) for n in (4, 8, 9, 16, 17, 40)] == [4, 8, 8, 8, 9, 20]


def test_values_sharing_a_prefix_mask_the_longest_present() -> None:
    r = Redactor(["common-prefix-one-1111", "common-prefix-two-2222"])
    assert r.redact("a common-prefix-two-2222 b") == f"a {MASK} b"
    assert r.redact("a common-prefix-one-1111 b") == f"a {MASK} b"


# --- per-workspace and per-repo registry -----------------------------------------------------------------


def test_registry_masks_a_workspace_value_only_in_that_workspace() -> None:
    reg = RedactorRegistry(server=Redactor())
    reg.put((2, None, "B_SECRET"), "FAILED_01")
    assert reg.for_scope(1).redact("3 tests FAILED_01") == "3 tests FAILED_01"
    assert reg.for_scope(2).redact("3 tests FAILED_01") == f"3 tests {MASK}"
    assert reg.server.redact("FAILED_01") == MASK  # the server's own log masks every workspace's values


def test_registry_repo_scope_masks_only_that_repos_runs() -> None:
    reg = RedactorRegistry(server=Redactor())
    reg.put((1, 7, "DEPLOY_KEY"), "repo-seven-key-value")
    reg.put((1, None, "WS_TOKEN"), "workspace-wide-token")
    text = "repo-seven-key-value workspace-wide-token"
    assert reg.for_scope(1, 7).redact(text) == f"{MASK} {MASK}"
    assert reg.for_scope(1, 8).redact(text) == f"repo-seven-key-value {MASK}"
    assert reg.for_scope(1).redact(text) == f"repo-seven-key-value {MASK}"
    assert reg.for_workspace(1).redact(text) == f"{MASK} {MASK}"
    assert reg.has_repo_scopes(1) and not reg.has_repo_scopes(2)


def test_registry_forgets_deleted_and_replaced_values() -> None:
    reg = RedactorRegistry(server=Redactor())
    reg.put((1, None, "TOKEN"), "old-token-value")
    assert reg.for_scope(1).redact("old-token-value") == MASK
    assert reg.put((1, None, "TOKEN"), "new-token-value") == "old-token-value"
    assert reg.for_scope(1).redact("old-token-value new-token-value") == f"old-token-value {MASK}"
    reg.remove((1, None, "TOKEN"))
    assert reg.for_scope(1).redact("new-token-value") == "new-token-value"
    assert reg.server.redact("new-token-value") == "new-token-value"


def test_registry_load_replaces_everything_and_registries_are_per_database() -> None:
    reg = redact_module.registry_for("sqlite:///one.db")
    assert redact_module.registry_for("sqlite:///one.db") is reg
    assert redact_module.registry_for("sqlite:///two.db") is not reg
    reg.server = Redactor()
    reg.put((1, None, "A"), "first-value-1")
    reg.load({(1, None, "B"): "second-value-2"})
    assert reg.for_scope(1).redact("first-value-1 second-value-2") == f"first-value-1 {MASK}"
