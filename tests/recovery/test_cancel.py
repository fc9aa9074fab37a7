"""DELETE of an image stops its running import and leaves none of its data behind."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest
import yaml

from ferry.block import connect
from ferry.catalog import Catalog
from tests.recovery.conftest import Crashable, MiB
from tests.recovery.test_crash import data

SIZE = 64 * MiB


HUNG_UP = threading.Event()  # set when the importer stopped reading before the end


@pytest.fixture
def slow_url() -> Iterator[str]:
    """A raw image served at about 8 MiB/s on 127.0.0.1: its import takes 8 seconds."""
    body = data(SIZE)
    HUNG_UP.clear()

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(SIZE))
            self.end_headers()
            try:
                for offset in range(0, SIZE, MiB):
                    self.wfile.write(body[offset : offset + MiB])
                    time.sleep(0.125)
            except OSError:
                HUNG_UP.set()  # the importer stopped reading: what this test wants

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/disk.raw"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("sites", ["embedded"], indirect=True)
def test_delete_stops_a_running_web_download(sites: Crashable, slow_url: str) -> None:
    # Only the job itself may stop the job: no sweep removes its data under it.
    topology = yaml.safe_load(sites.topology.read_text())
    topology["sites"]["central"]["recovery"]["remove_orphans"] = False
    sites.topology.write_text(yaml.safe_dump(topology))
    sites.start()
    image_id = sites.new_image()
    body = {"method": {"name": "web-download", "uri": slow_url}}
    sites.ok("central", "POST", f"/v2/images/{image_id}/import", json=body)
    with Catalog(sites.catalog_url) as catalog:
        deadline = time.monotonic() + 30
        while not (task := catalog.list_tasks(image_id=image_id)[0]).progress_done:
            assert time.monotonic() < deadline, task
            time.sleep(0.1)
        assert task.progress_done < SIZE  # still importing
        assert sites.call("central", "DELETE", f"/v2/images/{image_id}").status_code == 204
        stopped = time.monotonic()
        # Had the import run on, the server would have sent every byte and never seen it hang up.
        assert HUNG_UP.wait(30), "the import ran on after the DELETE"
        with connect(sites.targets["central"]) as cluster:
            while image_id in cluster.list_images("images"):  # the job removes its data
                assert time.monotonic() - stopped < 30, "the import left its data behind"
                time.sleep(0.1)
        task = catalog.get_task(task.id)
    assert task.status == "failure" and task.message == "The image was deleted"
    staging = sites.tmp / "staging-central"
    assert not staging.exists() or list(staging.iterdir()) == []
    sites.stop()
