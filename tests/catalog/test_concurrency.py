"""Many writers at once: processes x threads against one catalogue, no lost or failed write."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from concurrent.futures import ProcessPoolExecutor

from ferry.catalog import Catalog, ImageRecord, TaskRecord

PROCESSES, THREADS, UPDATES = 2, 4, 50


def hammer(url: str, image_id: str, process: int) -> int:
    """Run THREADS threads of UPDATES writes (plus reads) each; return the writes done."""
    catalog = Catalog(url)
    done: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker(thread: int) -> None:
        start.wait()
        try:
            for n in range(UPDATES):
                key = f"p{process}-t{thread}-n{n}"
                catalog.update_image(image_id, set_properties={key: "x"}, add_tags=[key])
                if n % 10 == 0:
                    catalog.create_task(TaskRecord(id=str(uuid.uuid4()), type="import"))
                    catalog.list_images(limit=5)
                done.append(1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    catalog.close()
    if errors:
        raise errors[0]
    return len(done)


def test_processes_and_threads_write_concurrently(catalog: Catalog, catalog_url: str) -> None:
    image = catalog.create_image(ImageRecord(id=str(uuid.uuid4())))
    # spawn, not fork: forking a process whose threads hold pooled connections is unsafe.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(PROCESSES, mp_context=context) as pool:
        futures = [pool.submit(hammer, catalog_url, image.id, p) for p in range(PROCESSES)]
        counts = [f.result(timeout=300) for f in futures]
    assert counts == [THREADS * UPDATES] * PROCESSES
    final = catalog.get_image(image.id)
    total = PROCESSES * THREADS * UPDATES
    assert len(final.properties) == total and len(final.tags) == total
    assert len(catalog.list_tasks(limit=1000)) == PROCESSES * THREADS * (UPDATES // 10)


def test_in_memory_catalogue_serves_threads() -> None:
    # sqlite:// is one shared connection; the catalogue serializes its transactions.
    with Catalog("sqlite://") as catalog:
        catalog.migrate()
        image = catalog.create_image(ImageRecord(id="mem"))

        def worker(thread: int) -> None:
            for n in range(20):
                catalog.update_image(image.id, set_properties={f"t{thread}-{n}": "x"})

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(catalog.get_image(image.id).properties) == 80
