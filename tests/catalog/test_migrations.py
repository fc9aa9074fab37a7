"""Migrations: the initial revision builds exactly schema.py, and re-running is a no-op."""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, insert, inspect

from ferry.catalog import Catalog, ImageRecord, Location
from ferry.catalog.catalog import MIGRATIONS
from ferry.catalog.records import utcnow
from ferry.catalog.schema import image_locations, metadata

HEAD = "0008"  # the newest revision
TABLES = {"alembic_version", "images", "image_properties", "image_tags", "image_locations", "tasks",
          "volumes", "volume_snapshots", "servers", "backups", "holders", "leases",
          "image_members", "metadef_namespaces", "metadef_resource_types", "metadef_associations",
          "metadef_objects", "metadef_properties", "metadef_tags"}  # fmt: skip


def schema_of(url: str) -> tuple[set[str], str | None, list[object]]:
    """Tables, the alembic revision, and any difference from schema.py's metadata."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn)
            diff = compare_metadata(context, metadata)
            return set(inspect(conn).get_table_names()), context.get_current_revision(), diff
    finally:
        engine.dispose()


def test_migrate_twice_is_a_no_op(catalog_url: str) -> None:
    with Catalog(catalog_url) as catalog:
        catalog.migrate()
        image = catalog.create_image(ImageRecord(id="i-1", properties={"k": "v"}))
        first = schema_of(catalog_url)
        catalog.migrate()
        assert schema_of(catalog_url) == first
        assert catalog.get_image("i-1") == image
    tables, revision, diff = first
    assert tables == TABLES and revision == HEAD
    assert diff == []  # the migration and schema.py describe the same tables


def migrate_after(url: str, barrier: Any) -> None:
    """Migrate in a child process once every sibling is ready."""
    with Catalog(url) as catalog:
        barrier.wait()
        catalog.migrate()


def test_first_migrations_from_several_processes_take_turns(catalog_url: str) -> None:
    # Several servers starting at once on one catalogue; a migration reads alembic_version
    # before it writes, which is where a deferred SQLite transaction gets "database is locked".
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    processes = [
        context.Process(target=migrate_after, args=(catalog_url, barrier)) for _ in range(3)
    ]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    assert schema_of(catalog_url)[:2] == (TABLES, HEAD)


def test_concurrent_first_migrations_in_one_process_take_turns(catalog_url: str) -> None:
    catalogs = [Catalog(catalog_url) for _ in range(3)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(catalogs))

    def migrate(catalog: Catalog) -> None:
        barrier.wait()
        try:
            catalog.migrate()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(c,)) for c in catalogs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for catalog in catalogs:
        catalog.close()
    assert [repr(e) for e in errors] == []
    assert schema_of(catalog_url)[:2] == (TABLES, HEAD)


def alembic_to(url: str, revision: str, *, down: bool = False) -> None:
    """Upgrade (or downgrade) the catalogue at ``url`` to ``revision``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(config, revision)
    finally:
        engine.dispose()


def test_0008_keys_locations_by_position_so_a_store_may_hold_several(catalog_url: str) -> None:
    alembic_to(catalog_url, "0007")
    now = utcnow()
    with Catalog(catalog_url) as catalog:
        catalog.create_image(ImageRecord(id="i-1", locations=(Location("web", "http://a/x"),)))
    alembic_to(catalog_url, "head")
    engine = create_engine(catalog_url)
    try:
        with engine.begin() as conn:
            key = inspect(conn).get_pk_constraint("image_locations")["constrained_columns"]
            assert key == ["image_id", "position"]
            row = {"image_id": "i-1", "store": "web", "status": "active", "metadata": {}}
            row |= {"url": "http://a/x#new", "position": 1, "created_at": now, "updated_at": now}
            conn.execute(insert(image_locations).values(row))
    finally:
        engine.dispose()
    with Catalog(catalog_url) as catalog:
        urls = [loc.url for loc in catalog.get_image("i-1").locations]
        assert urls == ["http://a/x", "http://a/x#new"]
        alembic_to(catalog_url, "0007", down=True)  # one per store again: the first stays
        assert [loc.url for loc in catalog.get_image("i-1").locations] == ["http://a/x"]
