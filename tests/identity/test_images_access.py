"""Images between projects through a real Keystone: what Glance's default policy lets each
caller see and do (private images stay in their project, readers only read, admins publicize,
shared images reach member projects once they accept), an edge's users cannot drop central's
copy, and an operator's policy file changes a rule. Sites run ``ferry up`` in keystone mode:
central (default policy) and dcn0 (a policy file that lets project members publicize)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.identity.keystone import (
    FerryUp,
    Keystone,
    free_port,
    keystone_topology,
    new_password,
    run_ferry_up,
)

PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
DATA = os.urandom(1 << 20)
# Named afresh per run: the run's Keystone may hold earlier runs' users, and resetting a
# user's password revokes the tokens it was just given within that second.
RUN = secrets.token_hex(3)
PEOPLE = {  # persona -> (project, roles)
    "a": (f"img-a-{RUN}", ("member",)),
    "a_reader": (f"img-a-{RUN}", ("reader",)),
    "b": (f"img-b-{RUN}", ("member",)),
    "c": (f"img-c-{RUN}", ("member",)),
}


@dataclass(frozen=True)
class Cloud:
    ferry: FerryUp
    tokens: dict[str, str]  # persona -> token (PEOPLE and "admin")
    projects: dict[str, str]  # persona -> project id

    def call(
        self, persona: str, method: str, path: str, site: str = "central", **kw: Any
    ) -> httpx.Response:
        # JSON error bodies: their messages read as said, unescaped
        headers = {"X-Auth-Token": self.tokens[persona], "Accept": "application/json"}
        headers |= kw.pop("headers", {})
        url = f"{self.ferry.urls[site]}{path}"
        return httpx.request(method, url, headers=headers, timeout=120, **kw)

    def image(self, persona: str, site: str = "central", **body: Any) -> dict[str, Any]:
        body = {"disk_format": "raw", "container_format": "bare", **body}
        reply = self.call(persona, "POST", "/v2/images", site, json=body)
        assert reply.status_code == 201, reply.text
        return dict(reply.json())

    def uploaded(self, persona: str, **body: Any) -> dict[str, Any]:
        image = self.image(persona, **body)
        put = self.call(persona, "PUT", f"/v2/images/{image['id']}/file", content=DATA,
                        headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        assert put.status_code == 204, put.text
        return image

    def listed(self, persona: str, query: str = "", site: str = "central") -> set[str]:
        reply = self.call(persona, "GET", f"/v2/images?limit=1000{query}", site)
        assert reply.status_code == 200, reply.text
        return {i["id"] for i in reply.json()["images"]}

    def patch(self, persona: str, image_id: str, *ops: dict[str, Any]) -> httpx.Response:
        return self.call(persona, "PATCH", f"/v2/images/{image_id}", json=list(ops), headers=PATCH)

    def glance(self, persona: str, *args: str) -> subprocess.CompletedProcess[str]:
        """The real python-glanceclient CLI with the persona's token."""
        glance = Path(sys.executable).with_name("glance")
        token, url = self.tokens[persona], self.ferry.urls["central"]
        return subprocess.run(
            [str(glance), "--os-image-url", url, "--os-auth-token", token, *args],
            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        )  # fmt: skip


@pytest.fixture(scope="module")
def cloud(keystone: Keystone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    work = tmp_path_factory.mktemp("images-access")
    service_password, service_user = new_password(), f"glance-{RUN}"
    keystone.service_user(service_password, service_user)
    raw = keystone_topology(work / "data", keystone, service_password, [free_port(), free_port()])
    for site in raw["sites"].values():
        site["auth"]["keystone"]["username"] = service_user
    rules = work / "dcn0-policy.yaml"
    rules.write_text('"publicize_image": "role:member and project_id:%(project_id)s"\n')
    raw["sites"]["dcn0"]["auth"]["policy_file"] = str(rules)
    password = new_password()
    tokens = {"admin": keystone.token("admin", keystone.admin_password, "admin")}
    projects = {}
    for persona, (project, roles) in PEOPLE.items():
        keystone.user(f"{project}-{persona}", password, project, roles)
        tokens[persona] = keystone.token(f"{project}-{persona}", password, project)
        projects[persona] = keystone.project(project)
    with run_ferry_up(raw, work) as up:
        yield Cloud(up, tokens, projects)


def test_a_project_never_sees_or_touches_anothers_private_image(cloud: Cloud) -> None:
    private = cloud.uploaded("a", name="a-private", visibility="private")["id"]
    unshared = cloud.image("a", name="a-shared-with-nobody")["id"]
    mine = cloud.call("a", "GET", f"/v2/images/{private}").json()
    assert mine["owner"] == cloud.projects["a"] and mine["status"] == "active"
    assert {private, unshared} <= cloud.listed("a")
    for image_id in (private, unshared):
        assert image_id not in cloud.listed("b") | cloud.listed("b", "&visibility=all")
        for method, path in [
            ("GET", ""),
            ("DELETE", ""),
            ("GET", "/file"),
            ("PUT", "/file"),
            ("GET", "/members"),
            ("GET", "/tasks"),
            ("PUT", "/tags/mine"),
        ]:
            reply = cloud.call("b", method, f"/v2/images/{image_id}{path}", content=b"x")
            assert reply.status_code == 404, (method, path, reply.text)
        assert (
            cloud.patch("b", image_id, {"op": "replace", "path": "/name", "value": "b"}).status_code
            == 404
        )
        copy = {"method": {"name": "copy-image"}, "stores": ["dcn0"]}
        imported = cloud.call("b", "POST", f"/v2/images/{image_id}/import", json=copy)
        assert imported.status_code == 404
    assert cloud.call("a", "GET", f"/v2/images/{private}").json()["name"] == "a-private"
    assert cloud.call("admin", "GET", f"/v2/images/{private}").status_code == 200
    assert {private, unshared} <= cloud.listed("admin")


def test_a_reader_reads_but_never_writes(cloud: Cloud) -> None:
    image = cloud.uploaded("a", name="a-for-readers")["id"]
    refused = cloud.call("a_reader", "POST", "/v2/images", json={"name": "r"})
    assert refused.status_code == 403 and "add_image" in refused.text
    assert cloud.call("a_reader", "GET", f"/v2/images/{image}").status_code == 200
    assert image in cloud.listed("a_reader")
    patched = cloud.patch("a_reader", image, {"op": "replace", "path": "/name", "value": "r"})
    assert patched.status_code == 403 and "modify_image" in patched.text
    for method, path, rule in [
        ("DELETE", "", "delete_image"),
        ("PUT", "/file", "upload_image"),
        ("PUT", "/stage", "modify_image"),
        ("GET", "/file", "download_image"),
        ("PUT", "/tags/r", "modify_image"),
        ("POST", "/actions/deactivate", "deactivate"),
    ]:
        reply = cloud.call("a_reader", method, f"/v2/images/{image}{path}", content=b"x")
        assert reply.status_code == 403, (method, path, reply.text)
        assert f"You are not authorized to complete {rule} action." in reply.text
    assert cloud.call("a", "GET", f"/v2/images/{image}/file").content == DATA


def test_only_an_admin_makes_an_image_public(cloud: Cloud) -> None:
    public = cloud.call("a", "POST", "/v2/images", json={"name": "p", "visibility": "public"})
    assert public.status_code == 403
    assert "You are not authorized to complete publicize_image action." in public.text
    theirs = cloud.call("a", "POST", "/v2/images", json={"owner": cloud.projects["b"]})
    assert theirs.status_code == 403
    assert f"You are not permitted to create images owned by '{cloud.projects['b']}'" in theirs.text
    image = cloud.image("a", name="a-to-publish")["id"]
    made_public = {"op": "replace", "path": "/visibility", "value": "public"}
    assert cloud.patch("a", image, made_public).status_code == 403
    owner = cloud.patch("a", image, {"op": "replace", "path": "/owner", "value": "x"})
    assert owner.status_code == 403 and "Owner can't be updated by non admin." in owner.text
    assert cloud.patch("admin", image, made_public).json()["visibility"] == "public"
    assert image in cloud.listed("b")
    assert cloud.call("b", "GET", f"/v2/images/{image}").status_code == 200
    assert (
        cloud.patch("b", image, {"op": "replace", "path": "/name", "value": "b"}).status_code == 403
    )
    assert cloud.call("b", "DELETE", f"/v2/images/{image}").status_code == 403
    community = cloud.image("a", name="a-community", visibility="community")["id"]
    assert community not in cloud.listed("b")
    assert community in cloud.listed("b", "&visibility=community")
    assert cloud.call("b", "GET", f"/v2/images/{community}").status_code == 200


def test_a_shared_image_reaches_a_member_project_once_it_accepts(cloud: Cloud) -> None:
    image = cloud.uploaded("a", name="a-shared")["id"]
    b, members = cloud.projects["b"], f"/v2/images/{image}/members"
    added = cloud.call("a", "POST", members, json={"member": b})
    assert added.status_code == 200, added.text
    assert added.json()["status"] == "pending" and added.json()["member_id"] == b
    assert cloud.call("b", "GET", f"/v2/images/{image}").status_code == 200  # before answering
    assert image not in cloud.listed("b")
    assert image in cloud.listed("b", "&member_status=pending")
    assert image in cloud.listed("b", "&visibility=shared&member_status=all")
    assert image not in cloud.listed("c", "&member_status=all")
    by_owner = cloud.call("a", "PUT", f"{members}/{b}", json={"status": "accepted"})
    assert by_owner.status_code == 403 and "modify_member" in by_owner.text
    # The member answers with the real glanceclient, and then lists the image with it.
    answered = cloud.glance("b", "member-update", image, b, "accepted")
    assert answered.returncode == 0, answered.stderr
    assert image in cloud.glance("b", "image-list").stdout
    assert image in cloud.listed("b")
    for method, path, body in [
        ("PATCH", "", [{"op": "replace", "path": "/name", "value": "b"}]),
        ("DELETE", "", None),
        ("POST", "/members", {"member": cloud.projects["c"]}),
        ("DELETE", f"/members/{b}", None),
    ]:
        headers = PATCH if method == "PATCH" else {}
        reply = cloud.call("b", method, f"/v2/images/{image}{path}", json=body, headers=headers)
        assert reply.status_code == 403, (method, path, reply.text)
    assert cloud.call("b", "GET", f"/v2/images/{image}/file").content == DATA
    assert [m["member_id"] for m in cloud.call("b", "GET", members).json()["members"]] == [b]
    assert [m["member_id"] for m in cloud.call("a", "GET", members).json()["members"]] == [b]
    assert cloud.call("c", "GET", f"/v2/images/{image}").status_code == 404
    assert cloud.call("c", "GET", members).status_code == 404
    again = cloud.call("a", "POST", members, json={"member": b})
    assert again.status_code == 409
    assert cloud.call("a", "DELETE", f"{members}/{b}").status_code == 204
    assert cloud.call("b", "GET", f"/v2/images/{image}").status_code == 404
    assert image not in cloud.listed("b", "&member_status=all")


def test_an_edge_user_cannot_drop_centrals_copy(cloud: Cloud) -> None:
    image = cloud.uploaded("a", name="a-everywhere")["id"]
    copy = {"method": {"name": "copy-image"}, "stores": ["dcn0"]}
    refused = cloud.call("a", "POST", f"/v2/images/{image}/import", json=copy)
    assert refused.status_code == 403 and "copy_image" in refused.text
    assert cloud.call("admin", "POST", f"/v2/images/{image}/import", json=copy).status_code == 202
    deadline = time.monotonic() + 120
    while (
        cloud.call("a", "GET", f"/v2/images/{image}").json().get("stores") != "dcn0,default_backend"
    ):
        assert time.monotonic() < deadline, "copy-image did not finish"
        time.sleep(0.5)
    at_edge = f"/v2/stores/central/{image}"
    dropped = cloud.call("a", "DELETE", at_edge, site="dcn0")
    assert dropped.status_code == 403, dropped.text
    assert "You are not authorized to complete delete_image_location action." in dropped.text
    assert cloud.call("b", "DELETE", at_edge, site="dcn0").status_code == 404
    seen = cloud.call("a", "GET", f"/v2/images/{image}", site="dcn0").json()
    assert seen["stores"] == "central,dcn0"
    assert cloud.call("admin", "DELETE", at_edge, site="dcn0").status_code == 204
    assert cloud.call("a", "GET", f"/v2/images/{image}", site="dcn0").json()["stores"] == "dcn0"


def test_a_policy_file_changes_a_rule_at_its_site(cloud: Cloud) -> None:
    body = {"name": "a-public-at-dcn0", "visibility": "public"}
    assert cloud.call("a", "POST", "/v2/images", json=body).status_code == 403  # central
    made = cloud.call("a", "POST", "/v2/images", site="dcn0", json=body)
    assert made.status_code == 201, made.text
    assert made.json()["id"] in cloud.listed("b")
    reader = cloud.call("a_reader", "POST", "/v2/images", site="dcn0", json=body)
    assert reader.status_code == 403  # a reader creates nothing, whatever the visibility


def test_volumes_and_servers_come_only_from_images_their_project_sees(cloud: Cloud) -> None:
    image = cloud.uploaded("a", name="a-bootable")["id"]
    volume = {"volume": {"size": 1, "name": "v", "imageRef": image}}
    server = {"server": {"name": "s", "imageRef": image}}
    assert cloud.call("b", "POST", "/v3/volumes", json=volume).status_code == 404
    assert cloud.call("b", "POST", "/v2.1/servers", json=server).status_code == 404
    b = cloud.projects["b"]
    cloud.call("a", "POST", f"/v2/images/{image}/members", json={"member": b})
    made = cloud.call("b", "POST", "/v3/volumes", json=volume)
    assert made.status_code == 202, made.text
    assert cloud.call("a", "POST", "/v3/volumes", json=volume).status_code == 202


def test_only_an_admin_reads_the_stores_details(cloud: Cloud) -> None:
    assert cloud.call("a", "GET", "/v2/info/stores").status_code == 200
    detail = cloud.call("a", "GET", "/v2/info/stores/detail")
    assert detail.status_code == 403 and "stores_info_detail" in detail.text
    assert cloud.call("admin", "GET", "/v2/info/stores/detail").status_code == 200
