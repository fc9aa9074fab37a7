"""Image members through the real python-glanceclient and raw HTTP, in noauth mode (the caller
is the admin of the deployment's project). Project scoping is in tests/identity."""

from __future__ import annotations

import re

from tests.api.conftest import Site
from tests.api.test_glance_cli import table

PROJECT = "5e1f0e2b9a3c4d6e8f00112233445566"
MEMBER_KEYS = ["member_id", "image_id", "status", "created_at", "updated_at", "schema"]
WHEN = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def test_schemas_are_glances(site: Site) -> None:
    with site.http() as http:
        member = http.get("/v2/schemas/member").json()
        members = http.get("/v2/schemas/members").json()
    assert member["name"] == "member" and list(member["properties"]) == [
        "member_id", "image_id", "created_at", "updated_at", "status", "schema"
    ]  # fmt: skip
    assert member["properties"]["status"]["enum"] == ["pending", "accepted", "rejected"]
    assert members == {
        "name": "members",
        "properties": {
            "members": {"type": "array", "items": member},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
    }


def test_glanceclient_shares_an_image(site: Site) -> None:
    image = table(site.glance("image-create", "--name", "shared").stdout)
    assert image["visibility"] == "shared"
    added = site.glance("member-create", image["id"], PROJECT).stdout
    assert PROJECT in added and "pending" in added
    listed = site.glance("member-list", "--image-id", image["id"]).stdout
    assert image["id"] in listed and PROJECT in listed and "pending" in listed
    site.glance("member-update", image["id"], PROJECT, "accepted")
    with site.http() as http:
        one = http.get(f"/v2/images/{image['id']}/members/{PROJECT}")
        assert one.status_code == 200 and list(one.json()) == MEMBER_KEYS
        doc = one.json()
        assert (doc["member_id"], doc["image_id"], doc["status"]) == (
            PROJECT, image["id"], "accepted"
        )  # fmt: skip
        assert WHEN.fullmatch(doc["created_at"]) and doc["schema"] == "/v2/schemas/member"
        everyone = http.get(f"/v2/images/{image['id']}/members").json()
        assert everyone == {"members": [doc], "schema": "/v2/schemas/members"}
    site.glance("member-delete", image["id"], PROJECT)
    assert PROJECT not in site.glance("member-list", "--image-id", image["id"]).stdout


def test_members_errors_are_glances(site: Site) -> None:
    with site.http() as http:
        shared = http.post("/v2/images", json={"name": "s"}).json()["id"]
        private = http.post("/v2/images", json={"name": "p", "visibility": "private"}).json()["id"]
        members = f"/v2/images/{shared}/members"
        assert http.post(members, json={"member": PROJECT}).status_code == 200
        again = http.post(members, json={"member": PROJECT})
        assert again.status_code == 409
        assert f"Member {PROJECT} is duplicated for image {shared}" in again.text
        for body, words in [
            ({}, "Member to be added not specified"),
            ({"member": ""}, "Member can&#x27;t be empty"),
            ([PROJECT], "Expected a member in the form"),
        ]:
            bad = http.post(members, json=body)
            assert bad.status_code == 400 and words in bad.text, bad.text
        status = http.put(f"{members}/{PROJECT}", json={"status": "maybe"})
        assert status.status_code == 400 and "Status must be" in status.text
        assert http.put(f"{members}/{PROJECT}", json={}).status_code == 400
        assert http.get(f"{members}/nobody").status_code == 404
        assert http.delete(f"{members}/nobody").status_code == 404
        refused = http.post(f"/v2/images/{private}/members", json={"member": PROJECT})
        assert refused.status_code == 403
        assert f"Not allowed to create members for image {private}." in refused.text
        assert http.get(f"/v2/images/{private}/members").status_code == 403
        assert http.get(f"/v2/images/{private}/members/{PROJECT}").status_code == 404
        unknown = "00000000-0000-0000-0000-000000000000"
        gone = http.get(f"/v2/images/{unknown}/members")
        assert gone.status_code == 404 and f"Image {unknown} not found." in gone.text
        assert http.delete(f"/v2/images/{shared}").status_code == 204
        assert http.get(f"{members}").status_code == 404
