"""Working with a whole topology: the built-in example, first-start provisioning, the matrix.

The built-in example is the guide's deployment on this machine: central, dcn0 and dcn1, each
with an embedded cluster and its own Image API; central's stores are ``default_backend``,
``dcn0`` and ``dcn1``; each edge has its own store and central's, reached as client.external.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from ferry.block.auth import generate_key
from ferry.block.embedded import EmbeddedCluster
from ferry.config import Config
from ferry.errors import Conflict, NotFound

# The DCN guide's client.external: read and write on the three RBD pools.
EXTERNAL_CAPS = {
    "mgr": "allow *",
    "mon": "profile rbd",
    "osd": "profile rbd pool=vms, profile rbd pool=volumes, profile rbd pool=images",
}
FIRST_PORT = 9292


def example(data: Path, *, edges: int = 2, ports: list[int] | None = None) -> dict[str, Any]:
    """The guide's topology on embedded clusters under ``data``, with fresh keys.

    The sites listen on 127.0.0.1, central on 9292 and the edges on the next ports, or on
    ``ports`` in that order.
    """
    names = ["central", *(f"dcn{i}" for i in range(edges))]
    ports = ports or list(range(FIRST_PORT, FIRST_PORT + len(names)))
    clusters = {name: {"embedded": str(data / "clusters" / name)} for name in names}
    clients = {"external": {n: {"key": generate_key(), "caps": EXTERNAL_CAPS} for n in names}}

    def store(cluster: str, store_id: str, *, default: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": store_id, "description": f"{cluster} rbd glance store"}
        if default:
            doc["default"] = True
        else:
            doc |= {"cluster": cluster, "client": "external"}
        return doc

    sites: dict[str, Any] = {}
    for port, name in zip(ports, names, strict=True):
        if name == "central":
            stores = [store(name, "default_backend", default=True)]
            stores += [store(edge, edge) for edge in names[1:]]
        else:
            stores = [store(name, name, default=True), store("central", "central")]
        sites[name] = {
            "role": "central" if name == "central" else "edge",
            "az": name,
            "listen": f"127.0.0.1:{port}",
            "stores": stores,
            # web-download from this machine is allowed, to try imports out
            "imports": {"allow_hosts": ["127.0.0.1"], "staging": str(data / "staging" / name)},
        }
    return {
        "catalog": f"sqlite:///{data / 'catalog.db'}",
        "clusters": clusters,
        "clients": clients,
        "sites": sites,
    }


def provision(config: Config) -> list[str]:
    """Create missing embedded clusters and their topology clients; say what was done.

    Existing clusters are only checked: a client whose key differs from the topology's is a
    Conflict, never overwritten. Ceph clusters are the operator's; nothing is done to them.
    """
    done = []
    for name, cluster in config.clusters.items():
        if cluster.embedded is None:
            continue
        root = cluster.embedded
        if not (root / "cluster.json").exists():
            EmbeddedCluster.init(root, cluster.name or name)
            done.append(f"created embedded cluster {name} in {root}")
        with EmbeddedCluster.connect(root, keyring=cluster.keyring) as admin:
            for client, per_cluster in config.clients.items():
                entry = per_cluster.get(name)
                if entry is None:
                    continue
                try:
                    known = admin.auth_get(client)
                except NotFound:
                    admin.auth_add(client, dict(entry.caps), entry.key)
                    done.append(f"added client.{client} to cluster {name}")
                    continue
                if known.key != entry.key or known.caps != dict(entry.caps):
                    raise Conflict(
                        f"client.{client} in cluster {name} has another key or caps than the "
                        f"topology gives; change one of them to match (ferry never overwrites)"
                    )
    return done


def matrix(config: Config) -> Table:
    """Sites by clusters: which store id each site gives each cluster, and as which client."""
    table = Table(title="sites by clusters (cell: the site's store id; * default)")
    for column in ("site", "role", "az", "api"):
        table.add_column(column)
    clusters = list(config.clusters)
    for cluster in clusters:
        table.add_column(cluster)
    for name, site in config.sites.items():
        cells = dict.fromkeys(clusters, "")
        for ref in config.stores(name):
            if ref.cluster_name is None:
                continue
            cell = ref.config.id + ("*" if ref.config.default else "")
            if ref.client != "admin":
                cell += f" ({ref.client})"
            cells[ref.cluster_name] = "\n".join(filter(None, [cells[ref.cluster_name], cell]))
        table.add_row(name, site.role, config.az(name), site.url, *cells.values())
    return table


def warnings(config: Config) -> list[str]:
    """What works but is probably not what the operator meant."""
    found = []
    central = config.central
    used = {ref.cluster_name for site in config.sites for ref in config.stores(site)}
    for name in config.clusters:
        if name not in used:
            found.append(f"cluster {name} is used by no store")
    for name, site in config.sites.items():
        own = config.own_cluster(name)
        refs = {ref.config.id: ref for ref in config.stores(name)}
        if refs[site.default_store.id].cluster_name != own:
            found.append(f"site {name}: its default store is not on its own cluster {own}")
        if central and name != central:
            central_cluster = config.own_cluster(central)
            if central_cluster not in {r.cluster_name for r in refs.values()}:
                found.append(
                    f"site {name}: no store on central's cluster {central_cluster}, so its "
                    f"images cannot be copied to central from here"
                )
    return found
