"""The web-download fetcher: streams what it may, refuses what would be SSRF.

Every server here listens on 127.0.0.1. URLs naming other addresses are refused before any
connection is made, so no test sends a packet off the machine.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ferry.errors import BackendUnavailable, Forbidden, InvalidRequest, NotFound
from ferry.images import fetch
from ferry.images.fetch import FetchPolicy, open_url

BLOB = os.urandom((3 << 20) - 12345)  # not a multiple of the chunk size
LOCAL = FetchPolicy(allow_hosts=frozenset({"127.0.0.1"}), timeout=5.0)


class Handler(BaseHTTPRequestHandler):
    """Routes: /blob, /chunked/<n>, /status/<code>, /redirect?<location>, /chain/<n>."""

    protocol_version = "HTTP/1.1"  # chunked bodies and keep-alive
    timeout = 5  # a forgotten connection cannot hold teardown for long
    server: Server

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Host", "")))
        path, _, query = self.path.partition("?")
        parts = path.strip("/").split("/")
        if parts == ["blob"]:
            self.respond(200, BLOB)
        elif parts[0] == "chunked":
            self.chunked(int(parts[1]))
        elif parts[0] == "status":
            self.respond(int(parts[1]), b"no\n")
        elif parts == ["redirect"]:
            self.redirect(query)
        elif parts[0] == "chain":
            hops = int(parts[1])
            if hops == 0:
                self.respond(200, b"end of chain")
            else:
                self.redirect(f"{hops - 1}")  # relative to /chain/<hops>
        else:
            self.respond(404, b"no such route\n")

    def respond(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def chunked(self, size: int) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        piece = b"x" * 65536
        left = size
        while left:
            data = piece[: min(left, len(piece))]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            left -= len(data)
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest's output clean


class Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[tuple[str, str]]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that stops reading (oversize bodies) breaks the pipe on purpose


@dataclass
class Site:
    port: int
    requests: list[tuple[str, str]] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
def site() -> Iterator[Site]:
    server = Server(("127.0.0.1", 0), Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield Site(server.server_address[1], server.requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def fetch_all(url: str, policy: FetchPolicy = LOCAL) -> bytes:
    with open_url(url, policy) as fetched:
        return b"".join(fetched.chunks())


def test_allowed_host_streams_exact_bytes(site: Site) -> None:
    with open_url(site.url("/blob"), LOCAL) as fetched:
        assert fetched.size == len(BLOB)
        assert fetched.url == site.url("/blob")
        chunks = list(fetched.chunks(1 << 20))
    assert b"".join(chunks) == BLOB
    assert [len(c) for c in chunks[:-1]] == [1 << 20] * (len(chunks) - 1)


def test_allow_list_matches_the_host_name_as_written(site: Site) -> None:
    policy = FetchPolicy(allow_hosts=frozenset({"LocalHost"}), timeout=5.0)
    assert fetch_all(site.url("/blob", host="localhost"), policy) == BLOB


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{port}/", "127.0.0.1 is a loopback address"),
        ("http://localhost:{port}/", "localhost resolves to .*, a loopback address"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
        ("http://[fe80::1]/", "fe80::1 is a link-local address"),
        ("http://10.0.0.1/", "10.0.0.1 is a private address"),
        ("http://172.16.5.4/", "172.16.5.4 is a private address"),
        ("http://192.168.1.1/", "192.168.1.1 is a private address"),
        ("http://100.64.0.1/", r"100.64.0.1 is a shared address \(CGNAT"),
        ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
        ("http://240.0.0.1/", "240.0.0.1 is a (private|reserved) address"),
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://[fd00::1]/", "fd00::1 is a private address"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1 is a loopback address in IPv4-mapped"),
        ("http://[::ffff:a9fe:a9fe]/", "is a link-local address in IPv4-mapped"),
        ("http://[2002:7f00:1::]/", "a loopback address inside a 6to4 address"),
        ("http://2130706433/", "2130706433 resolves to 127.0.0.1, a loopback address"),
        ("http://0x7f.1/", "0x7f.1 resolves to 127.0.0.1, a loopback address"),
        ("http://0177.1/", "0177.1 resolves to 127.0.0.1, a loopback address"),
        ("http://0.0.0.0/", "0.0.0.0 is an unspecified address"),
        ("http://[::]/", ":: is an unspecified address"),
        ("https://127.0.0.1/", "127.0.0.1 is a loopback address"),
        ("file:///etc/passwd", "uses the file scheme; only http and https"),
        ("ftp://example.invalid/", "uses the ftp scheme"),
        ("gopher://example.invalid/", "uses the gopher scheme"),
        ("data:text/plain,hello", "uses the data scheme"),
    ],
)
def test_refused_without_allow_list(site: Site, url: str, reason: str) -> None:
    with (
        pytest.raises(Forbidden, match=reason) as refused,
        open_url(url.format(port=site.port), FetchPolicy()),
    ):
        pytest.fail("opened a refused URL")
    assert "web-download refused" in str(refused.value)
    assert site.requests == []


def test_refusal_names_the_allow_list() -> None:
    with pytest.raises(Forbidden) as refused, open_url("http://169.254.169.254/", FetchPolicy()):
        pass
    assert str(refused.value) == (
        "web-download refused: 169.254.169.254 is a link-local address "
        "(allow it with the site's web_download.allow_hosts)"
    )


def test_allow_list_is_not_applied_to_other_spellings(site: Site) -> None:
    for url in (site.url("/blob", "localhost"), site.url("/blob", "[::ffff:127.0.0.1]")):
        with pytest.raises(Forbidden, match="loopback"), open_url(url, LOCAL):
            pass
    assert site.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        "http://192.0.2.1:99999/",
        "http:///path",
        "example.com/image.qcow2",
        "",
        "http://0177.0.0.1/",  # httpx rejects dotted quads with leading zeros outright
    ],
)
def test_malformed_url_is_invalid(url: str) -> None:
    with pytest.raises(InvalidRequest), open_url(url, FetchPolicy()):
        pass


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://169.254.169.254/", "169.254.169.254 is a link-local address"),
        ("http://localhost:{port}/blob", "localhost resolves to .*, a loopback address"),
        ("http://10.1.2.3/", "10.1.2.3 is a private address"),
        ("file:///etc/passwd", "uses the file scheme"),
    ],
)
def test_redirect_to_refused_target_is_refused(site: Site, target: str, reason: str) -> None:
    start = site.url("/redirect?" + target.format(port=site.port))
    with pytest.raises(Forbidden, match=reason) as refused, open_url(start, LOCAL):
        pass
    assert f"redirected from {start}" in str(refused.value)
    assert [path for path, _ in site.requests] == [start.removeprefix(site.url(""))]


def test_relative_redirects_are_followed(site: Site) -> None:
    with open_url(site.url("/chain/3"), LOCAL) as fetched:
        assert fetched.url == site.url("/chain/0")
        assert b"".join(fetched.chunks()) == b"end of chain"


def test_redirect_to_allowed_host_is_followed(site: Site) -> None:
    assert fetch_all(site.url("/redirect?/blob")) == BLOB


def test_redirects_up_to_the_limit(site: Site) -> None:
    policy = FetchPolicy(allow_hosts=LOCAL.allow_hosts, max_redirects=3, timeout=5.0)
    assert fetch_all(site.url("/chain/3"), policy) == b"end of chain"
    with pytest.raises(InvalidRequest, match="redirects more than 3 times"):
        fetch_all(site.url("/chain/4"), policy)
    no_redirects = FetchPolicy(allow_hosts=LOCAL.allow_hosts, max_redirects=0, timeout=5.0)
    with pytest.raises(InvalidRequest, match="redirects more than 0 times"):
        fetch_all(site.url("/chain/1"), no_redirects)


@pytest.mark.parametrize("status", [404, 410])
def test_gone_is_not_found(site: Site, status: int) -> None:
    url = site.url(f"/status/{status}")
    with pytest.raises(NotFound, match=f"{url} returned {status} "), open_url(url, LOCAL):
        pass


@pytest.mark.parametrize("status", [500, 503, 403, 300])
def test_other_failures_are_backend_unavailable(site: Site, status: int) -> None:
    url = site.url(f"/status/{status}")
    with pytest.raises(BackendUnavailable, match=f"{url} returned {status}"), open_url(url, LOCAL):
        pass


def test_connection_refused_is_backend_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/image"
    with pytest.raises(BackendUnavailable, match=url), open_url(url, LOCAL):
        pass


def test_content_length_over_limit_is_refused_before_reading(site: Site) -> None:
    policy = FetchPolicy(allow_hosts=LOCAL.allow_hosts, max_size=len(BLOB) - 1, timeout=5.0)
    limit = f"larger than the limit of {len(BLOB) - 1} bytes"
    with pytest.raises(InvalidRequest, match=limit), open_url(site.url("/blob"), policy):
        pytest.fail("opened a body over the limit")


def test_body_at_the_limit_is_accepted(site: Site) -> None:
    policy = FetchPolicy(allow_hosts=LOCAL.allow_hosts, max_size=len(BLOB), timeout=5.0)
    assert fetch_all(site.url("/blob"), policy) == BLOB
    assert fetch_all(site.url(f"/chunked/{len(BLOB)}"), policy) == b"x" * len(BLOB)


def test_chunked_body_over_limit_is_refused_while_streaming(site: Site) -> None:
    limit = 1 << 20
    policy = FetchPolicy(allow_hosts=LOCAL.allow_hosts, max_size=limit, timeout=5.0)
    received: list[int] = []

    def drain(chunks: Iterator[bytes]) -> None:
        received.extend(len(chunk) for chunk in chunks)

    with open_url(site.url(f"/chunked/{4 << 20}"), policy) as fetched:
        assert fetched.size is None
        with pytest.raises(InvalidRequest, match=f"larger than the limit of {limit} bytes"):
            drain(fetched.chunks(256 << 10))
    assert 0 < sum(received) <= limit


def test_connects_to_the_address_it_checked(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: a second lookup of the name would answer differently; none is made."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.test":
            lookups.append(host)
            if len(lookups) > 1:
                raise socket.gaierror(socket.EAI_NONAME, "rebound")
            return real("127.0.0.1", port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    # Treat loopback as public so the named host passes the check; only pinning is tested.
    monkeypatch.setattr(fetch, "_refusal", lambda address: None)
    with open_url(site.url("/redirect?/blob", host="rebind.test"), FetchPolicy()) as fetched:
        assert b"".join(fetched.chunks()) == BLOB
    assert lookups == ["rebind.test"]
    assert site.requests == [
        ("/redirect?/blob", f"rebind.test:{site.port}"),
        ("/blob", f"rebind.test:{site.port}"),
    ]
