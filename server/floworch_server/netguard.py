"""The outbound-address guard: nodes that call URLs a flow author chose must not reach the
worker's own network (SSRF). Private, loopback, link-local, metadata and other special-purpose
addresses are refused unless the operator allows them with ``FLOWORCH_HTTP_ALLOW``.

The check happens where the socket is opened: `GuardedBackend` resolves the host once, checks
every address it got, and connects to one of exactly those addresses. Nothing is resolved
twice, so a DNS answer that changes between the check and the connect (DNS rebinding) cannot
slip through; TLS still verifies, and the Host header still names, the URL's host, because only
the TCP connect is pinned. Every connection goes through it, so every redirect hop is checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import typing
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote, urlsplit

import httpcore
import httpx

from .nodes.spec import NodeError
from .settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOW_VARIABLE = "FLOWORCH_HTTP_ALLOW"

# Most specific first: the first match names the reason in the refusal.
_REFUSED: tuple[tuple[str, str], ...] = (
    ("169.254.169.254/32", "the cloud metadata service (AWS, GCP, Azure, Oracle, DigitalOcean, ...)"),
    ("169.254.170.2/32", "the AWS ECS task metadata service"),
    ("100.100.100.200/32", "the Alibaba Cloud metadata service"),
    ("192.0.0.192/32", "the Oracle Cloud metadata service"),
    ("fd00:ec2::254/128", "the AWS EC2 metadata service (IPv6)"),
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("10.0.0.0/8", "a private address (RFC 1918)"),
    ("100.64.0.0/10", "a carrier-grade NAT address (RFC 6598)"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private address (RFC 1918)"),
    ("192.0.0.0/24", "an IETF protocol assignment (RFC 6890)"),
    ("192.0.2.0/24", "a documentation address (RFC 5737)"),
    ("192.88.99.0/24", "a 6to4 relay anycast address"),
    ("192.168.0.0/16", "a private address (RFC 1918)"),
    ("198.18.0.0/15", "a benchmarking address (RFC 2544)"),
    ("198.51.100.0/24", "a documentation address (RFC 5737)"),
    ("203.0.113.0/24", "a documentation address (RFC 5737)"),
    ("224.0.0.0/4", "a multicast address"),
    ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("::/128", "the unspecified address"),
    ("::1/128", "a loopback address"),
    ("100::/64", "a discard-only address (RFC 6666)"),
    ("64:ff9b:1::/48", "a local-use NAT64 address (RFC 8215)"),
    ("2001:db8::/32", "a documentation address (RFC 3849)"),
    ("fc00::/7", "a unique-local address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
)
_REFUSED_NETWORKS = tuple((ipaddress.ip_network(net), reason) for net, reason in _REFUSED)

# IPv6 forms that carry an IPv4 address: the kernel (mapped) or a gateway (NAT64, 6to4, Teredo)
# may deliver them to that IPv4 address, so they are judged by it.
_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT, RFC 2765
_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

# inet_aton's forms: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x). The resolver
# accepts them (http://2130706433/, http://0x7f000001/, http://0177.0.0.1/ are all 127.0.0.1).
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$", re.IGNORECASE)


class AddressRefused(NodeError):
    """An outbound connection the guard refused. Never retried: the answer will not change."""

    def __init__(self, host: str, address: IPAddress, reason: str, via: str = ""):
        shown = str(address) if host == str(address) else f"{address} (host {host!r})"
        # A host that spells an address (0x7f000001) is allowed by the address, not the spelling.
        suggestion = f"'{address}'" if literal_address(host) is not None else f"'{host}' or '{address}'"
        super().__init__(
            f"refused to connect to {shown}{via}: it is {reason}. Outbound requests may not reach private "
            f"or internal addresses; to allow this one, add {suggestion} to {ALLOW_VARIABLE} on the "
            "workers (comma-separated host names, IPs or CIDRs).",
            retryable=False,
            kind="AddressRefused",
            details={"host": host, "address": str(address), "reason": reason},
        )
        self.host = host
        self.via = via
        self.address = address
        self.reason = reason

    def on_redirect_from(self, url: str) -> AddressRefused:
        """The same refusal, saying which response redirected there."""
        return AddressRefused(self.host, self.address, self.reason, f" on a redirect from {url}")


@dataclass(frozen=True)
class AllowList:
    """What the operator lets through: exact host names, ``*.suffix`` wildcards, IPs and CIDRs."""

    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> AllowList:
        hosts, suffixes, networks = set(), [], []
        for entry in (e.strip() for e in (text or "").split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = _normal_host(entry)
            if name.startswith("*."):
                suffixes.append(name[1:])  # "*.corp.example" matches "a.corp.example", not "corp.example"
            else:
                hosts.add(name)
        return cls(frozenset(hosts), tuple(suffixes), tuple(networks))

    def allows_host(self, host: str) -> bool:
        name = _normal_host(host)
        return name in self.hosts or any(name.endswith(s) for s in self.suffixes)

    def allows_address(self, address: IPAddress) -> bool:
        # An IPv4-mapped address is the IPv4 address to the kernel: allowing one allows both.
        candidates = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            candidates.append(address.ipv4_mapped)
        return any(a in net for a in candidates for net in self.networks if a.version == net.version)


def allow_list() -> AllowList:
    """The allow-list of this process's settings (read per call, so a changed variable applies)."""
    return _parsed(Settings.from_env().http_allow)


@lru_cache(maxsize=8)
def _parsed(text: str) -> AllowList:
    return AllowList.parse(text)


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def refusal_reason(address: IPAddress) -> str | None:
    """Why connecting to ``address`` is refused, or None for a public address."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        v4, form = embedded
        inner = refusal_reason(v4)
        if inner:
            return f"{form} of {v4}, {inner}"
        if form == "an IPv4-mapped form":
            return None  # the kernel connects to the public IPv4 address itself
    for network, reason in _REFUSED_NETWORKS:
        if address.version == network.version and address in network:
            return reason
    if not address.is_global:
        return "a special-purpose address that is not publicly routable"
    return None


def _embedded_ipv4(address: IPAddress) -> tuple[ipaddress.IPv4Address, str] | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped:
        return address.ipv4_mapped, "an IPv4-mapped form"
    if address in _TRANSLATED:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "an IPv4-translated form"
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "a NAT64 form"
    if address.sixtofour:
        return address.sixtofour, "a 6to4 form"
    if address.teredo:
        return address.teredo[1], "a Teredo form"
    if address in _COMPATIBLE and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "an IPv4-compatible form"
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, including inet_aton's legacy IPv4 spellings."""
    host = unquote(host).strip("[]")
    if host.endswith(".") and _LEGACY_IPV4.match(host[:-1]):
        host = host[:-1]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_IPV4.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_address(host: str, address: IPAddress, allow: AllowList) -> None:
    """Raise `AddressRefused` unless ``address`` (reached for ``host``) may be connected to."""
    if allow.allows_host(host) or allow.allows_address(address):
        return
    reason = refusal_reason(address)
    if reason:
        raise AddressRefused(host, address, reason)


def check_url(url: str, allow: AllowList | None = None) -> None:
    """Refuse a URL whose host is a literal address that is not allowed, before any parsing by
    an HTTP client (which rejects some legacy spellings with a less helpful message).

    Only literal hosts are checked here; names are checked when they are resolved, at connect."""
    host = urlsplit(url).hostname
    if host and (address := literal_address(host)) is not None:
        check_address(host, address, allow_list() if allow is None else allow)


async def getaddrinfo(host: str, port: int) -> list[str]:
    """The addresses of ``host``, from the system resolver. Tests replace this function."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve(host: str, port: int, allow: AllowList | None = None) -> list[IPAddress]:
    """Resolve ``host`` and check every address; all must pass, or the connection is refused.

    Refusing when any address is bad (not just the one we would pick) keeps the outcome
    independent of address order, which a hostile resolver controls."""
    allow = allow_list() if allow is None else allow
    literal = literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            found = await getaddrinfo(host, port)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"could not resolve {host!r}: {exc}") from exc
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in found]
        if not addresses:
            raise httpcore.ConnectError(f"could not resolve {host!r}: no addresses")
    for address in addresses:
        check_address(host, address, allow)
    return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to addresses `resolve` has checked."""

    def __init__(self, allow: AllowList | None = None, inner: httpcore.AsyncNetworkBackend | None = None):
        self._allow = allow
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve(host, port, self._allow)
        failure: Exception | None = None
        for address in addresses:
            try:
                # An IP literal: the inner backend connects to it without resolving again.
                return await self._inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: typing.Any = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not reachable through the outbound-address guard")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(allow: AllowList | None = None, **kwargs: typing.Any) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection goes through `GuardedBackend`.

    httpx has no parameter for the network backend, so the one its connection pool was built
    with is replaced; the pool passes it to every connection it opens. No proxy is configured
    (an httpx client given a transport ignores proxy variables too): a proxy would resolve the
    host itself, past the guard."""
    transport = httpx.AsyncHTTPTransport(**kwargs)
    pool = transport._pool
    if not isinstance(pool, httpcore.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        raise RuntimeError("this httpx/httpcore version cannot be guarded: its connection pool changed")
    pool._network_backend = GuardedBackend(allow)
    return transport
