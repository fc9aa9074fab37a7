"""Glance's metadata definitions API (metadefs) on a running ferry: the calls and answers
Tempest's metadefs tests make, Glance's error codes, and the standard namespaces."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from ferry.block.embedded import EmbeddedCluster
from ferry.catalog import Catalog
from ferry.catalog.metadef_records import NamespaceQuery
from ferry.catalog.metadefs import Metadefs
from ferry.errors import Forbidden, NotFound
from ferry.identity import Context
from ferry.identity.policy import Policy
from ferry.images import metadefs
from ferry.images.metadefs import OBJECTS, MetadefService
from tests.api.conftest import Site, start_site
from tests.catalog.conftest import fresh_postgres

STANDARD = Path(metadefs.__file__).parents[1] / "catalog" / "migrations" / "metadefs"
NS = "/v2/metadefs/namespaces"
RESOURCE_TYPES = ["OS::Glance::Image", "OS::Cinder::Volume", "OS::Nova::Flavor", "OS::Nova::Server"]


def _start(tmp: Path, catalog: str | None = None) -> Iterator[Site]:
    EmbeddedCluster.init(tmp / "default_backend", "default_backend")
    yield from start_site(tmp, {"default_backend": str(tmp / "default_backend")}, catalog)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """One site per catalogue backend; every test names its own namespaces."""
    tmp = tmp_path_factory.mktemp("metadefs")
    if request.param == "postgresql":
        with fresh_postgres() as url:
            yield from _start(tmp, url)
    else:
        yield from _start(tmp)


@pytest.fixture
def http(site: Site) -> Iterator[httpx.Client]:
    with site.http() as client:
        client.headers["Accept"] = "application/json"
        yield client


def unique(prefix: str = "test-ns") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_namespace(http: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"namespace": unique(), "visibility": "public", "description": "Tempest",
            "protected": False, **fields}  # fmt: skip
    response = http.post(NS, json=body)
    assert response.status_code == 201, response.text
    doc: dict[str, Any] = response.json()
    return doc


# --- standard namespaces ----------------------------------------------------------------------
def test_standard_resource_types_and_namespaces(http: httpx.Client) -> None:
    types = http.get("/v2/metadefs/resource_types").json()["resource_types"]
    assert [t["name"] for t in types][:4] == RESOURCE_TYPES
    assert set(types[0]) == {"name", "created_at", "updated_at"}
    listed = http.get(NS, params={"limit": 1000}).json()["namespaces"]
    standard = {json.loads(p.read_text())["namespace"] for p in STANDARD.glob("*.json")}
    found = {ns["namespace"]: ns for ns in listed if ns["namespace"] in standard}
    assert set(found) == standard
    for ns in found.values():
        assert ns["visibility"] == "public" and ns["protected"] is True
        assert ns["owner"] == "c0ffee00c0ffee00c0ffee00c0ffee00"
        assert ns["resource_type_associations"]
    libvirt = http.get(f"{NS}/OS::Compute::VirtCPUTopology").json()
    assert libvirt["properties"]["cpu_sockets"]["type"] == "integer"
    flavor = http.get(
        f"{NS}/OS::Compute::VirtCPUTopology", params={"resource_type": "OS::Nova::Flavor"}
    )
    assert "hw:cpu_sockets" in flavor.json()["properties"]
    roles = http.get(f"{NS}/Ferry::Server::Roles/tags").json()["tags"]
    assert {"name": "edge-gateway"} in roles


@pytest.mark.parametrize("path", sorted(STANDARD.glob("*.json")), ids=lambda p: p.stem)
def test_standard_namespace_files_match_glances_schema(path: Path) -> None:
    doc = json.loads(path.read_text())
    metadefs.check("namespace", doc)
    for obj in doc.get("objects", []):
        metadefs.check("object", obj)


def test_a_second_start_does_not_duplicate_standard_namespaces(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    counts = []
    for run in ("first", "second"):
        for site in _start(tmp_path / run, url):
            with site.http() as http:
                listed = http.get(NS, params={"limit": 1000}).json()["namespaces"]
                types = http.get("/v2/metadefs/resource_types").json()["resource_types"]
            counts.append((len(listed), [t["name"] for t in types]))
    assert counts[0] == counts[1]
    assert counts[0][0] == len(list(STANDARD.glob("*.json")))


# --- namespaces -------------------------------------------------------------------------------
def test_namespace_lifecycle_as_tempest_runs_it(http: httpx.Client) -> None:
    resource = http.get("/v2/metadefs/resource_types").json()["resource_types"][0]["name"]
    name = unique("namespace")
    made = make_namespace(http, namespace=name, display_name=name, protected=True,
                          resource_type_associations=[{"name": resource}])  # fmt: skip
    assert made["self"] == f"{NS}/{name}" and made["schema"] == "/v2/schemas/metadefs/namespace"
    assert [a["name"] for a in made["resource_type_associations"]] == [resource]
    assert name in [
        ns["namespace"] for ns in http.get(NS, params={"limit": 1000}).json()["namespaces"]
    ]
    shown = http.get(f"{NS}/{name}").json()
    assert shown["namespace"] == name and shown["visibility"] == "public"
    refused = http.delete(f"{NS}/{name}")
    assert refused.status_code == 403
    assert "is protected and cannot be deleted" in refused.json()["message"]
    body = {"namespace": name, "description": "Tempest", "visibility": "private",
            "display_name": name, "protected": False}  # fmt: skip
    updated = http.put(f"{NS}/{name}", json=body).json()
    assert updated["visibility"] == "private" and updated["protected"] is False
    assert http.delete(f"{NS}/{name}").status_code == 204
    assert http.get(f"{NS}/{name}").status_code == 404


def test_namespace_errors(http: httpx.Client) -> None:
    made = make_namespace(http)
    again = http.post(NS, json={"namespace": made["namespace"]})
    assert again.status_code == 409 and "already exists" in again.json()["message"]
    missing = unique("missing")
    assert http.get(f"{NS}/{missing}").status_code == 404
    assert http.put(f"{NS}/{missing}", json={"namespace": missing}).status_code == 404
    assert http.delete(f"{NS}/{missing}").status_code == 404
    assert http.post(NS, json={"namespace": unique(), "self": "/x"}).status_code == 403
    assert http.post(NS, json={"namespace": unique(), "visibility": "shared"}).status_code == 400
    assert http.post(NS, json={"display_name": "no name"}).status_code == 400
    assert (
        http.post(NS, content=b"", headers={"Content-Type": "application/json"}).status_code == 400
    )
    other = make_namespace(http)
    clash = http.put(f"{NS}/{other['namespace']}", json={"namespace": made["namespace"]})
    assert clash.status_code == 409


def test_update_resets_left_out_fields_and_renames(http: httpx.Client) -> None:
    made = make_namespace(http, display_name="shown", visibility="public")
    new = unique("renamed")
    updated = http.put(f"{NS}/{made['namespace']}", json={"namespace": new}).json()
    assert updated["namespace"] == new and updated["visibility"] == "private"
    assert "display_name" not in updated and "description" not in updated
    assert updated["created_at"] == made["created_at"]
    assert http.get(f"{NS}/{made['namespace']}").status_code == 404


def test_namespace_list_filters_and_pages(http: httpx.Client) -> None:
    kind = unique("Test::Type")
    names = [make_namespace(http, resource_type_associations=[{"name": kind}])["namespace"]
             for _ in range(3)]  # fmt: skip
    private = make_namespace(
        http, visibility="private", resource_type_associations=[{"name": kind}]
    )
    every = http.get(NS, params={"resource_types": kind, "limit": 10}).json()
    assert {ns["namespace"] for ns in every["namespaces"]} == {*names, private["namespace"]}
    assert every["first"] == f"{NS}?resource_types={kind.replace(':', '%3A')}&limit=10"
    assert every["schema"] == "/v2/schemas/metadefs/namespaces" and "next" not in every
    params = {"resource_types": kind, "visibility": "public", "sort_key": "namespace",
              "sort_dir": "asc", "limit": 2}  # fmt: skip
    page = http.get(NS, params=params).json()
    assert [ns["namespace"] for ns in page["namespaces"]] == sorted(names)[:2]
    rest = http.get(page["next"]).json()
    assert [ns["namespace"] for ns in rest["namespaces"]] == sorted(names)[2:]
    for bad in ({"visibility": "shared"}, {"sort_dir": "up"}, {"limit": "x"}, {"limit": -1},
                {"sort_key": "nope"}):  # fmt: skip
        assert http.get(NS, params=bad).status_code == 400, bad
    assert http.get(NS, params={"marker": unique("missing")}).status_code == 404


# --- objects ----------------------------------------------------------------------------------
def test_objects(http: httpx.Client) -> None:
    ns = make_namespace(http)["namespace"]
    objects = f"{NS}/{ns}/objects"
    body = {"name": "CPU Limits", "description": "limits", "required": ["quota:cpu_period"],
            "properties": {"quota:cpu_period": {"title": "Period", "type": "integer",
                                                "minimum": 1000}}}  # fmt: skip
    made = http.post(objects, json=body)
    assert made.status_code == 201, made.text
    doc = made.json()
    assert doc["self"] == f"{NS}/{ns}/objects/CPU Limits"
    assert doc["properties"]["quota:cpu_period"]["minimum"] == 1000
    assert http.post(objects, json=body).status_code == 409
    assert http.get(f"{objects}/CPU Limits").json()["name"] == "CPU Limits"
    listed = http.get(objects).json()
    assert [o["name"] for o in listed["objects"]] == ["CPU Limits"]
    assert listed["schema"] == "v2/schemas/metadefs/objects"
    renamed = http.put(f"{objects}/CPU Limits", json={"name": "update-object"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "update-object"
    assert "properties" not in renamed.json() or renamed.json()["properties"] == {}
    assert http.get(f"{objects}/CPU Limits").status_code == 404
    bad_prop = {"name": "o", "properties": {"p": {"title": "P", "type": "string", "x": 1}}}
    assert http.post(objects, json=bad_prop).status_code == 400
    assert http.delete(f"{objects}/update-object").status_code == 204
    assert http.delete(f"{objects}/update-object").status_code == 404
    assert http.get(objects).json()["objects"] == []
    assert http.get(f"{NS}/{unique('missing')}/objects").status_code == 404


def test_a_protected_namespace_keeps_its_definitions(http: httpx.Client) -> None:
    ns = make_namespace(http, protected=True, objects=[{"name": "o"}], tags=[{"name": "t"}],
                        properties={"p": {"title": "P", "type": "string"}},
                        resource_type_associations=[{"name": "OS::Glance::Image"}])  # fmt: skip
    base = f"{NS}/{ns['namespace']}"
    for path in ("objects/o", "properties/p", "tags/t", "resource_types/OS::Glance::Image",
                 "objects", "properties", "tags", ""):  # fmt: skip
        response = http.delete(f"{base}/{path}".rstrip("/"))
        assert response.status_code == 403, path
    assert http.delete(f"{base}/objects/missing").status_code == 404
    shown = http.get(base).json()
    assert [t["name"] for t in shown["tags"]] == ["t"] and list(shown["properties"]) == ["p"]
    assert [o["name"] for o in shown["objects"]] == ["o"]


# --- properties -------------------------------------------------------------------------------
def test_properties_as_tempest_runs_them(http: httpx.Client) -> None:
    resource = http.get("/v2/metadefs/resource_types").json()["resource_types"][0]["name"]
    enum = ["xen", "qemu", "kvm", "lxc", "uml", "vmware", "hyperv"]
    ns = make_namespace(http)["namespace"]
    assoc = http.post(f"{NS}/{ns}/resource_types", json={"name": resource})
    assert assoc.status_code == 201
    properties = f"{NS}/{ns}/properties"
    body = {"title": "property-1", "name": resource, "type": "string", "enum": enum}
    made = http.post(properties, json=body)
    assert made.status_code == 201 and made.json()["title"] == "property-1"
    assert http.post(properties, json=body).status_code == 409
    assert http.get(f"{properties}/{resource}").json()["name"] == resource
    body["title"] = "update-property"
    updated = http.put(f"{properties}/{resource}", json=body)
    assert updated.status_code == 200 and updated.json()["title"] == "update-property"
    listed = http.get(properties).json()["properties"]
    assert listed == {resource: {"enum": enum, "title": "update-property", "type": "string"}}
    assert http.delete(f"{properties}/{resource}").status_code == 204
    assert http.get(properties).json() == {"properties": {}}
    assert http.post(properties, json={"name": "p", "type": "string"}).status_code == 400
    assert (
        http.post(properties, json={"name": "p", "title": "P", "type": "text"}).status_code == 400
    )


def test_property_shown_with_a_resource_types_prefix(http: httpx.Client) -> None:
    ns = make_namespace(
        http,
        properties={"cpu_cores": {"title": "Cores", "type": "integer"}},
        resource_type_associations=[{"name": "OS::Nova::Flavor", "prefix": "hw:"}],
    )
    base = f"{NS}/{ns['namespace']}/properties"
    shown = http.get(f"{base}/hw:cpu_cores", params={"resource_type": "OS::Nova::Flavor"})
    assert shown.status_code == 200 and shown.json()["name"] == "cpu_cores"
    unprefixed = http.get(f"{base}/cpu_cores", params={"resource_type": "OS::Nova::Flavor"})
    assert unprefixed.status_code == 404
    assert (
        http.get(f"{base}/hw:cpu_cores", params={"resource_type": "OS::Glance::Image"}).status_code
        == 404
    )


# --- tags -------------------------------------------------------------------------------------
def test_tags_as_tempest_runs_them(http: httpx.Client) -> None:
    ns = make_namespace(http)["namespace"]
    tags = f"{NS}/{ns}/tags"
    names = ["sample-tag1", "sample-tag2", "sample-tag3"]
    made = http.post(tags, json={"tags": [{"name": n} for n in names]})
    assert made.status_code == 201 and made.json() == {"tags": [{"name": n} for n in names]}
    assert sorted(t["name"] for t in http.get(tags).json()["tags"]) == names
    one = http.post(f"{tags}/tag_name")  # no body
    assert one.status_code == 201 and one.json()["name"] == "tag_name"
    assert set(one.json()) == {"name", "created_at", "updated_at"}
    assert http.post(f"{tags}/tag_name").status_code == 409
    assert http.get(f"{tags}/tag_name").json()["name"] == "tag_name"
    renamed = http.put(f"{tags}/tag_name", json={"name": "update-tag"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "update-tag"
    assert http.put(f"{tags}/update-tag", json={"name": "sample-tag1"}).status_code == 409
    assert http.delete(f"{tags}/update-tag").status_code == 204
    assert http.get(f"{tags}/update-tag").status_code == 404
    assert http.delete(tags).status_code == 204
    assert http.get(tags).json() == {"tags": []}


def test_bulk_tags_replace_or_append(http: httpx.Client) -> None:
    ns = make_namespace(http)["namespace"]
    tags = f"{NS}/{ns}/tags"
    http.post(tags, json={"tags": [{"name": "a"}, {"name": "b"}]})
    http.post(tags, json={"tags": [{"name": "c"}]})
    assert [t["name"] for t in http.get(tags).json()["tags"]] == ["c"]
    appended = http.post(
        tags, json={"tags": [{"name": "d"}]}, headers={"X-Openstack-Append": "True"}
    )
    assert appended.status_code == 201 and appended.json() == {"tags": [{"name": "d"}]}
    assert sorted(t["name"] for t in http.get(tags).json()["tags"]) == ["c", "d"]
    clash = http.post(tags, json={"tags": [{"name": "d"}]}, headers={"X-Openstack-Append": "yes"})
    assert clash.status_code == 409
    twice = http.post(tags, json={"tags": [{"name": "e"}, {"name": "e"}]})
    assert twice.status_code == 409
    assert sorted(t["name"] for t in http.get(tags).json()["tags"]) == ["c", "d"]  # untouched
    assert http.post(tags, json={"tags": [{"nom": "x"}]}).status_code == 400
    assert http.post(tags, json={"tags": [{"name": "x"}], "more": 1}).status_code == 400
    assert http.post(f"{tags}/{'x' * 256}").status_code == 400
    assert http.post(f"{NS}/{unique('missing')}/tags", json={"tags": []}).status_code == 404
    page = http.get(tags, params={"sort_key": "name", "sort_dir": "asc", "limit": 1}).json()
    assert page == {"tags": [{"name": "c"}]}
    after = http.get(tags, params={"sort_key": "name", "sort_dir": "asc", "marker": "c"}).json()
    assert after == {"tags": [{"name": "d"}]}


# --- resource types ---------------------------------------------------------------------------
def test_resource_type_associations(http: httpx.Client) -> None:
    ns = make_namespace(http)["namespace"]
    assocs = f"{NS}/{ns}/resource_types"
    made = http.post(assocs, json={"name": "OS::Glance::Image", "prefix": "hw_"})
    assert made.status_code == 201
    assert made.json()["name"] == "OS::Glance::Image" and made.json()["prefix"] == "hw_"
    assert http.post(assocs, json={"name": "OS::Glance::Image"}).status_code == 409
    listed = http.get(assocs).json()["resource_type_associations"]
    assert [a["name"] for a in listed] == ["OS::Glance::Image"]
    assert http.delete(f"{assocs}/OS::Glance::Image").status_code == 204
    assert http.get(assocs).json() == {"resource_type_associations": []}
    assert http.delete(f"{assocs}/OS::Glance::Image").status_code == 404
    new_type = unique("Test::New")
    assert http.post(assocs, json={"name": new_type}).status_code == 201
    types = [t["name"] for t in http.get("/v2/metadefs/resource_types").json()["resource_types"]]
    assert new_type in types  # as Glance: an association with an unknown type makes it
    assert http.post(assocs, json={"prefix": "x"}).status_code == 400
    assert http.post(assocs, json={"name": "t", "created_at": "now"}).status_code == 403
    assert (
        http.post(f"{NS}/{unique('missing')}/resource_types", json={"name": "t"}).status_code == 404
    )
    assert http.delete(f"{NS}/{ns}").status_code == 204  # takes its associations along


# --- schemas ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "title"),
    [("namespace", "namespace"), ("namespaces", "namespaces"), ("object", "object"),
     ("objects", "objects"), ("property", "property"), ("properties", "properties"),
     ("tag", "tag"), ("tags", "tags"), ("resource_type", "resource_type_association"),
     ("resource_types", "resource_type_associations")],
)  # fmt: skip
def test_schemas(http: httpx.Client, name: str, title: str) -> None:
    doc = http.get(f"/v2/schemas/metadefs/{name}").json()
    assert doc["name"] == title
    jsonschema.Draft4Validator.check_schema(doc)
    if name in ("namespaces", "objects", "properties", "tags", "resource_types"):
        assert {"first", "next", "schema"} <= set(doc["properties"])
    assert http.get("/v2/schemas/metadefs/nope").status_code == 404


def test_a_namespace_validates_against_its_served_schema(http: httpx.Client) -> None:
    made = make_namespace(http, properties={"p": {"title": "P", "type": "string"}},
                          objects=[{"name": "o"}], tags=[{"name": "t"}])  # fmt: skip
    schema = http.get("/v2/schemas/metadefs/namespace").json()
    shown = http.get(f"{NS}/{made['namespace']}").json()
    jsonschema.Draft4Validator(schema).validate(shown)
    listing = http.get("/v2/schemas/metadefs/namespaces").json()
    jsonschema.Draft4Validator(listing).validate(http.get(NS).json())


# --- who sees what (the service, with callers other than noauth's admin) ----------------------
def _reader(project: str) -> Context:
    return Context(user_id="u", project_id=project, roles=frozenset({"reader", "member"}))


# ferry's Policy passes oslo.policy an argument its newer releases deprecate
@pytest.mark.filterwarnings("ignore:fallback_to_json_file is deprecated:DeprecationWarning")
def test_private_namespaces_are_invisible_to_other_projects(tmp_path: Path) -> None:
    with Catalog(f"sqlite:///{tmp_path / 'c.db'}") as catalog:
        catalog.migrate()
        svc = MetadefService(Metadefs(catalog), Policy())
        admin = Context.admin("admin-project")
        svc.create_namespace(admin, {"namespace": "mine", "owner": "p1", "visibility": "private"})
        svc.create_namespace(admin, {"namespace": "open", "owner": "p1", "visibility": "public"})
        owner, stranger = _reader("p1"), _reader("p2")
        assert svc.get_namespace(owner, "mine")[0].namespace == "mine"
        with pytest.raises(NotFound):
            svc.get_namespace(stranger, "mine")
        with pytest.raises(NotFound):  # not 403: the namespace is not there for them
            svc.delete_namespace(stranger, "mine")
        with pytest.raises(NotFound):
            svc.definitions(stranger, OBJECTS, "mine")
        with pytest.raises(Forbidden):  # they see it, but only an admin changes it
            svc.delete_namespace(stranger, "open")
        with pytest.raises(Forbidden):
            svc.add(owner, OBJECTS, "mine", {"name": "o"})
        seen = {ns.namespace for ns in svc.list_namespaces(stranger, NamespaceQuery(None))}
        assert "open" in seen and "mine" not in seen
        seen = {ns.namespace for ns in svc.list_namespaces(owner, NamespaceQuery(None))}
        assert {"open", "mine"} <= seen
