"""Refuse to call internal addresses on a user's behalf (SSRF guard).

Users give Optio URLs it will later call from inside the deployment: webhook
targets, self-hosted forges, ticket providers, OIDC issuers. Without a guard,
"call this webhook" becomes "read the cloud metadata service" or "poke the
database admin port on localhost", with Optio's network position and
credentials. So before any such call every address the host resolves to must
be publicly routable; one internal address among several is enough to refuse,
because the connection may pick any of them.

Hosts are normalised the way the network stack would see them: numeric IPv4
spellings (``2130706433``, ``0x7f.1``, ``0177.0.0.1``) are parsed like
``inet_aton`` does, and IPv6 forms that carry an IPv4 address (``::ffff:a.b.c.d``,
NAT64 ``64:ff9b::/96``, 6to4, Teredo) are judged by the address they carry.

Self-hosted setups legitimately talk to internal hosts (a GitLab on the LAN),
so an allowlist of hostnames, addresses and CIDRs lets an operator opt in.

The check runs on every request, including each redirect hop, when the
request goes through :func:`guarded_client`. A name could still resolve
differently between the check and the connection (DNS rebinding); the check
narrows that to an attacker who controls DNS timing, not one who merely picks
a URL.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio.to_thread
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

ALLOWLIST_SETTING = "OPTIO_OUTBOUND_ALLOWLIST"
ALLOWED_SCHEMES = frozenset({"http", "https"})

_INET_ATON_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS IMDS over IPv6
    )
)


class UnsafeURLError(ValueError):
    """A URL Optio was asked to call points somewhere it must not go."""


@dataclass(frozen=True)
class Allowlist:
    """Hosts and networks an operator explicitly allows despite being internal."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str] | Allowlist) -> Allowlist:
        """Accept hostnames, IP addresses, CIDRs, or whole URLs (their host is used)."""
        if isinstance(entries, Allowlist):
            return entries
        if isinstance(entries, str):
            entries = entries.replace(",", " ").split()
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            if "://" in entry:
                entry = httpx.URL(entry).raw_host.decode("ascii")
            entry = entry.strip("[]").rstrip(".").lower()
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(_ascii_host(entry))
        return cls(frozenset(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return host in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(a in net for a in candidates for net in self.networks if net.version == a.version)


def _ascii_host(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return host.lower()


def parse_inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """Read ``host`` as the C library would read a numeric IPv4 address, or None.

    ``getaddrinfo`` accepts ``2130706433``, ``0x7f.1`` and ``0177.0.0.1`` as
    127.0.0.1, so they must be judged as that address, not as names.
    """
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_INET_ATON_PART.fullmatch(p) for p in parts):
        return None
    numbers = [
        int(p[2:] or "0", 16) if p[:2].lower() == "0x" else int(p, 8) if p.startswith("0") else int(p)
        for p in parts
    ]
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    value = value * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(value)


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return parse_inet_aton(host)


def _why_v4_unsafe(addr: ipaddress.IPv4Address) -> str | None:
    if addr in _METADATA:
        return "a cloud metadata address"
    if addr.is_unspecified:
        return "the unspecified address"
    if addr.is_loopback:
        return "a loopback address"
    if addr.is_link_local:
        return "a link-local address"
    if addr in _CGNAT:
        return "a carrier-grade NAT address (100.64.0.0/10)"
    if addr.is_multicast:
        return "a multicast address"
    if addr.is_reserved:
        return "a reserved address"
    if addr.is_private:
        return "a private address"
    if not addr.is_global:
        return "not a publicly routable address"
    return None


def why_unsafe(addr: IPAddress) -> str | None:
    """Why Optio must not connect to ``addr`` on a user's behalf, or None if it may."""
    if isinstance(addr, ipaddress.IPv4Address):
        return _why_v4_unsafe(addr)
    if addr.scope_id:
        addr = ipaddress.IPv6Address(str(addr).split("%", 1)[0])
    # Forms that route to an IPv4 host are judged by that host alone.
    if addr.ipv4_mapped is not None:
        reason = _why_v4_unsafe(addr.ipv4_mapped)
        return f"{reason} (IPv4-mapped as {addr})" if reason else None
    if addr in _NAT64:
        embedded = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        reason = _why_v4_unsafe(embedded)
        return f"{reason} ({embedded} via NAT64)" if reason else None
    # Tunnelling forms: an internal IPv4 inside makes the whole address unsafe.
    if addr.sixtofour is not None and (reason := _why_v4_unsafe(addr.sixtofour)):
        return f"{reason} ({addr.sixtofour} via 6to4)"
    if addr.teredo is not None:
        for embedded in addr.teredo:
            if reason := _why_v4_unsafe(embedded):
                return f"{reason} ({embedded} via Teredo)"
    if addr in _METADATA:
        return "a cloud metadata address"
    if addr.is_unspecified:
        return "the unspecified address"
    if addr.is_loopback:
        return "a loopback address"
    if addr.is_link_local:
        return "a link-local address"
    if addr.is_multicast:
        return "a multicast address"
    if addr.is_reserved:
        return "a reserved address"
    if addr.is_private:
        return "a private address"
    if not addr.is_global:
        return "not a publicly routable address"
    return None


def _split_url(url: str | httpx.URL) -> tuple[str, int]:
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise UnsafeURLError(f"not a valid URL: {exc}") from None
    scheme = parsed.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UnsafeURLError(f"URL scheme {scheme or '(none)'!r} is not allowed; use http or https")
    try:
        host = parsed.raw_host.decode("ascii")
    except UnicodeDecodeError:
        raise UnsafeURLError("URL host is not valid") from None
    host = host.strip("[]").rstrip(".").lower()
    if not host:
        raise UnsafeURLError("URL has no host")
    port = parsed.port or (443 if scheme == "https" else 80)
    if not 0 < port < 65536:
        raise UnsafeURLError(f"URL port {port} is not a valid TCP port")
    return host, port


def _resolve(host: str, port: int, resolver: Resolver) -> list[IPAddress]:
    literal = _literal_address(host)
    if literal is not None:
        return [literal]
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeURLError(f"cannot resolve host {host!r} to check where it points: {exc}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        sockaddr = info[4]
        try:
            addresses.append(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
        except ValueError:
            raise UnsafeURLError(
                f"host {host!r} resolved to an unrecognised address {sockaddr[0]!r}"
            ) from None
    if not addresses:
        raise UnsafeURLError(f"host {host!r} did not resolve to any address")
    return addresses


def check_url(
    url: str | httpx.URL,
    *,
    allowlist: Sequence[str] | Allowlist = (),
    resolver: Resolver = socket.getaddrinfo,
) -> None:
    """Raise :class:`UnsafeURLError` unless ``url`` is safe for Optio to call.

    The message names the host and the reason but never the full URL, since
    webhook URLs often carry a secret in their path or query.
    """
    _checked(url, Allowlist.parse(allowlist), resolver, pin=False)


def pin_url(
    url: str | httpx.URL,
    *,
    allowlist: Sequence[str] | Allowlist = (),
    resolver: Resolver = socket.getaddrinfo,
) -> tuple[str, int, IPAddress | None]:
    """Check ``url`` like :func:`check_url` and return ``(host, port, address)`` to connect to.

    For a client that resolves names itself (git through curl), connecting to
    exactly the checked address (e.g. ``CURLOPT_RESOLVE``) closes the window
    in which a name could be re-resolved elsewhere. ``address`` is None when
    the host is already an IP literal.
    """
    return _checked(url, Allowlist.parse(allowlist), resolver, pin=True)


def _checked(url: str | httpx.URL, allowed: Allowlist, resolver: Resolver, *, pin: bool
             ) -> tuple[str, int, IPAddress | None]:
    host, port = _split_url(url)
    literal = _literal_address(host) is not None
    if allowed.allows_host(host):
        if not pin:
            return host, port, None
        try:
            return host, port, None if literal else _resolve(host, port, resolver)[0]
        except UnsafeURLError:
            return host, port, None  # allowed by name; the client reports a name that does not resolve
    addresses = _resolve(host, port, resolver)
    for address in addresses:
        if allowed.allows_address(address):
            continue
        reason = why_unsafe(address)
        if reason is None:
            continue
        if str(address) == host:
            shown, entries = f"{host!r}, {reason}", f"'{host}'"
        else:
            shown, entries = f"{host!r}, which resolves to {address}, {reason}", f"'{host}' or '{address}'"
        raise UnsafeURLError(
            f"refusing to call {shown}; if Optio should reach it, add {entries} (or a CIDR covering it) "
            f"to the outbound allowlist ({ALLOWLIST_SETTING})"
        )
    return host, port, None if literal else addresses[0]


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default TLS settings, made once: these clients are short-lived (one per delivery or poll), and
    a new context per client loads the CA bundle again, tens of milliseconds of CPU each time."""
    return httpx.create_ssl_context()


def _merged_hooks(kwargs: dict[str, Any], hook: Callable[..., Any]) -> dict[str, list[Callable[..., Any]]]:
    hooks = {name: list(funcs) for name, funcs in (kwargs.pop("event_hooks", None) or {}).items()}
    hooks["request"] = [hook, *hooks.get("request", [])]
    return hooks


def guarded_client(
    allowlist: Sequence[str] | Allowlist = (),
    *,
    resolver: Resolver = socket.getaddrinfo,
    **httpx_kwargs: Any,
) -> httpx.Client:
    """An ``httpx.Client`` that checks every request, redirects included, with :func:`check_url`."""
    allowed = Allowlist.parse(allowlist)

    def guard(request: httpx.Request) -> None:
        check_url(request.url, allowlist=allowed, resolver=resolver)

    httpx_kwargs.setdefault("verify", _tls())
    return httpx.Client(event_hooks=_merged_hooks(httpx_kwargs, guard), **httpx_kwargs)


def guarded_async_client(
    allowlist: Sequence[str] | Allowlist = (),
    *,
    resolver: Resolver = socket.getaddrinfo,
    **httpx_kwargs: Any,
) -> httpx.AsyncClient:
    """The async twin of :func:`guarded_client`; name resolution runs off the event loop."""
    allowed = Allowlist.parse(allowlist)

    async def guard(request: httpx.Request) -> None:
        await anyio.to_thread.run_sync(partial(check_url, request.url, allowlist=allowed, resolver=resolver))

    httpx_kwargs.setdefault("verify", _tls())
    return httpx.AsyncClient(event_hooks=_merged_hooks(httpx_kwargs, guard), **httpx_kwargs)
