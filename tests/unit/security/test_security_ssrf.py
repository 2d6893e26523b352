import asyncio
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from optio.security.ssrf import (
    Allowlist,
    UnsafeURLError,
    check_url,
    guarded_async_client,
    guarded_client,
    parse_inet_aton,
    why_unsafe,
)

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"


def fake_resolver(table: dict[str, list[str]]) -> Any:
    """Resolve names from ``table`` like getaddrinfo does; unknown names fail like DNS does."""
    calls: list[str] = []

    def resolve(host: str, port: int, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> list:
        calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out = []
        for addr in table[host]:
            if ":" in addr:
                out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (addr, port, 0, 0)))
            else:
                out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (addr, port)))
        return out

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


TABLE = {
    "hooks.example.com": [PUBLIC_V4],
    "v6.example.com": [PUBLIC_V6],
    "dual.example.com": [PUBLIC_V4, PUBLIC_V6],
    "sneaky.example.com": [PUBLIC_V4, "10.1.2.3"],
    "rebind.example.com": ["127.0.0.1"],
    "metadata.example.com": ["169.254.169.254"],
    "mapped.example.com": ["::ffff:127.0.0.1"],
    "gitlab.corp": ["10.0.0.5"],
    "nat64-public.example.com": ["64:ff9b::5db8:d822"],
    "weird.example.com": ["not-an-ip"],
    "empty.example.com": [],
    "localhost": ["127.0.0.1", "::1"],
}
RESOLVER = fake_resolver(TABLE)


# --- check_url ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/services/T000/B000/XXXX",
        "http://hooks.example.com:8080/x?token=1",
        "https://v6.example.com/",
        "https://dual.example.com/",
        "https://HOOKS.Example.COM./",
        f"http://{PUBLIC_V4}/",
        f"http://[{PUBLIC_V6}]:8443/",
        "https://nat64-public.example.com/",
        f"http://[::ffff:{PUBLIC_V4}]/",
        "https://8.8.8.8/",
    ],
)
def test_public_urls_pass(url: str) -> None:
    check_url(url, resolver=RESOLVER)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://127.9.9.9:9000/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://localhost/", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://172.31.255.254/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://[fc00::1]/", "private"),
        ("http://[fd12:3456::1]/", "private"),
        ("http://169.254.1.1/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://100.127.255.254/", "carrier-grade NAT"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://100.100.100.200/", "metadata"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:7f00:1]/", "loopback"),
        ("http://[::ffff:169.254.169.254]/", "metadata"),
        ("http://[64:ff9b::a00:1]/", "private"),
        ("http://[2002:7f00:1::1]/", "loopback"),
        ("http://[2002:a9fe:a9fe::1]/", "metadata"),
        ("http://2130706433/", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://0x7f000001/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://0/", "unspecified"),
        ("http://3232235777/", "private"),
        ("http://rebind.example.com/", "loopback"),
        ("http://metadata.example.com/", "metadata"),
        ("http://mapped.example.com/", "loopback"),
        ("http://sneaky.example.com/", "private"),
        ("http://192.0.2.1/", "private"),
    ],
)
def test_internal_destinations_are_refused(url: str, why: str) -> None:
    with pytest.raises(UnsafeURLError, match=why):
        check_url(url, resolver=RESOLVER)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://hooks.example.com/", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://hooks.example.com/", "scheme"),
        ("hooks.example.com/path", "scheme"),
        ("http:///path", "no host"),
        ("https://", "no host"),
        ("http://unknown.example.com/", "cannot resolve"),
        ("http://empty.example.com/", "did not resolve"),
        ("http://weird.example.com/", "unrecognised"),
        ("http://hooks.example.com:99999/", "port"),
        ("http://0177.0.0.1/", "not a valid URL"),
        ("http://exa mple.com/", "cannot resolve"),
    ],
)
def test_bad_urls_are_refused(url: str, why: str) -> None:
    with pytest.raises(UnsafeURLError, match=why):
        check_url(url, resolver=RESOLVER)


def test_error_is_a_value_error_that_explains_the_allowlist_and_hides_the_url() -> None:
    with pytest.raises(ValueError) as info:
        check_url("http://gitlab.corp/api?private_token=s3cr3t-value", resolver=RESOLVER)
    message = str(info.value)
    assert isinstance(info.value, UnsafeURLError)
    assert "gitlab.corp" in message and "10.0.0.5" in message
    assert "allowlist" in message
    assert "s3cr3t-value" not in message


@pytest.mark.parametrize(
    ("url", "allowlist"),
    [
        ("https://gitlab.corp/api", ["gitlab.corp"]),
        ("https://GITLAB.corp./api", ["GitLab.Corp"]),
        ("https://gitlab.corp/api", ["10.0.0.5"]),
        ("https://gitlab.corp/api", ["10.0.0.0/8"]),
        ("https://gitlab.corp/api", ["https://gitlab.corp:8443/"]),
        ("https://gitlab.corp/api", "other.host, gitlab.corp"),
        ("http://127.0.0.1:8080/", ["127.0.0.1"]),
        ("http://0x7f.1:8080/", ["127.0.0.0/8"]),
        ("http://[::1]/", ["::1"]),
        ("http://[::ffff:10.0.0.7]/", ["10.0.0.0/24"]),
        ("http://mapped.example.com/", ["127.0.0.1"]),
    ],
)
def test_allowlisted_hosts_and_addresses_pass(url: str, allowlist: Any) -> None:
    check_url(url, allowlist=allowlist, resolver=RESOLVER)


def test_allowlist_is_exact_not_a_suffix_match() -> None:
    resolver = fake_resolver({"evil-gitlab.corp": ["10.0.0.9"], "gitlab.corp.evil.com": ["10.0.0.9"]})
    for url in ("http://evil-gitlab.corp/", "http://gitlab.corp.evil.com/"):
        with pytest.raises(UnsafeURLError):
            check_url(url, allowlist=["gitlab.corp"], resolver=resolver)


def test_allowlisted_address_does_not_cover_other_addresses_of_the_host() -> None:
    resolver = fake_resolver({"two.corp": ["10.0.0.5", "127.0.0.1"]})
    with pytest.raises(UnsafeURLError, match=r"127\.0\.0\.1"):
        check_url("http://two.corp/", allowlist=["10.0.0.5"], resolver=resolver)


def test_allowlisted_hostname_is_not_resolved() -> None:
    resolver = fake_resolver({})
    check_url("http://internal.svc/", allowlist=["internal.svc"], resolver=resolver)
    assert resolver.calls == []


def test_ip_literals_are_not_sent_to_the_resolver() -> None:
    resolver = fake_resolver({})
    check_url(f"http://{PUBLIC_V4}/", resolver=resolver)
    with pytest.raises(UnsafeURLError):
        check_url("http://0x7f.1/", resolver=resolver)
    assert resolver.calls == []


def test_real_resolver_normalises_numeric_hosts() -> None:
    with pytest.raises(UnsafeURLError, match="loopback"):
        check_url("http://2130706433/")
    with pytest.raises(UnsafeURLError, match="loopback"):
        check_url("http://localhost./")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.0x10.1", "10.16.0.1"),
        ("1.2.3.4", "1.2.3.4"),
        ("256.1.1.1", None),
        ("1.2.3.4.5", None),
        ("08.1.1.1", None),
        ("1_0.0.0.1", None),
        ("127.0.0.1\n", None),
        ("1..2", None),
        ("example.com", None),
        ("0x1g", None),
    ],
)
def test_parse_inet_aton(host: str, expected: str | None) -> None:
    result = parse_inet_aton(host)
    assert (str(result) if result else None) == expected


def test_why_unsafe_accepts_public_addresses() -> None:
    import ipaddress

    assert why_unsafe(ipaddress.ip_address(PUBLIC_V4)) is None
    assert why_unsafe(ipaddress.ip_address(PUBLIC_V6)) is None
    assert why_unsafe(ipaddress.ip_address("fe80::1%eth0")) == "a link-local address"


def test_allowlist_parse_is_idempotent() -> None:
    allow = Allowlist.parse(["a.example", "10.0.0.0/8", " ", "[::1]"])
    assert Allowlist.parse(allow) is allow
    assert allow.hosts == frozenset({"a.example"})
    assert len(allow.networks) == 2


# --- guarded clients against a real server --------------------------------------


class _Handler(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        if self.path.startswith("/redirect"):
            target = self.path.split("to=", 1)[1]
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[int, list[str]]]:
    hits: list[str] = []
    handler = type("Handler", (_Handler,), {"hits": hits})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], hits
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_client_refuses_loopback_before_connecting(server: tuple[int, list[str]]) -> None:
    port, hits = server
    with guarded_client() as client, pytest.raises(UnsafeURLError, match="loopback"):
        client.get(f"http://127.0.0.1:{port}/ok")
    assert hits == []


def test_client_reaches_loopback_when_allowlisted(server: tuple[int, list[str]]) -> None:
    port, hits = server
    with guarded_client(["127.0.0.1"]) as client:
        response = client.get(f"http://127.0.0.1:{port}/ok")
    assert response.status_code == 200
    assert response.text == "ok"
    assert hits == ["/ok"]


def test_client_follows_redirects_between_allowlisted_hosts(server: tuple[int, list[str]]) -> None:
    port, hits = server
    with guarded_client(["127.0.0.1"], follow_redirects=True) as client:
        response = client.get(f"http://127.0.0.1:{port}/redirect?to=http://127.0.0.1:{port}/ok")
    assert response.text == "ok"
    assert [h.split("?")[0] for h in hits] == ["/redirect", "/ok"]


@pytest.mark.parametrize("target_host", ["127.0.0.2", "0x7f.2", "[::ffff:127.0.0.2]", "169.254.169.254"])
def test_client_refuses_redirect_to_non_allowlisted_host(
    server: tuple[int, list[str]], target_host: str
) -> None:
    port, hits = server
    with guarded_client(["127.0.0.1"], follow_redirects=True) as client, pytest.raises(UnsafeURLError):
        client.get(f"http://127.0.0.1:{port}/redirect?to=http://{target_host}:{port}/ok")
    assert [h.split("?")[0] for h in hits] == ["/redirect"]


def test_client_keeps_callers_event_hooks(server: tuple[int, list[str]]) -> None:
    port, _ = server
    seen: list[str] = []
    hooks = {"request": [lambda r: seen.append(str(r.url))]}
    with guarded_client(["127.0.0.1"], event_hooks=hooks) as client:
        client.get(f"http://127.0.0.1:{port}/ok")
        with pytest.raises(UnsafeURLError):
            client.get(f"http://127.0.0.2:{port}/ok")
    assert seen == [f"http://127.0.0.1:{port}/ok"]


def test_client_uses_the_given_resolver() -> None:
    resolver = fake_resolver({"internal.example.com": ["192.168.0.10"]})
    with guarded_client(resolver=resolver) as client, pytest.raises(UnsafeURLError, match=r"192\.168\.0\.10"):
        client.get("http://internal.example.com/")


def test_async_client_guards_requests_and_redirects(server: tuple[int, list[str]]) -> None:
    port, hits = server

    async def scenario() -> str:
        async with guarded_async_client() as client:
            with pytest.raises(UnsafeURLError, match="loopback"):
                await client.get(f"http://127.0.0.1:{port}/ok")
        async with guarded_async_client(["127.0.0.1"], follow_redirects=True) as client:
            ok = await client.get(f"http://127.0.0.1:{port}/ok")
            with pytest.raises(UnsafeURLError):
                await client.get(f"http://127.0.0.1:{port}/redirect?to=http://127.0.0.2:{port}/ok")
            return ok.text

    assert asyncio.run(scenario()) == "ok"
    assert [h.split("?")[0] for h in hits] == ["/ok", "/redirect"]
