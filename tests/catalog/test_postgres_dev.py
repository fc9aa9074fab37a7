"""scripts/postgres-dev for real: start two servers, use one, stop them one at a time."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.catalog import Catalog, ImageRecord

SCRIPT = Path(__file__).parents[2] / "scripts" / "postgres-dev"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    # capture_output + timeout: a server that kept our stdout open would hang this call.
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def server_dirs() -> Iterator[list[Path]]:
    if not glob.glob("/usr/lib/postgresql/*/bin/postgres"):
        reason = "PostgreSQL is not installed (scripts/postgres-dev start installs it)"
        if os.environ.get("FERRY_REQUIRE_POSTGRES"):
            pytest.fail(f"FERRY_REQUIRE_POSTGRES is set but {reason}")
        pytest.skip(reason)
    # Under /var/tmp, not pytest's 0700 tmp_path: the server's OS user must reach the dir.
    dirs = [Path(tempfile.mkdtemp(prefix="ferry-pg-test.", dir="/var/tmp")) for _ in range(2)]
    yield dirs
    for d in dirs:
        run("stop", str(d))
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.slow
def test_start_use_stop(server_dirs: list[Path]) -> None:
    ports = [free_port(), free_port()]
    started = [run("start", str(d), str(p)) for d, p in zip(server_dirs, ports, strict=True)]
    for result, port in zip(started, ports, strict=True):
        assert result.returncode == 0, result.stderr
        (line,) = result.stdout.splitlines()  # the URL and nothing else
        assert line.startswith("url=postgresql+psycopg://ferry:")
        assert line.endswith(f"@127.0.0.1:{port}/ferry")
    url = started[0].stdout.strip().removeprefix("url=")

    with Catalog(url) as catalog:
        catalog.migrate()
        catalog.create_image(ImageRecord(id="pg-dev-image"))
        assert catalog.get_image("pg-dev-image").status == "queued"

    again = run("start", str(server_dirs[0]), str(ports[0]))
    assert (again.returncode, again.stdout) == (0, started[0].stdout)

    assert run("stop", str(server_dirs[0])).returncode == 0
    assert not listening(ports[0])
    assert listening(ports[1])  # the other server was left alone
    assert run("stop", str(server_dirs[0])).returncode == 0  # idempotent
    assert run("stop", str(server_dirs[0] / "never-started")).returncode == 0

    restarted = run("start", str(server_dirs[0]), str(ports[0]))
    assert restarted.stdout == started[0].stdout  # same data, same password
    with Catalog(url) as catalog:
        assert catalog.get_image("pg-dev-image").id == "pg-dev-image"
