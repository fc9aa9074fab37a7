"""Every site of a topology served from one process, each Image API on its own port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Generator

import uvicorn

from ferry.api.app import create_app
from ferry.api.server import site_options, uvicorn_config
from ferry.config import Config
from ferry.errors import BackendUnavailable, InvalidRequest


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the process handles signals once for all its sites (see Sites.stop)


class Sites:
    """Serve sites of ``config`` in a background thread: ``start()``, then ``stop()``."""

    def __init__(self, config: Config, names: list[str] | None = None) -> None:
        self.config = config
        self.names = names or list(config.sites)
        self._servers: dict[str, _Server] = {}
        self._sockets: dict[str, socket.socket] = {}
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def start(self, timeout: float = 60) -> None:
        """Listen on every site's address, then serve; raise if a site cannot start."""
        for name in self.names:
            site = self.config.site(name)
            options = site_options(self.config, name, site.host)
            self._sockets[name] = _listen(name, site.host, site.port, site.limits.backlog)
            app = create_app(self.config, name)
            server_config = uvicorn_config(app, site.limits, **options)
            self._servers[name] = _Server(server_config)
        self._thread = threading.Thread(target=self._run, name="ferry-sites", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not all(s.started for s in self._servers.values()):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                failed = [n for n, s in self._servers.items() if not s.started]
                raise BackendUnavailable(
                    f"site(s) {', '.join(failed)} did not start"
                    + (f": {self._failure}" if self._failure else " (see the log above)")
                )
            time.sleep(0.05)

    def _run(self) -> None:
        async def serve_all() -> None:
            await asyncio.gather(
                *(s.serve(sockets=[self._sockets[n]]) for n, s in self._servers.items())
            )

        try:
            asyncio.run(serve_all())
        except BaseException as exc:  # reported by start()
            self._failure = exc

    def wait(self) -> None:
        """Block until the sites stop (``stop()`` from a signal handler)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def stop(self) -> None:
        """Finish in-flight requests (up to 5 s), stop the import workers, close the stores."""
        for server in self._servers.values():
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)
        for sock in self._sockets.values():
            sock.close()


def _listen(site: str, host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidRequest(
            f"site {site}: cannot listen on {host}:{port}: {exc.strerror}"
            + (" (is another 'ferry up' running?)" if exc.errno == 98 else "")
        ) from exc
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock
