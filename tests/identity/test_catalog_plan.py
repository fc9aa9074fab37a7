"""What ``ferry keystone register`` reads from a topology (no Keystone needed): each site's
region and URL, the service users, and the topologies it refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ferry import topology
from ferry.config import parse
from ferry.errors import InvalidRequest, NotFound
from ferry.identity.catalog import IMAGE, VOLUME, ServiceUser, SiteEntry, plan


def section(region: str | None = None, **change: str) -> dict[str, Any]:
    keystone = {"auth_url": "http://127.0.0.1:5000/v3", "username": "glance", "password": "pw"}
    if region:
        keystone["region"] = region
    return {"mode": "keystone", "keystone": keystone | change}


def raw_topology(tmp_path: Path, edges: int = 2) -> dict[str, Any]:
    return topology.example(tmp_path, edges=edges)


def test_a_site_takes_its_own_region_else_the_deployments(tmp_path: Path) -> None:
    raw = raw_topology(tmp_path)
    raw["auth"] = section("central-region")
    raw["sites"]["dcn0"]["auth"] = section("dcn0-region")
    raw["sites"]["dcn1"]["auth"] = section()  # no region: the deployment's
    raw["sites"]["dcn1"]["public_url"] = "https://dcn1.example.com:13292/"
    with pytest.raises(InvalidRequest, match="central and dcn1 are both in region central-region"):
        plan(parse(raw))
    del raw["sites"]["dcn1"]
    wanted = plan(parse(raw))
    assert wanted.sites == (
        SiteEntry("central", "central-region", "http://127.0.0.1:9292"),
        SiteEntry("dcn0", "dcn0-region", "http://127.0.0.1:9293"),
    )
    assert wanted.users == (ServiceUser("glance", "pw", "service", "Default", "Default"),)
    assert wanted.services == (IMAGE, *VOLUME)
    assert [(s.type, s.name, s.path) for s in wanted.services] == [
        ("image", "glance", ""),
        ("volumev3", "cinderv3", "/v3"),
        ("block-storage", "cinder", "/v3"),
    ]
    assert wanted.notes == ()


def test_without_any_region_a_site_is_in_regionone_and_it_is_noted(tmp_path: Path) -> None:
    raw = raw_topology(tmp_path, edges=0)
    raw["auth"] = section()
    wanted = plan(parse(raw), volumes=False)
    assert wanted.sites == (SiteEntry("central", "RegionOne", "http://127.0.0.1:9292"),)
    assert wanted.services == (IMAGE,)
    assert wanted.notes == (
        "site central: no keystone.region here or for the deployment: RegionOne",
    )


def test_a_public_url_or_tls_is_the_endpoint(tmp_path: Path) -> None:
    raw = raw_topology(tmp_path, edges=1)
    raw["sites"]["central"]["auth"] = section("one")
    raw["sites"]["central"]["public_url"] = "https://glance.example.com:13292/"
    raw["sites"]["dcn0"]["auth"] = section("two")
    raw["sites"]["dcn0"]["tls"] = {"cert": str(tmp_path / "c.pem"), "key": str(tmp_path / "k.pem")}
    urls = [entry.url for entry in plan(parse(raw)).sites]
    assert urls == ["https://glance.example.com:13292", "https://127.0.0.1:9293"]


def test_noauth_sites_are_left_out_unless_named(tmp_path: Path) -> None:
    raw = raw_topology(tmp_path)
    raw["sites"]["dcn1"]["auth"] = section("dcn1")
    wanted = plan(parse(raw))
    assert [entry.site for entry in wanted.sites] == ["dcn1"]
    assert wanted.notes == (
        "site central: noauth, not registered",
        "site dcn0: noauth, not registered",
    )
    assert [e.site for e in plan(parse(raw), ["dcn1", "dcn1"]).sites] == ["dcn1"]
    with pytest.raises(InvalidRequest, match="site dcn0 runs noauth"):
        plan(parse(raw), ["dcn1", "dcn0"])
    with pytest.raises(InvalidRequest, match="no site 'dcn7'"):
        plan(parse(raw), ["dcn7"])
    del raw["sites"]["dcn1"]["auth"]
    with pytest.raises(InvalidRequest, match="no site of the topology uses Keystone"):
        plan(parse(raw))


def test_one_service_user_has_one_password(tmp_path: Path) -> None:
    raw = raw_topology(tmp_path, edges=1)
    raw["sites"]["central"]["auth"] = section("one")
    raw["sites"]["dcn0"]["auth"] = section("two", password="other")  # noqa: S106 - a test value
    with pytest.raises(InvalidRequest, match="service user glance has another password"):
        plan(parse(raw))
    raw["sites"]["dcn0"]["auth"] = section("two", username="glance-edge", password="other")  # noqa: S106
    users = plan(parse(raw)).users
    assert [(u.username, u.password) for u in users] == [("glance", "pw"), ("glance-edge", "other")]


def test_an_unknown_domain_is_not_made(tmp_path: Path) -> None:
    """Domains are the operator's: register refuses rather than guess (see KeystoneApi)."""
    from ferry.identity.keystone_api import KeystoneApi

    class Answers:
        def request(self, path: str, method: str, **kw: Any) -> Any:
            return type("Reply", (), {"status_code": 200, "content": b"x",
                                      "json": lambda self: {"domains": []}})()  # fmt: skip

    with pytest.raises(NotFound, match="Keystone has no domain 'Elsewhere'"):
        KeystoneApi(Answers()).domain_id("Elsewhere")  # type: ignore[arg-type]
