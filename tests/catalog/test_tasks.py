"""Tasks in the catalogue: Glance's fields plus the durable-job lease and progress."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from ferry.catalog import Catalog, ImageRecord, TaskRecord
from ferry.errors import AlreadyExists, Conflict, InvalidRequest, NotFound

T0 = datetime(2026, 11, 21, 8, 1, 23, 69184, tzinfo=UTC)
IMPORT_REQ = {
    "method": {"name": "copy-image"},
    "stores": ["dcn0", "dcn1"],
    "all_stores_must_succeed": False,
}


def make_task(image_id: str = "img", when: datetime = T0, **kw: object) -> TaskRecord:
    return TaskRecord(
        id=str(uuid.uuid4()),
        type="api_image_import",
        image_id=image_id,
        owner="c0ffee00c0ffee00c0ffee00c0ffee00",
        request_id="req-8dd677a9-28d9-4950-a465-00b94db303cc",
        user_id="ad00000000000000000000000000000a",
        input={"image_id": image_id, "import_req": IMPORT_REQ, "backend": ["dcn0", "dcn1"]},
        created_at=when,
        updated_at=when,
        expires_at=when + timedelta(hours=48),
        **kw,  # type: ignore[arg-type]
    )


def test_create_get_update(catalog: Catalog) -> None:
    task = catalog.create_task(make_task())
    assert task == catalog.get_task(task.id)
    assert (task.status, task.result, task.message, task.progress_done) == ("pending", None, "", 0)
    assert task.input["import_req"] == IMPORT_REQ
    lease = T0 + timedelta(minutes=1)
    running = catalog.update_task(
        task.id,
        expect_status={"pending"},
        status="processing",
        lease_owner="worker-1",
        lease_expires_at=lease,
        progress_total=64 << 20,
        progress_done=4 << 20,
        checkpoint={"offset": 4 << 20, "stores_done": []},
    )
    assert (running.status, running.lease_owner, running.lease_expires_at) == (
        "processing",
        "worker-1",
        lease,
    )
    assert running.checkpoint == {"offset": 4 << 20, "stores_done": []}
    assert running.updated_at > task.updated_at and running.created_at == task.created_at
    done = catalog.update_task(
        task.id,
        status="success",
        result={"image_id": "img"},
        message="Copied 64 MiB",
        lease_owner=None,
        checkpoint=None,
    )
    assert (done.result, done.message, done.lease_owner, done.checkpoint) == (
        {"image_id": "img"},
        "Copied 64 MiB",
        None,
        None,
    )
    with pytest.raises(Conflict, match="success"):
        catalog.update_task(task.id, expect_status={"pending"}, status="processing")


def test_errors(catalog: Catalog) -> None:
    task = catalog.create_task(make_task())
    with pytest.raises(AlreadyExists):
        catalog.create_task(task)
    with pytest.raises(NotFound, match="Task with the given ID nope could not be found"):
        catalog.get_task("nope")
    with pytest.raises(NotFound):
        catalog.update_task("nope", status="failure")
    with pytest.raises(InvalidRequest):
        catalog.update_task(task.id, status="done")
    with pytest.raises(InvalidRequest):
        catalog.update_task(task.id, id="other")
    with pytest.raises(InvalidRequest):
        catalog.update_task(task.id, lease_expires_at=datetime(2026, 1, 1))
    with pytest.raises(InvalidRequest):
        catalog.create_task(make_task(status="weird"))


def test_list_by_image_in_both_directions_with_paging(catalog: Catalog) -> None:
    mine = [
        catalog.create_task(make_task("img-1", T0 + timedelta(seconds=i // 2))) for i in range(7)
    ]
    other = catalog.create_task(make_task("img-2", T0 + timedelta(hours=1)))
    newest_first = catalog.list_tasks(image_id="img-1", limit=100)
    expected = sorted(mine, key=lambda t: (t.created_at, t.id), reverse=True)
    assert [t.id for t in newest_first] == [t.id for t in expected]
    oldest_first = catalog.list_tasks(image_id="img-1", sort_dir="asc", limit=100)
    assert [t.id for t in oldest_first] == [t.id for t in reversed(expected)]
    assert catalog.list_tasks()[0].id == other.id
    walked, marker = [], None
    while page := catalog.list_tasks(image_id="img-1", limit=3, marker=marker):
        walked += page
        marker = page[-1].id
    assert [t.id for t in walked] == [t.id for t in expected]
    with pytest.raises(InvalidRequest, match="could not be found"):
        catalog.list_tasks(marker="nope")


def test_list_filters(catalog: Catalog) -> None:
    a = catalog.create_task(make_task())
    b = catalog.create_task(make_task(status="failure"))
    assert [t.id for t in catalog.list_tasks(status="failure")] == [b.id]
    assert {t.id for t in catalog.list_tasks(type="api_image_import")} == {a.id, b.id}
    assert catalog.list_tasks(type="import") == []


def test_claim_takes_each_task_once_and_a_lapsed_lease_over(catalog: Catalog) -> None:
    lease = timedelta(seconds=30)
    first = catalog.create_task(make_task(site="central"))
    catalog.create_task(make_task(site="dcn0"))
    claimed = catalog.claim_task("central", "w1", lease)
    assert claimed is not None and claimed.id == first.id
    assert (claimed.status, claimed.lease_owner) == ("processing", "w1")
    assert catalog.claim_task("central", "w2", lease) is None  # held; dcn0's is not ours
    held = catalog.hold_task(first.id, "w1", lease, progress_done=10, checkpoint={"offset": 10})
    assert (held.progress_done, held.checkpoint) == (10, {"offset": 10})
    # w1 stops renewing; once its lease lapsed w2 takes the task over, checkpoint and all.
    catalog.hold_task(first.id, "w1", timedelta(seconds=-1))
    taken = catalog.claim_task("central", "w2", lease)
    assert taken is not None and taken.lease_owner == "w2" and taken.checkpoint == {"offset": 10}
    with pytest.raises(Conflict, match="held by w2"):
        catalog.hold_task(first.id, "w1", lease)  # the old holder learns it lost the task
    catalog.hold_task(first.id, "w2", lease, status="success")
    assert catalog.claim_task("central", "w3", timedelta(seconds=-1)) is None


def test_one_unfinished_task_per_image(catalog: Catalog) -> None:
    catalog.create_image(ImageRecord(id="img"))
    running = catalog.create_task(make_task(), sole_for_image=True)
    with pytest.raises(Conflict, match=running.id):
        catalog.create_task(make_task(), sole_for_image=True)
    catalog.update_task(running.id, status="success")
    catalog.create_task(make_task(), sole_for_image=True)
    with pytest.raises(NotFound):
        catalog.create_task(make_task("nope"), sole_for_image=True)
