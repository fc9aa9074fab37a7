"""Fetching image data for Glance's ``web-download`` import method, guarded against SSRF.

The URL comes from an API client, and ferry runs inside the cloud's control plane, so a
careless fetch would let any user read the metadata service (169.254.169.254), the Ceph
dashboard or anything else on the management network. Every hop is checked:

- Only ``http`` and ``https``. Other schemes are ``Forbidden``; a URL without a scheme or a
  host is ``InvalidRequest``.
- The host is resolved with ``getaddrinfo`` and *every* address it resolves to must be public:
  not unspecified, loopback, link-local, multicast, shared (CGNAT 100.64.0.0/10), private,
  reserved or otherwise non-global. IPv4-mapped (``::ffff:127.0.0.1``), 6to4 and NAT64 IPv6
  addresses are judged by the IPv4 address inside them. Integer host forms (``2130706433``,
  ``0x7f.1``) resolve to the address they spell, so checking resolved addresses covers them.
- A host the operator lists in ``FetchPolicy.allow_hosts`` (the name as written in the URL,
  or an IP literal) skips the address checks. ``localhost`` is not ``127.0.0.1``: each is
  allowed only by its own entry.
- Redirects are followed by hand, at most ``max_redirects`` of them, and each new URL passes
  the same checks; relative ``Location`` headers resolve against the current URL.

The connection goes to the address that was checked: a network backend under httpx maps
each checked host to its checked addresses, so a DNS answer that changes between the check
and the connect (DNS rebinding) is never consulted. TLS still uses the host name for SNI and
certificate verification. A host that reached the backend unchecked is refused there too.
Environment proxies, ``.netrc`` and the like are ignored (``trust_env=False``): through a
proxy the checked address would mean nothing.

What remains: name resolution itself has no timeout beyond the system resolver's, and
``timeout`` bounds each connect and read, not the whole download; a server that trickles
bytes keeps the fetch alive. Callers bound the size with ``max_size``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpcore
import httpx

from ferry.errors import BackendUnavailable, Forbidden, InvalidRequest, NotFound

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SCHEMES = ("http", "https")
CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
HINT = "allow it with the site's web_download.allow_hosts"

# Host (as the connection pool names it) -> the addresses checked for it, or None for a host
# the operator allowed, which is connected to by name.
Pins = dict[str, tuple[str, ...] | None]


@dataclass(frozen=True)
class FetchPolicy:
    """What a web-download may fetch: the operator's allow-list and limits."""

    allow_hosts: frozenset[str] = frozenset()  # names or IP literals that skip address checks
    max_size: int | None = None  # bytes; refused up front by Content-Length and while streaming
    max_redirects: int = 5
    timeout: float = 30.0  # seconds, per connect and per read


@dataclass
class Fetched:
    """An open, checked download: the final URL, its declared size, and its body."""

    url: str  # after redirects
    size: int | None  # Content-Length, when the server gave one
    _response: httpx.Response = field(repr=False)
    _max_size: int | None = field(default=None, repr=False)

    def chunks(self, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream the body, refusing it once it grows past ``max_size``."""
        seen = 0
        try:
            for chunk in self._response.iter_bytes(chunk_size):
                seen += len(chunk)
                if self._max_size is not None and seen > self._max_size:
                    raise _too_large(self.url, self._max_size)
                yield chunk
        except httpx.HTTPError as exc:  # e.g. a body that does not decode
            raise BackendUnavailable(f"web-download: reading {self.url} failed: {exc}") from exc


def check_url(url: str, policy: FetchPolicy) -> None:
    """Refuse ``url`` up front (scheme, every address it resolves to) without connecting.

    What the import request is checked with; ``open_url`` checks again, and every redirect.
    """
    _admit(_parse(url), policy, {}, None)


@contextmanager
def open_url(url: str, policy: FetchPolicy) -> Iterator[Fetched]:
    """Open ``url`` for download after checking it and every redirect against ``policy``."""
    pins: Pins = {}
    transport = _PinnedTransport(pins)
    headers = {"Accept-Encoding": "identity", "User-Agent": "ferry web-download"}
    with httpx.Client(
        transport=transport,
        timeout=policy.timeout,
        follow_redirects=False,
        trust_env=False,
        headers=headers,
    ) as client:
        current = _parse(url)
        via: httpx.URL | None = None
        redirects = 0
        while True:
            _admit(current, policy, pins, via)
            response = client.send(client.build_request("GET", current), stream=True)
            if not response.has_redirect_location:
                break
            response.close()
            if redirects >= policy.max_redirects:
                raise InvalidRequest(
                    f"web-download: {url} redirects more than {policy.max_redirects} times"
                )
            redirects += 1
            via, current = current, _join(current, response.headers["Location"])
        try:
            yield _opened(current, response, policy)
        finally:
            response.close()


def _opened(url: httpx.URL, response: httpx.Response, policy: FetchPolicy) -> Fetched:
    """The final response as a ``Fetched``, or the error its status or size calls for."""
    status = f"{response.status_code} {response.reason_phrase}".strip()
    if response.status_code in (404, 410):
        raise NotFound(f"web-download: {url} returned {status}")
    if not response.is_success:
        raise BackendUnavailable(f"web-download: {url} returned {status}")
    size = _content_length(response)
    if size is not None and policy.max_size is not None and size > policy.max_size:
        raise _too_large(str(url), policy.max_size)
    return Fetched(str(url), size, response, policy.max_size)


def _content_length(response: httpx.Response) -> int | None:
    """The body's size in bytes, if the server declared it for the bytes we will yield."""
    if response.headers.get("Content-Encoding", "identity").lower() != "identity":
        return None  # Content-Length counts the encoded bytes; iter_bytes yields decoded ones
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


def _too_large(url: str, limit: int) -> InvalidRequest:
    return InvalidRequest(f"web-download: {url} is larger than the limit of {limit} bytes")


def _parse(url: str) -> httpx.URL:
    try:
        return httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidRequest(f"web-download: {url!r} is not a valid URL: {exc}") from exc


def _join(current: httpx.URL, location: str) -> httpx.URL:
    try:
        return current.join(location)
    except httpx.InvalidURL as exc:
        raise InvalidRequest(
            f"web-download: {current} redirects to an invalid URL {location!r}: {exc}"
        ) from exc


def _admit(url: httpx.URL, policy: FetchPolicy, pins: Pins, via: httpx.URL | None) -> None:
    """Check one hop's scheme and addresses, and pin the host to the addresses checked."""
    redirected = f" (redirected from {via})" if via is not None else ""
    if not url.scheme:
        raise InvalidRequest(f"web-download: {url} is not an absolute http(s) URL{redirected}")
    if url.scheme not in SCHEMES:
        raise Forbidden(
            f"web-download refused: {url} uses the {url.scheme} scheme; "
            f"only http and https are allowed{redirected}"
        )
    host = url.raw_host.decode("ascii")
    if not host:
        raise InvalidRequest(f"web-download: {url} has no host{redirected}")
    if host in pins:
        return  # checked on an earlier hop; keep connecting to the same addresses
    if _allowed(url, policy.allow_hosts):
        pins[host] = None
        return
    port = url.port or (443 if url.scheme == "https" else 80)
    if not 0 < port < 65536:
        raise InvalidRequest(f"web-download: {url} has an invalid port{redirected}")
    addresses = _resolve(host, port, url)
    for address in addresses:
        reason = _refusal(address)
        if reason is None:
            continue
        if _literal(host) == address:
            detail = f"{host} is {reason}"
        else:
            detail = f"{host} resolves to {address}, {reason}"
        raise Forbidden(f"web-download refused: {detail} ({HINT}){redirected}")
    pins[host] = tuple(str(address) for address in addresses)


def _allowed(url: httpx.URL, allow_hosts: frozenset[str]) -> bool:
    if not allow_hosts:
        return False
    allowed = {_normal(host) for host in allow_hosts}
    return _normal(url.host) in allowed or _normal(url.raw_host.decode("ascii")) in allowed


def _normal(host: str) -> str:
    """A host name or IP literal in one spelling, for comparing against the allow-list."""
    host = host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
    address = _literal(host)
    return host if address is None else str(address)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _resolve(host: str, port: int, url: httpx.URL) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise BackendUnavailable(f"web-download: cannot resolve the host of {url}: {exc}") from exc
    addresses: list[IPAddress] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise BackendUnavailable(f"web-download: the host of {url} has no IP address")
    return addresses


def _refusal(address: IPAddress) -> str | None:
    """Why ``address`` must not be fetched from (``"a loopback address"``), or None."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            inner = _refusal(address.ipv4_mapped)
            return None if inner is None else f"{inner} in IPv4-mapped form"
        for kind, embedded in (("6to4", address.sixtofour), ("NAT64", _nat64(address))):
            inner = None if embedded is None else _refusal(embedded)
            if inner is not None:
                return f"{inner} inside a {kind} address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in CGNAT:
        return "a shared address (CGNAT, 100.64.0.0/10)"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a public address"
    return None


def _nat64(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address not in NAT64:
        return None
    return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to the addresses ``_admit`` checked for a host, never re-resolving it."""

    def __init__(self, pins: Pins) -> None:
        self._pins = pins
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        if host not in self._pins:
            raise Forbidden(f"web-download refused: {host} was not checked before connecting")
        pinned = self._pins[host]
        error: Exception | None = None
        for address in pinned if pinned is not None else (host,):
            try:
                return self._backend.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise Forbidden("web-download refused: connecting to a unix socket")

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _PinnedTransport(httpx.BaseTransport):
    """httpx's transport over a ``_PinnedBackend``; httpcore errors become ferry errors."""

    def __init__(self, pins: Pins) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            network_backend=_PinnedBackend(pins),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _translated(request.url):
            response = self._pool.handle_request(core)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream, request.url),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes], url: httpx.URL) -> None:
        self._stream = stream
        self._url = url

    def __iter__(self) -> Iterator[bytes]:
        with _translated(self._url):
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


@contextmanager
def _translated(url: httpx.URL) -> Iterator[None]:
    """httpcore's network, timeout and protocol errors as ``BackendUnavailable``."""
    try:
        yield
    except httpcore.TimeoutException as exc:
        raise BackendUnavailable(f"web-download: {url} timed out: {exc}") from exc
    except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
        raise BackendUnavailable(f"web-download: cannot fetch {url}: {exc}") from exc
