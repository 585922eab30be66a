"""Webhook targets and server-side request forgery: which URLs an endpoint may name, and which addresses a
delivery may connect to.

A URL is checked when an endpoint is saved (:func:`url_problem`, :func:`target_resolve`) and again right
before every send: the host is resolved, every address it resolves to is checked, and the request then
connects to that checked address (the Host header and the TLS server name stay the URL's host), so a DNS
answer that changes between the check and the connection (DNS rebinding) cannot point a delivery at an
internal service. Non-public addresses (loopback, private, link-local, shared, and the IPv4 addresses inside
IPv4-mapped, 6to4, Teredo and NAT64 IPv6 addresses) are refused unless the operator allows them
(settings.WEBHOOK_ALLOW_PRIVATE, settings.WEBHOOK_ALLOWED_NETWORKS); multicast, unspecified and reserved
addresses are refused always.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

MAX_URL_CHARS = 2000
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.ip_network("64:ff9b::/96")
ALLOW_HINT = "the operator may allow such targets with WEBHOOK_ALLOW_PRIVATE=1 or WEBHOOK_ALLOWED_NETWORKS"


class TargetRefused(Exception):
    """The URL or the address it resolves to may not be called; the message says why (shown to admins)."""


@dataclass(frozen=True)
class Target:
    """Where a delivery connects: the URL's parts and the checked address to open the connection to."""

    scheme: str
    host: str  # as in the URL (IPv6 without brackets)
    port: int
    path: str  # path and query
    address: str  # the checked IP the connection goes to

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def url_problem(url: object) -> str | None:
    """Why ``url`` cannot be a webhook target by its form alone, or None."""
    if not isinstance(url, str) or not url.strip():
        return "must be an http or https URL"
    if len(url) > MAX_URL_CHARS:
        return f"must be at most {MAX_URL_CHARS:,} characters"
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return f"is not a valid URL ({error})"
    if parts.scheme not in ("http", "https"):
        return "must use http or https"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "must not carry credentials (user:password@); the signature authenticates deliveries"
    if not parts.hostname:
        return "must name a host"
    if port == 0:
        return "must not use port 0"
    if parts.fragment:
        return "must not have a #fragment"
    return None


def _embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo client, NAT64)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.append(ip.teredo[1])
    if ip in NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def address_kind(ip: IPAddress) -> tuple[str, bool] | None:
    """``(kind, always)`` when ``ip`` is not a public address: what it is, and whether it is refused even
    when the operator allows private targets. None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and (ip.ipv4_mapped is not None or ip in NAT64):
        # Only a way of writing an IPv4 address: that address decides.
        return address_kind(ip.ipv4_mapped or ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    for inner in _embedded_ipv4(ip):
        kind = address_kind(inner)
        if kind is not None:
            return kind
    if ip.is_unspecified:
        return "unspecified", True
    if ip.is_multicast:
        return "multicast", True
    if ip.is_loopback:
        return "loopback", False
    if ip.is_link_local:
        return "link-local", False
    if ip.is_reserved:
        return "reserved", True
    if ip.is_private:
        return "private", False
    if not ip.is_global:
        return "not publicly routable", False
    return None


def address_refusal(ip: IPAddress) -> str | None:
    """Why a delivery may not connect to ``ip`` under the operator's settings, or None."""
    kind = address_kind(ip)
    if kind is None:
        return None
    name, always = kind
    if always:
        return f"resolves to {ip}, a {name} address"
    networks = [ipaddress.ip_network(n, strict=False) for n in settings.WEBHOOK_ALLOWED_NETWORKS]
    candidates = [ip, *_embedded_ipv4(ip)]
    if settings.WEBHOOK_ALLOW_PRIVATE or any(c in n for c in candidates for n in networks if c.version == n.version):
        return None
    return f"resolves to {ip}, a {name} address; {ALLOW_HINT}"


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise TargetRefused(f"the host {host} does not resolve ({error})") from None
    addresses: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise TargetRefused(f"the host {host} does not resolve")
    return addresses


def target_resolve(url: str) -> Target:
    """The checked target of ``url``: TargetRefused when its form is wrong, its host does not resolve, or any
    address it resolves to is refused (one bad address refuses it: the next lookup might return that one)."""
    problem = url_problem(url)
    if problem:
        raise TargetRefused(f"the URL {problem}")
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = resolve(host, port)
    for ip in addresses:
        refusal = address_refusal(ip)
        if refusal:
            raise TargetRefused(f"the host {host} {refusal}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme=parts.scheme, host=host, port=port, path=path, address=str(addresses[0]))
