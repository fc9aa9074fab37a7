"""``POST /v2/tasks``: Glance's tasks API create, and the legacy ``import`` task it runs.

Glance deprecated the tasks API for the interoperable import but still serves it (admin-only
by default). An ``import`` task makes a new image from ``input.image_properties`` and fills
it from ``input.import_from``, an http(s) URL. ferry runs it as a web-download import job of
the new image into the site's default store: the task record *is* that job (same worker, same
lease, same SSRF guard), shown with Glance's type and input; its result names the image.

What Glance fails in the task rather than refusing (a missing input field, image properties
its schema refuses, a URL its filter refuses) gives a task in ``failure`` with the reason,
answered 201 as Glance does; only a body that is not a task at all is a 400.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from typing import Any

import jsonschema

from ferry.catalog import TaskRecord
from ferry.catalog.records import utcnow
from ferry.errors import FerryError, InvalidRequest
from ferry.images.imports import TASK_EXPIRY, Imports
from ferry.images.service import schema

LEGACY_TYPE = "import"
INPUT_FIELDS = ("import_from", "import_from_format", "image_properties")


def create_task(
    imports: Imports,
    body: object,
    owner: str | None,
    user_id: str | None = None,
    request_id: str | None = None,
) -> TaskRecord:
    """Check a task body as Glance does and start it; the task as it stands."""
    task_type, task_input = _parse(body)
    if task_type != LEGACY_TYPE:  # import jobs of other kinds start from their own APIs
        reason = f"Task type {task_type} cannot be run through the tasks API"
        return _failed(imports, task_type, task_input, owner, user_id, request_id, reason)
    try:
        _check_input(task_input)
        props = dict(task_input["image_properties"])
        image = imports.service.create({"owner": owner, **props} if owner else props)
    except FerryError as exc:
        return _failed(imports, task_type, task_input, owner, user_id, request_id, str(exc))
    import_req = {
        "method": {"name": "web-download", "uri": task_input["import_from"]},
        "stores": [imports.service.stores.default.id],
        "all_stores_must_succeed": True,
    }
    try:
        job = imports.request(image.id, import_req, request_id)
    except FerryError as exc:  # refused (an internal address...): no image is left behind
        with contextlib.suppress(FerryError):
            imports.service.delete(image.id)
        return _failed(imports, task_type, task_input, owner, user_id, request_id, str(exc))
    # The job keeps its own import request and stores (what the worker runs) beside
    # Glance's input; a worker may already hold it, which these fields do not disturb.
    return imports.service.catalog.update_task(
        job.id,
        type=LEGACY_TYPE,
        owner=owner,
        user_id=user_id,
        input={
            **task_input,
            "import_req": job.input["import_req"],
            "backend": job.input["backend"],
        },
    )


def _parse(body: object) -> tuple[str, dict[str, Any]]:
    if not isinstance(body, Mapping):
        raise InvalidRequest("Body expected in request.")
    for key in ("type", "input"):
        if key not in body:
            raise InvalidRequest(f"Task '{key}' is required")
    try:
        jsonschema.Draft4Validator(schema("task")).validate(dict(body))
    except jsonschema.ValidationError as exc:
        raise InvalidRequest(
            f"Provided object does not match schema 'task': {exc.message}"
        ) from exc
    task_input = body["input"]
    if not isinstance(task_input, Mapping):  # the schema lets null through
        raise InvalidRequest("Provided object does not match schema 'task': input is not an object")
    return str(body["type"]), dict(task_input)


def _check_input(task_input: Mapping[str, Any]) -> None:
    """Glance's words for an import task's input that lacks a field."""
    for key in INPUT_FIELDS:
        if key not in task_input:
            raise InvalidRequest(f"Input does not contain '{key}' field")
    if not isinstance(task_input["image_properties"], Mapping):
        raise InvalidRequest("Input field 'image_properties' must be an object")
    if not isinstance(task_input["import_from"], str):
        raise InvalidRequest("Input field 'import_from' must be a URL")


def _failed(
    imports: Imports,
    task_type: str,
    task_input: dict[str, Any],
    owner: str | None,
    user_id: str | None,
    request_id: str | None,
    message: str,
) -> TaskRecord:
    """A task recorded as failed from the start: no worker ever claims it."""
    now = utcnow()
    task = TaskRecord(
        id=str(uuid.uuid4()),
        type=task_type,
        status="failure",
        owner=owner,
        request_id=request_id,
        user_id=user_id,
        input=task_input,
        message=message,
        created_at=now,
        updated_at=now,
        expires_at=now + TASK_EXPIRY,
        site=imports.site,
    )
    return imports.service.catalog.create_task(task)
