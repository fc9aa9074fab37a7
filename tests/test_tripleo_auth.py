"""Importing TripleO's Keystone parameters (an ``overcloud export``'s endpoint map and
passwords, KeystoneRegion, CloudName) as ferry's ``auth`` sections."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from ferry.config import parse
from ferry.errors import InvalidRequest
from ferry.identity.catalog import SiteEntry, plan
from ferry.tripleo import import_tripleo
from tests.test_tripleo import CATALOG, env, guide_stacks

PASSWORD = "glance-pw-from-the-plan"  # noqa: S105 - a test value


def endpoint(protocol: str, host: str, port: int, suffix: str = "") -> dict[str, Any]:
    """An entry of TripleO's EndpointMap output, as the export writes it."""
    base = f"{protocol}://{host}:{port}"
    return {"protocol": protocol, "host": host, "host_nobrackets": host, "port": str(port),
            "uri": base + suffix, "uri_no_suffix": base}  # fmt: skip


def export(tmp_path: Path, **extra: Any) -> Path:
    """What ``openstack overcloud export`` gives the DCN stacks: central's endpoint map and
    passwords (only the ones this test needs)."""
    params = {
        "EndpointMapOverride": {
            "KeystoneInternal": endpoint("http", "172.17.1.10", 5000),
            "KeystonePublic": endpoint("https", "overcloud.example.com", 13000),
            "GlanceInternal": endpoint("http", "172.17.1.10", 9292),
        },
        "GlancePassword": PASSWORD,
        "AdminPassword": "not-for-ferry",
        **extra,
    }
    return env(tmp_path / "central-export.yaml", params)


def stacks(tmp_path: Path, central: dict[str, Any], dcn0: dict[str, Any]) -> dict[str, list[Path]]:
    """The guide's stacks, central and dcn0 each with one more file."""
    found = guide_stacks()
    found["central"].append(env(tmp_path / "central-auth.yaml", central))
    found["dcn0"].append(env(tmp_path / "dcn0-auth.yaml", dcn0))
    return found


def test_the_export_gives_every_site_keystone_and_each_edge_a_region(tmp_path: Path) -> None:
    given = stacks(tmp_path, {"GlancePassword": PASSWORD}, {})
    given["dcn0"].append(export(tmp_path, ServiceNetMap={"GlanceApiNetwork": "storage"}))
    imported = import_tripleo(given, catalog=CATALOG)
    assert imported.raw["auth"] == {
        "mode": "keystone",
        "keystone": {
            "auth_url": "http://172.17.1.10:5000/v3",
            "username": "glance",
            "password": PASSWORD,
            "project_name": "service",
            "region": "regionOne",
            "interface": "internal",
        },
    }
    dcn0 = imported.raw["sites"]["dcn0"]["auth"]
    assert dcn0 == copy.deepcopy(imported.raw["auth"]) | {
        "keystone": imported.raw["auth"]["keystone"] | {"region": "dcn0"}
    }
    assert "auth" not in imported.raw["sites"]["central"]
    notes = "\n".join(imported.notes)
    assert "central: no KeystoneRegion: regionOne, TripleO's default" in notes
    assert "dcn0: no KeystoneRegion: region dcn0, so that ferry keystone register" in notes
    assert "ServiceNetMap: ...: ferry has no service networks" in notes
    assert 'AdminPassword: "not-for-ferry": the topology keeps no admin password' in notes
    for mapped in ("EndpointMapOverride", "GlancePassword", "GlanceInternal"):
        assert mapped not in notes
    # and ferry keystone register can put each site in the catalogue as it stands
    config = parse(imported.raw)
    assert plan(config).sites == (
        SiteEntry("central", "regionOne", "http://127.0.0.1:9292"),
        SiteEntry("dcn0", "dcn0", "http://127.0.0.1:9293"),
    )


def test_stacks_that_differ_in_region_get_sections_of_their_own(tmp_path: Path) -> None:
    central = {"KeystoneRegion": "central-region", "CloudName": "overcloud.example.com",
               "GlancePassword": PASSWORD}  # fmt: skip
    dcn0 = {"KeystoneRegion": "edge-region", "GlancePassword": "another"}
    imported = import_tripleo(stacks(tmp_path, central, dcn0), catalog=CATALOG)
    keystone = imported.raw["auth"]["keystone"]
    assert (keystone["auth_url"], keystone["interface"]) == (
        "http://overcloud.example.com:5000/v3",
        "public",
    )
    assert (keystone["region"], keystone["password"]) == ("central-region", PASSWORD)
    assert imported.raw["sites"]["dcn0"]["auth"]["keystone"]["region"] == "edge-region"
    assert imported.raw["sites"]["dcn0"]["auth"]["keystone"]["password"] == PASSWORD
    notes = "\n".join(imported.notes)
    assert "CloudName: Keystone taken as http://overcloud.example.com:5000/v3" in notes
    assert "dcn0-auth.yaml: GlancePassword: differs from another stack's" in notes
    assert "KeystoneRegion" not in notes


def test_stacks_in_one_region_are_noted(tmp_path: Path) -> None:
    same = {"KeystoneRegion": "regionOne"}
    given = stacks(tmp_path, same, same)
    given["central"].append(export(tmp_path))
    imported = import_tripleo(given, catalog=CATALOG)
    assert "auth" not in imported.raw["sites"]["dcn0"]
    assert "stacks central, dcn0 share KeystoneRegion regionOne" in "\n".join(imported.notes)


def test_without_a_password_or_keystone_the_topology_stays_noauth(tmp_path: Path) -> None:
    guide = import_tripleo(guide_stacks(), catalog=CATALOG)
    assert "auth" not in guide.raw
    assert any(
        n.startswith("no GlancePassword and Keystone address in any stack") for n in guide.notes
    )
    only_password = import_tripleo(stacks(tmp_path, {"GlancePassword": "pw"}, {}), catalog=CATALOG)
    assert "auth" not in only_password.raw
    assert any(n.startswith("no Keystone address in any stack") for n in only_password.notes)


def test_an_unresolved_endpoint_map_falls_back_to_the_cloud_name(tmp_path: Path) -> None:
    central = {
        "EndpointMap": {"KeystoneInternal": {"protocol": "http", "host": "IP_ADDRESS",
                                             "port": "5000"}},
        "CloudNameInternal": "overcloud.internalapi.example.com",
        "GlancePassword": PASSWORD,
    }  # fmt: skip
    imported = import_tripleo(stacks(tmp_path, central, {}), catalog=CATALOG)
    keystone = imported.raw["auth"]["keystone"]
    assert (keystone["auth_url"], keystone["interface"]) == (
        "http://overcloud.internalapi.example.com:5000/v3",
        "internal",
    )
    assert any("EndpointMap.KeystoneInternal: unresolved" in n for n in imported.notes)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"KeystoneRegion": ["a"]}, "KeystoneRegion: expected a non-empty string"),
        ({"EndpointMapOverride": ["a"]}, "EndpointMapOverride: expected a mapping"),
        ({"EndpointMapOverride": {"KeystonePublic": {"uri": "keystone:5000"}}}, "of http"),
    ],
)
def test_an_auth_parameter_of_the_wrong_shape_is_named(
    tmp_path: Path, params: dict[str, Any], message: str
) -> None:
    path = env(tmp_path / "bad.yaml", {"GlancePassword": "pw", "CloudName": "c", **params})
    with pytest.raises(InvalidRequest, match=message) as caught:
        import_tripleo({"central": [path]}, catalog=CATALOG)
    assert str(path) in str(caught.value)
