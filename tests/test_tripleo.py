"""Importing TripleO DCN environment files, and writing the Ceph files TripleO would."""

from __future__ import annotations

import configparser
import copy
import re
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferry.block.auth import generate_key, parse_keyring
from ferry.config import Config, parse
from ferry.errors import InvalidRequest
from ferry.tripleo import Imported, ceph_files, import_tripleo

# The guide's environment files, copied from shared/reference/tripleo (see its README.md).
DATA = Path(__file__).resolve().parent / "data" / "tripleo"
CATALOG = "sqlite:////var/lib/ferry/catalog.db"
CAPS = {
    "mgr": "allow *",
    "mon": "profile rbd",
    "osd": "profile rbd pool=vms, profile rbd pool=volumes, profile rbd pool=images",
}
# cluster -> (fsid, monitors, client.external's key), as the guide gives them
GUIDE = {
    "central": (
        "3161a3b4-e5ff-42a0-9f53-860403b29a33",
        ("172.16.11.84", "172.16.11.87", "172.16.11.92"),
        "AQD29WteAAAAABAAphgOjFD7nyjdYe8Lz0mQ5Q==",
    ),
    "dcn0": (
        "539e2b96-316e-4c23-b7df-035a3037ddd1",
        ("172.16.11.61", "172.16.11.64", "172.16.11.66"),
        "AQBO/mteAAAAABAAc4mVMTpq7OFtrPlRFqN+FQ==",
    ),
    "dcn1": (
        "7504a91e-5a0f-4408-bb55-33c3ee2c67e9",
        ("172.16.11.182", "172.16.11.185", "172.16.11.187"),
        "AQACCGxeAAAAABAAHocX/cnygrVnLBrKiZHJfw==",
    ),
}


def guide_stacks(root: Path = DATA) -> dict[str, list[Path]]:
    return {
        "central": [root / "control-plane"],
        "dcn0": [root / "dcn0", root / "central_ceph_external.yaml"],
    }


@pytest.fixture(scope="module")
def imported() -> Imported:
    return import_tripleo(guide_stacks(), catalog=CATALOG)


@pytest.fixture
def config(imported: Imported) -> Config:
    return parse(copy.deepcopy(imported.raw))


def env(path: Path, params: object) -> Path:
    """Write a TripleO environment file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"parameter_defaults": params}))
    return path


def stores(config: Config, site: str) -> list[tuple[str, bool, str, str | None, str]]:
    """Each store as (id, default, description, cluster, client), resolved by the topology."""
    return [
        (r.config.id, r.config.default, r.config.description, r.cluster_name, r.client)
        for r in config.stores(site)
    ]


def test_the_guides_stores_are_each_sites_stores(config: Config) -> None:
    assert config.catalog == CATALOG
    assert stores(config, "central") == [
        ("default_backend", True, "central rbd glance store", "central", "admin"),
        ("dcn0", False, "dcn0 rbd glance store", "dcn0", "external"),
        ("dcn1", False, "dcn1 rbd glance store", "dcn1", "external"),
    ]
    assert stores(config, "dcn0") == [
        ("dcn0", True, "dcn0 rbd glance store", "dcn0", "admin"),
        ("central", False, "central rbd glance store", "central", "external"),
    ]


def test_the_guides_sites_keep_their_role_az_and_conversion(config: Config) -> None:
    central, dcn0 = config.sites["central"], config.sites["dcn0"]
    assert (central.role, central.az, central.listen) == ("central", "central", "127.0.0.1:9292")
    assert (dcn0.role, dcn0.az, dcn0.listen) == ("edge", "dcn0", "127.0.0.1:9293")
    assert central.imports.convert and dcn0.imports.convert


def test_the_guides_clusters_and_clients_keep_their_fsids_mons_and_keys(config: Config) -> None:
    assert set(config.clusters) == {"central", "dcn0", "dcn1"}
    assert set(config.clients) == {"external"}
    for name, (fsid, mons, key) in GUIDE.items():
        cluster = config.clusters[name]
        assert (cluster.ceph, cluster.fsid, cluster.mon_host) == (
            Path(f"/etc/ceph/{name}.conf"),
            fsid,
            mons,
        )
        assert config.clients["external"][name].key == key
        assert config.clients["external"][name].caps == CAPS


def test_the_guides_unmapped_parameters_are_noted(imported: Imported) -> None:
    notes = "\n".join(imported.notes)
    assert "cluster dcn1: no stack was given for it, so it has no site" in notes
    for count in ("ControllerCount", "ComputeHCICount", "DistributedComputeHCICount"):
        assert f"{count}: " in notes
    assert "ComputeHCICount: 3: ferry deploys no nodes" in notes
    for param in ("ManageNetworks", "CinderVolumeCluster", "dashboard_enabled", "API addresses"):
        assert param in notes
    assert "ferry offers glance-direct, glance-download anyway" in notes
    assert "dcn0: no GlanceBackendID; its default store is dcn0" in notes
    # mapped parameters are not noted; mode 0600 is what ceph-files writes
    for mapped in ("CephClusterName", "GlanceStoreDescription", "mode", "ceph_conf_overrides"):
        assert mapped not in notes


def test_ceph_files_give_each_site_the_other_clusters_it_uses(
    config: Config, tmp_path: Path
) -> None:
    written = ceph_files(config, tmp_path)
    names = {"central": ["dcn0", "dcn1"], "dcn0": ["central"]}
    assert sorted(written) == sorted(
        tmp_path / site / f"{cluster}{suffix}"
        for site, clusters in names.items()
        for cluster in clusters
        for suffix in (".conf", ".client.external.keyring")
    )
    for site, clusters in names.items():
        for cluster in clusters:
            fsid, mons, key = GUIDE[cluster]
            conf = configparser.ConfigParser()
            conf.read_string((tmp_path / site / f"{cluster}.conf").read_text())
            assert dict(conf["global"]) == {"fsid": fsid, "mon_host": ",".join(mons)}
            keyring_path = f"/etc/ceph/{cluster}.client.external.keyring"
            assert dict(conf["client"]) == {"keyring": keyring_path}
            keyring = tmp_path / site / f"{cluster}.client.external.keyring"
            assert stat.S_IMODE(keyring.stat().st_mode) == 0o600
            [client] = parse_keyring(keyring.read_text())
            assert (client.name, client.key, client.caps) == ("external", key, CAPS)
    central = (tmp_path / "dcn0" / "central.conf").read_text()
    assert "fsid = 3161a3b4-e5ff-42a0-9f53-860403b29a33" in central
    assert "mon_host = 172.16.11.84,172.16.11.87,172.16.11.92" in central


def test_ceph_files_rewrite_a_keyring_as_mode_0600(config: Config, tmp_path: Path) -> None:
    keyring = tmp_path / "dcn0" / "central.client.external.keyring"
    keyring.parent.mkdir()
    keyring.write_text("stale")
    keyring.chmod(0o644)
    ceph_files(config, tmp_path)
    assert stat.S_IMODE(keyring.stat().st_mode) == 0o600
    assert parse_keyring(keyring.read_text())[0].key == GUIDE["central"][2]


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        (("clusters", "dcn1", "fsid"), "site central, store dcn1: cluster dcn1 has no fsid"),
        (("clusters", "dcn0", "mon_host"), "store dcn0: cluster dcn0 has no mon_host"),
        (("clients", "external", "central"), "site dcn0, store central: .* client.external"),
    ],
)
def test_ceph_files_say_what_is_missing(
    imported: Imported, tmp_path: Path, remove: tuple[str, str, str], message: str
) -> None:
    raw = copy.deepcopy(imported.raw)
    section, name, key = remove
    del raw[section][name][key]
    with pytest.raises(InvalidRequest, match=message):
        ceph_files(parse(raw), tmp_path)


def test_the_stack_with_controllers_is_central_whatever_its_name(tmp_path: Path) -> None:
    edge = env(tmp_path / "edge.yaml", {"ControllerCount": 0, "GlanceBackend": "rbd"})
    hub = env(tmp_path / "hub.yaml", {"ControllerCount": 1, "GlanceBackend": "rbd"})
    stacks = {"edge1": [edge], "hub": [hub], "edge2": [edge]}
    raw = import_tripleo(stacks, catalog=CATALOG).raw
    assert raw["sites"]["hub"]["role"] == "central"
    assert raw["sites"]["hub"]["listen"] == "127.0.0.1:9292"
    assert raw["sites"]["hub"]["stores"][0]["id"] == "default_backend"
    assert raw["sites"]["edge1"]["role"] == "edge"
    assert raw["sites"]["edge1"]["listen"] == "127.0.0.1:9293"
    assert raw["sites"]["edge1"]["stores"][0]["id"] == "edge1"  # its cluster's name
    assert raw["sites"]["edge2"]["listen"] == "127.0.0.1:9294"  # edges in stack order


def test_glance_and_az_parameters_map_or_are_noted(tmp_path: Path) -> None:
    params = {
        "CephClusterName": "site7",
        "GlanceBackend": "rbd",
        "GlanceBackendID": "local",
        "GlanceImageImportPlugin": [],
        "GlanceEnabledImportMethods": ["web-download", "glance-download"],
        "GlanceShowMultipleLocations": False,
        "NovaComputeAvailabilityZone": "az-nova",
        "CinderStorageAvailabilityZone": "az-cinder",
        "NovaCrossAZAttach": True,
        "SomethingElse": 1,
    }
    imported = import_tripleo({"edge7": [env(tmp_path / "e.yaml", params)]}, catalog=CATALOG)
    site = parse(imported.raw).sites["edge7"]
    assert (site.az, site.cluster, site.imports.convert) == ("az-nova", "site7", False)
    assert site.compute.cross_az_attach is True
    assert [s.id for s in site.stores] == ["local"]
    notes = "\n".join(imported.notes)
    assert "az-cinder differs from Nova's AZ az-nova" in notes
    assert "ferry does not offer" not in notes  # glance-download is ferry's too
    assert "ferry offers glance-direct, copy-image anyway" in notes
    assert "GlanceShowMultipleLocations: ferry always shows them" in notes
    assert "NovaCrossAZAttach" not in notes
    assert "SomethingElse: 1: unknown to ferry" in notes
    assert "GlanceBackendID" not in notes


def test_image_conversion_plugin_turns_conversion_on(tmp_path: Path) -> None:
    for plugins, convert in (("image_conversion", True), (["no_op"], False)):
        params = {"GlanceImageImportPlugin": plugins, "ControllerCount": 1}
        raw = import_tripleo({"c": [env(tmp_path / "c.yaml", params)]}, catalog=CATALOG).raw
        assert raw["sites"]["c"]["imports"]["convert"] is convert


def test_a_later_file_overrides_an_earlier_one(tmp_path: Path) -> None:
    env(tmp_path / "stack" / "a.yaml", {"GlanceStoreDescription": "first"})
    env(tmp_path / "stack" / "b.yml", {"GlanceStoreDescription": "second"})
    (tmp_path / "stack" / "notes.txt").write_text("not an environment file")
    imported = import_tripleo({"s": [tmp_path / "stack"]}, catalog=CATALOG)
    assert imported.raw["sites"]["s"]["stores"][0]["description"] == "second"
    assert any("a.yaml: GlanceStoreDescription: overridden by" in n for n in imported.notes)


def test_a_non_rbd_multistore_store_is_noted_and_skipped(tmp_path: Path) -> None:
    stores = {
        "dcn0": {"GlanceBackend": "rbd", "CephClusterName": "dcn0", "CephClientUserName": "ext"},
        "archive": {"GlanceBackend": "swift", "GlanceStoreDescription": "tape"},
    }
    params = {"GlanceBackend": "rbd", "GlanceMultistoreConfig": stores, "ControllerCount": 3}
    imported = import_tripleo({"central": [env(tmp_path / "g.yaml", params)]}, catalog=CATALOG)
    config = parse(imported.raw)
    assert [(s.id, s.cluster, s.client) for s in config.sites["central"].stores] == [
        ("default_backend", None, None),
        ("dcn0", "dcn0", "ext"),
    ]
    assert any("GlanceMultistoreConfig.archive: GlanceBackend swift" in n for n in imported.notes)


def test_a_non_rbd_default_backend_leaves_no_default_store(tmp_path: Path) -> None:
    path = env(tmp_path / "g.yaml", {"GlanceBackend": "swift"})
    with pytest.raises(InvalidRequest, match=r"g\.yaml: GlanceBackend: swift: .*no default store"):
        import_tripleo({"central": [path]}, catalog=CATALOG)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("parameter_defaults: [unclosed", "is not valid YAML"),
        ("parameter_defaults: [a, b]", "expected a parameter_defaults mapping"),
        ("resource_registry: {}", "expected a parameter_defaults mapping"),
    ],
)
def test_a_file_that_is_not_an_environment_is_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(InvalidRequest, match=message) as caught:
        import_tripleo({"central": [path]}, catalog=CATALOG)
    assert str(path) in str(caught.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(f"cannot read {tmp_path / 'nope.yaml'}")):
        import_tripleo({"central": [tmp_path / "nope.yaml"]}, catalog=CATALOG)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"CephExternalMultiConfig": {"cluster": "x"}}, "CephExternalMultiConfig: expected a list"),
        ({"CephExtraKeys": [{"name": "client.x"}]}, r"CephExtraKeys\[0\]\.key: expected a string"),
        ({"CephExtraKeys": [{"name": "client.x", "key": "AQBm"}]}, r"\[0\]\.key: key must"),
        ({"GlanceMultistoreConfig": {"s": {"CephClusterName": 3}}}, r"\.s\.CephClusterName"),
        ({"NovaComputeAvailabilityZone": ["a"]}, "NovaComputeAvailabilityZone: expected a str"),
    ],
)
def test_a_parameter_of_the_wrong_shape_is_named(
    tmp_path: Path, params: dict[str, Any], message: str
) -> None:
    path = env(tmp_path / "bad.yaml", params)
    with pytest.raises(InvalidRequest, match=message) as caught:
        import_tripleo({"central": [path]}, catalog=CATALOG)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("change", ["key", "caps"])
def test_a_client_described_twice_differently_is_refused(tmp_path: Path, change: str) -> None:
    root = tmp_path / "tripleo"
    shutil.copytree(DATA, root)
    external = root / "central_ceph_external.yaml"
    doc = yaml.safe_load(external.read_text())
    entry = doc["parameter_defaults"]["CephExternalMultiConfig"][0]["keys"][0]
    if change == "key":
        entry["key"] = generate_key()
    else:
        entry["caps"]["osd"] = "profile rbd pool=images"
    external.write_text(yaml.safe_dump(doc))
    with pytest.raises(InvalidRequest, match=r"client\.external of central") as caught:
        import_tripleo(guide_stacks(root), catalog=CATALOG)
    assert str(root / "control-plane" / "ceph_keys.yaml") in str(caught.value)
    assert str(external) in str(caught.value)
