"""How a site's API is served: one uvicorn configuration, guarded against slow and many clients.

uvicorn alone has an idle timeout between requests (``timeout_keep_alive``) but none while a
request's header or body trickles in, and its ``limit_concurrency`` answers 503 only once a
header has arrived, holding every connection (and its file descriptor) until then. The
protocol below adds a header deadline, a body idle timeout and a connection cap that closes
the excess connection as soon as it is accepted, so slow clients cannot starve the others.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ferry.config import Config, LimitsConfig
from ferry.errors import InvalidRequest

_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
LOGGERS = ("asyncio", "uvicorn", "uvicorn.error", "ferry")


def uvicorn_config(app: Any, limits: LimitsConfig, **options: Any) -> uvicorn.Config:
    """The uvicorn.Config of one site, for ``ferry serve`` and ``ferry up`` alike."""
    config = uvicorn.Config(
        app,
        http=guarded_protocol(limits),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        timeout_keep_alive=limits.keep_alive_timeout,
        backlog=limits.backlog,
        **options,
    )
    quiet_repeats(limits.log_repeat_seconds)
    return config


def site_options(config: Config, site_name: str, host: str) -> dict[str, Any]:
    """uvicorn's options a site's topology adds: its certificate. Refuses a noauth site on a
    non-loopback address unless the operator allowed it (anyone reaching it would be admin)."""
    auth = config.site_auth(site_name)
    if auth.mode == "noauth" and not auth.allow_noauth_remote and not is_loopback(host):
        raise InvalidRequest(
            f"site {site_name}: refusing to listen on {host} without authentication; use "
            "auth.mode keystone, listen on 127.0.0.1, or set auth.allow_noauth_remote: true"
        )
    tls = config.site(site_name).tls
    if tls is None:
        return {}
    return {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


def guarded_protocol(limits: LimitsConfig) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with ``limits``' header, body and connection guards."""
    return type("GuardedHttp", (GuardedHttp,), {"limits": limits})


class GuardedHttp(HttpToolsProtocol):
    """Closes a connection whose header is late (408) or whose body stalls, and any
    connection past ``max_connections`` (503)."""

    limits: LimitsConfig
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            transport.write(_BUSY)
            transport.close()
            return
        self._arm(self.limits.header_timeout, self._header_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.limits.header_timeout, self._header_late)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if not self.transport.is_closing():
            self._arm(self.limits.body_timeout, self._body_stalled)

    def on_body(self, body: bytes) -> None:
        self._arm(self.limits.body_timeout, self._body_stalled)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _header_late(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.transport.write(_TIMEOUT)
            self.transport.close()

    def _body_stalled(self) -> None:
        self._timer = None
        waiting = self.flow.read_paused or (self.cycle and self.cycle.waiting_for_100_continue)
        if waiting:  # the server, not the client, is behind: wait on
            self._arm(self.limits.body_timeout, self._body_stalled)
        elif not self.transport.is_closing():
            self.transport.close()  # the app sees a disconnect and undoes the upload


def quiet_repeats(interval: float) -> None:
    """Count, rather than write, identical log lines repeated within ``interval`` seconds.

    The filter sits on ferry's, uvicorn's and asyncio's loggers (records logged there) and on
    the root logger's handlers (records that propagate to them).
    """
    if interval <= 0:
        return
    targets: list[logging.Filterer] = [logging.getLogger(n) for n in LOGGERS]
    targets += logging.getLogger().handlers
    for target in targets:
        if not any(isinstance(f, RepeatFilter) for f in target.filters):
            target.addFilter(RepeatFilter(interval))


class RepeatFilter(logging.Filter):
    """Passes a line once per ``interval``; the next one passed says how many were held back."""

    MAX_KEYS = 1024

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval = interval
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}  # -> first, held

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.getMessage())
        now = time.monotonic()
        first, held = self._seen.get(key, (now, 0))
        if key in self._seen and now - first < self.interval:
            self._seen[key] = (first, held + 1)
            return False
        if len(self._seen) >= self.MAX_KEYS:
            self._seen.clear()
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} ({held} identical lines in {self.interval:g} s held back)"
        return True
