"""The topology file: validation that names the key, `ferry topology check`, provisioning."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferry import topology
from ferry.block.auth import generate_key
from ferry.block.embedded import EmbeddedCluster
from ferry.config import parse
from ferry.errors import Conflict, InvalidRequest


@pytest.fixture
def raw(tmp_path: Path) -> dict[str, Any]:
    return topology.example(tmp_path / "data")


def ferry(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}  # Rich wraps at 80 columns without a terminal
    return subprocess.run(
        [sys.executable, "-m", "ferry", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_the_example_is_the_guides_deployment(raw: dict[str, Any]) -> None:
    config = parse(raw)
    assert config.central == "central"
    assert [s.id for s in config.site("central").stores] == ["default_backend", "dcn0", "dcn1"]
    assert [s.id for s in config.site("dcn0").stores] == ["dcn0", "central"]
    assert [s.port for s in config.sites.values()] == [9292, 9293, 9294]
    ref = config.store("dcn0", config.site("dcn0").stores[1])
    assert (ref.cluster_name, ref.client) == ("central", "external")
    assert ref.key == raw["clients"]["external"]["central"]["key"]
    own = config.store("dcn0", config.site("dcn0").stores[0])
    assert (own.cluster_name, own.client, own.key) == ("dcn0", "admin", None)
    # the catalogue names a location by cluster, whichever site's name for the store
    central_ref = config.store("central", config.site("central").stores[0])
    assert ref.key_in_catalog == central_ref.key_in_catalog == "central"


def broken(raw: dict[str, Any], change: Any) -> str:
    raw = copy.deepcopy(raw)
    change(raw)
    with pytest.raises(InvalidRequest) as exc:
        parse(raw, "t.yaml")
    return str(exc.value)


def test_errors_name_the_key_and_say_what_is_wrong(raw: dict[str, Any]) -> None:
    def unknown_cluster(r: dict[str, Any]) -> None:
        r["sites"]["dcn0"]["stores"][1]["cluster"] = "dcn9"

    assert "sites.dcn0.stores.1.cluster: no cluster 'dcn9'" in broken(raw, unknown_cluster)

    def two_defaults(r: dict[str, Any]) -> None:
        r["sites"]["central"]["stores"][1]["default"] = True

    assert "sites.central: " in broken(raw, two_defaults)
    assert "exactly one store must be default" in broken(raw, two_defaults)

    def bad_key(r: dict[str, Any]) -> None:
        r["clients"]["external"]["dcn0"]["key"] = "not-a-key"

    assert "clients.external.dcn0.key" in broken(raw, bad_key)

    def bad_caps(r: dict[str, Any]) -> None:
        r["clients"]["external"]["dcn0"]["caps"]["osd"] = "allow everything"

    assert "cannot parse osd cap 'allow everything'" in broken(raw, bad_caps)

    def both_kinds(r: dict[str, Any]) -> None:
        r["clusters"]["dcn1"]["ceph"] = "/etc/ceph/dcn1.conf"

    assert "clusters.dcn1: give exactly one of" in broken(raw, both_kinds)

    def two_centrals(r: dict[str, Any]) -> None:
        r["sites"]["dcn1"]["role"] = "central"

    assert "at most one site may be central" in broken(raw, two_centrals)

    def same_pool_twice(r: dict[str, Any]) -> None:
        r["sites"]["dcn1"]["stores"].append({"id": "again", "cluster": "central"})

    assert "stores 'central' and 'again' are the same pool" in broken(raw, same_pool_twice)

    def bad_listen(r: dict[str, Any]) -> None:
        r["sites"]["dcn1"]["listen"] = "127.0.0.1"

    assert "sites.dcn1.listen: expected host:port" in broken(raw, bad_listen)

    def typo(r: dict[str, Any]) -> None:
        r["sites"]["dcn1"]["stores"][0]["descripton"] = "x"

    assert "sites.dcn1.stores.0.descripton: Extra inputs are not permitted" in broken(raw, typo)


def test_a_site_may_define_its_cluster_inline_and_paths_are_relative_to_the_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "t.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "catalog": "sqlite:///x.db",
                "sites": {
                    "edge": {
                        "cluster": {"embedded": "clusters/edge"},
                        "stores": [{"id": "edge", "default": True}],
                    }
                },
            }
        )
    )
    result = ferry("topology", "check", str(path))
    assert result.returncode == 0, result.stderr
    assert "1 sites, 1 clusters: valid" in result.stdout
    from ferry.config import load

    assert load(path).clusters["edge"].embedded == tmp_path / "etc" / "clusters" / "edge"


def test_check_prints_the_matrix_and_warnings(raw: dict[str, Any], tmp_path: Path) -> None:
    del raw["sites"]["dcn1"]["stores"][1]  # dcn1 can no longer reach central
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = ferry("topology", "check", str(path))
    assert result.returncode == 0, result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert "default_backend*" in rows["central"] and "dcn0 (external)" in rows["central"]
    assert "central (external)" in rows["dcn0"] and "dcn0*" in rows["dcn0"]
    assert "central" not in rows["dcn1"].split("│", 5)[5]
    assert "site dcn1: no store on central's cluster central" in result.stderr


def test_check_of_a_broken_file_exits_22_with_the_key(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("catalog: x\nsites:\n  a:\n    stores: [{id: s}]\n")
    result = ferry("topology", "check", str(path))
    assert result.returncode == 22
    assert "sites.a: exactly one store must be default, got none" in result.stderr
    path.write_text("sites: [\n")
    result = ferry("topology", "check", str(path))
    assert result.returncode == 22 and "is not valid YAML" in result.stderr


def test_provision_creates_clusters_and_clients_once_and_never_overwrites(
    raw: dict[str, Any],
) -> None:
    config = parse(raw)
    done = topology.provision(config)
    assert len([d for d in done if d.startswith("created embedded cluster")]) == 3
    assert len([d for d in done if d.startswith("added client.external")]) == 3
    assert topology.provision(config) == []  # a restart touches nothing
    key = raw["clients"]["external"]["dcn0"]["key"]
    dcn0 = parse(raw).clusters["dcn0"].embedded
    assert dcn0 is not None
    with EmbeddedCluster.connect(dcn0, client="external", key=key) as cluster:
        assert cluster.client == "external"

    changed = copy.deepcopy(raw)
    changed["clients"]["external"]["dcn0"]["key"] = generate_key()
    with pytest.raises(Conflict, match=r"client\.external in cluster dcn0 has another key"):
        topology.provision(parse(changed))
    with EmbeddedCluster.connect(dcn0, client="external", key=key):
        pass  # the old key still works: nothing was overwritten


def test_import_tripleo_then_check_then_ceph_files_from_the_command_line(tmp_path: Path) -> None:
    ref = Path(__file__).parent / "data" / "tripleo"
    out = tmp_path / "topology.yaml"
    result = ferry(
        "topology", "import-tripleo", "--stack", f"central={ref / 'control-plane'}",
        "--stack", f"dcn0={ref / 'dcn0'}", "--stack", f"dcn0={ref / 'central_ceph_external.yaml'}",
        "-o", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "not mapped: cluster dcn1: no stack was given for it" in result.stderr
    assert out.stat().st_mode & 0o777 == 0o600  # it holds keys (and may hold a password)
    assert ferry("topology", "check", str(out)).returncode == 0
    result = ferry("topology", "ceph-files", str(out), "-o", str(tmp_path / "etc"))
    assert result.returncode == 0, result.stderr
    conf = (tmp_path / "etc" / "dcn0" / "central.conf").read_text()
    assert "fsid = 3161a3b4-e5ff-42a0-9f53-860403b29a33" in conf
    bad = ferry("topology", "import-tripleo", "--stack", "central")
    assert bad.returncode == 22 and "--stack takes NAME=PATH" in bad.stderr
