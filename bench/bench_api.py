"""Image API benchmark: upload and download through HTTP vs single-pass sha512 of the bytes.

Starts ``ferry serve`` for a site with one embedded store, then for a 1 GiB random and a
1 GiB mostly-zero image: uploads it in 1 MiB chunks (as glanceclient sends), downloads it,
and times Python's sha512 over the same bytes in the same run. Last, uploads 4 GiB and
reports the server's peak RSS growth (VmHWM after minus VmRSS before).

Run: ``.venv/bin/python bench/bench_api.py [--size 1G] [--big 4G]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml

from ferry.block import ops
from ferry.block.embedded import EmbeddedCluster
from table import print_table

MiB = 1 << 20
CHUNK = MiB


def random_source(size: int) -> Iterator[bytes]:
    """Incompressible, never-repeating chunks, cheap to make: 64 MiB of randomness reused,
    each 1 MiB chunk made unique by a counter in its first bytes (so no dedup helps)."""
    block = os.urandom(64 * MiB)
    for n, off in enumerate(range(0, size, CHUNK)):
        start = (n % 64) * CHUNK
        yield n.to_bytes(16, "big") + block[start + 16 : start + min(CHUNK, size - off)]


def mostly_zero_source(size: int) -> Iterator[bytes]:
    rng = random.Random(7)  # noqa: S311 - places data, not secrets
    data = {rng.randrange(size // CHUNK) for _ in range(max(1, size // CHUNK // 50))}
    zero = bytes(CHUNK)
    noise = os.urandom(CHUNK)
    for i in range(size // CHUNK):
        yield noise if i in data else zero


def sha512_time(chunks: Iterator[bytes]) -> float:
    h = hashlib.sha512()
    t = time.perf_counter()
    for c in chunks:
        h.update(c)
    return time.perf_counter() - t


def rss(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def serve(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    EmbeddedCluster.init(work / "central", "central")
    config = {
        "catalog": f"sqlite:///{work / 'catalog.db'}",
        "clusters": {"central": {"embedded": str(work / "central")}},
        "sites": {
            "central": {
                "listen": "127.0.0.1:19292",
                "stores": [{"id": "default_backend", "default": True}],
            }
        },
    }
    (work / "ferry.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferry", "serve", "--config", str(work / "ferry.yaml"),
         "--site", "central"],
    )  # fmt: skip
    url = "http://127.0.0.1:19292"
    for _ in range(100):
        try:
            httpx.get(f"{url}/versions", timeout=1)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("ferry serve did not start")


def upload(http: httpx.Client, chunks: Iterator[bytes], size: int) -> tuple[str, float]:
    image = http.post("/v2/images", json={"name": "bench", "disk_format": "raw",
                                          "container_format": "bare"}).json()  # fmt: skip
    t = time.perf_counter()
    r = http.put(f"/v2/images/{image['id']}/file", content=chunks,
                 headers={"Content-Type": "application/octet-stream",
                          "x-openstack-image-size": str(size)})  # fmt: skip
    elapsed = time.perf_counter() - t
    r.raise_for_status()
    return image["id"], elapsed


def download(http: httpx.Client, image_id: str) -> float:
    t = time.perf_counter()
    with http.stream("GET", f"/v2/images/{image_id}/file") as r:
        for _ in r.iter_raw(CHUNK):
            pass
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="1G")
    parser.add_argument("--big", default="4G")
    args = parser.parse_args()
    size, big = ops.parse_size(args.size), ops.parse_size(args.big)
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-api-", dir="/var/tmp"))
    proc, url = serve(work)
    rows = []
    try:
        with httpx.Client(base_url=url, timeout=600) as http:
            for label, source in (("random", random_source), ("mostly-zero", mostly_zero_source)):
                ref = sha512_time(source(size))
                image_id, up = upload(http, source(size), size)
                down = download(http, image_id)
                rows.append((f"upload {args.size} {label}", f"{up:.2f} s",
                             f"sha512 {ref:.2f} s", f"{ref / up:.2f}x sha512 rate"))  # fmt: skip
                rows.append((f"download {args.size} {label}", f"{down:.2f} s",
                             f"sha512 {ref:.2f} s", f"{ref / down:.2f}x sha512 rate"))  # fmt: skip
                http.delete(f"/v2/images/{image_id}")
            before = rss(proc.pid, "VmRSS")
            image_id, up = upload(http, random_source(big), big)
            peak = rss(proc.pid, "VmHWM")
            growth = f"+{(peak - before) / MiB:.1f} MiB"
            rows.append((f"upload {args.big} random: server RSS", growth,
                         f"before {before / MiB:.0f} MiB", "target < 50 MiB growth"))  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(15)
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows)


if __name__ == "__main__":
    main()
