"""TripleO DCN environment files as a ferry topology, and the Ceph files TripleO would write.

``import_tripleo`` maps each stack to a site named after it:

- role: the stack with ``ControllerCount`` > 0 is central; if no stack has one, the stack
  named ``central`` is. Every other stack is an edge.
- cluster: ``CephClusterName`` (default: the stack's name), read from /etc/ceph/NAME.conf;
  its fsid and monitors come from any stack's ``CephExternalMultiConfig`` entry for it.
- default store: id ``GlanceBackendID``, else ``default_backend`` at central and the cluster's
  name at an edge (the id central's ``GlanceMultistoreConfig`` gives that cluster).
- other stores: ``GlanceMultistoreConfig``, keyed by store id. Only rbd stores are kept.
- clients: ``CephExtraKeys`` (in the stack's own cluster) and ``CephExternalMultiConfig`` keys.
- listen: 127.0.0.1:9292 for central, 9293, 9294, ... for the others in stack order.
- auth: Keystone's address, the glance user's password and each stack's region
  (``ferry.tripleo_auth``); noauth when the stacks do not carry them.

A stack's later files override its earlier ones parameter by parameter, as Heat merges
``parameter_defaults``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ferry import tripleo_auth
from ferry.block.auth import Client, client_name, validate_key, write_keyring
from ferry.config import Config, parse
from ferry.errors import InvalidRequest
from ferry.images.imports import METHODS  # every ferry site offers them
from ferry.permissions import make_dir
from ferry.topology import FIRST_PORT

T = TypeVar("T")
K = TypeVar("K")
_PLUGINS = ("GlanceImageImportPlugin", "GlanceImageImportPlugins")  # the guide's, THT's name
_HANDLED = {
    "CephClusterName", "CephClientUserName", "CephExtraKeys", "CephExternalMultiConfig",
    "GlanceBackend", "GlanceBackendID", "GlanceStoreDescription", "GlanceRbdPoolName",
    "GlanceMultistoreConfig", "GlanceEnabledImportMethods", "GlanceShowMultipleLocations",
    "NovaComputeAvailabilityZone", "CinderStorageAvailabilityZone", "NovaCrossAZAttach",
    *_PLUGINS, *tripleo_auth.PARAMS,
}  # fmt: skip
_WHY = {
    "ManageNetworks": "ferry manages no networks",
    "CinderVolumeCluster": "a site's volumes are served by its own API; there is no cluster",
    "dashboard_enabled": "ferry runs no Ceph dashboard",
    "ceph_conf_overrides": "ceph-files writes only the client keyring path",
    **tripleo_auth.WHY,
}
_EXTERNAL_KEYS = ("cluster", "fsid", "external_cluster_mon_ips", "keys")
_STORE_KEYS = ("GlanceBackend", "GlanceStoreDescription", "CephClusterName",
               "CephClientUserName", "GlanceRbdPoolName")  # fmt: skip


@dataclass(frozen=True)
class Imported:
    """A topology for ``ferry.config.parse``, and what could not be mapped, one line each."""

    raw: dict[str, Any]
    notes: list[str]


@dataclass
class _Stack:
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, Path] = field(default_factory=dict)  # the file each parameter came from

    def at(self, param: str) -> str:
        return f"{self.origin[param]}: {param}"

    def get(self, param: str, kind: type[T]) -> T | None:
        """The parameter, checked to be a ``kind``; None when absent."""
        return _shape(self.params[param], kind, self.at(param)) if param in self.params else None

    @property
    def cluster(self) -> str:
        return self.get("CephClusterName", str) or self.name


def import_tripleo(stacks: dict[str, list[Path]], *, catalog: str) -> Imported:
    """Map TripleO stacks (name -> environment files or directories) to a ferry topology."""
    if not stacks:
        raise InvalidRequest("no TripleO stack given")
    importer = _Importer()
    raw = importer.topology([importer.load(name, paths) for name, paths in stacks.items()])
    parse({"catalog": catalog, **raw}, "the imported topology")
    return Imported({"catalog": catalog, **raw}, importer.notes)


class _Importer:
    def __init__(self) -> None:
        self.notes: list[str] = []
        # (client, cluster) -> key and caps; cluster -> fsid and monitors; each with its file
        self.clients: dict[tuple[str, str], tuple[dict[str, Any], Path]] = {}
        self.facts: dict[str, tuple[dict[str, Any], Path]] = {}

    def note(self, stack: _Stack, at: str, why: str) -> None:
        self.notes.append(f"{stack.name}: {at}: {why}")

    def load(self, name: str, paths: list[Path]) -> _Stack:
        stack = _Stack(name)
        for path in _files(name, paths):
            doc = _read(path)
            for key in doc:
                if key != "parameter_defaults":
                    self.note(stack, f"{path}: {key}", "ferry reads parameter_defaults only")
            for param, value in doc["parameter_defaults"].items():
                if param in stack.params and stack.params[param] != value:
                    self.note(stack, stack.at(param), f"overridden by {path}")
                stack.params[param], stack.origin[param] = value, path
        return stack

    def topology(self, stacks: list[_Stack]) -> dict[str, Any]:
        central = _central(stacks)
        for stack in stacks:
            self.ceph(stack)
        sites: dict[str, Any] = {}
        ports = iter(range(FIRST_PORT + 1, FIRST_PORT + 1 + len(stacks)))
        for stack in stacks:
            port = FIRST_PORT if stack.name == central else next(ports)
            sites[stack.name] = self.site(stack, stack.name == central, f"127.0.0.1:{port}")
            self.leftovers(stack)
        self.notes.append(
            "TripleO files carry no API addresses: sites listen on 127.0.0.1, central on "
            f"{FIRST_PORT} and the others from {FIRST_PORT + 1} on; set listen and public_url"
        )
        own = {stack.cluster: stack for stack in stacks}
        used = {s["cluster"] for site in sites.values() for s in site["stores"] if "cluster" in s}
        clusters: dict[str, Any] = {}
        for name in [*own, *sorted((self.facts.keys() | used) - own.keys())]:
            facts = self.facts[name][0] if name in self.facts else {}
            clusters[name] = {"ceph": f"/etc/ceph/{name}.conf", **facts}
            if name not in own:
                self.notes.append(f"cluster {name}: no stack was given for it, so it has no site")
            elif user := own[name].get("CephClientUserName", str):
                clusters[name]["client"] = client_name(user)
        clients: dict[str, Any] = {}
        for (client, cluster), (entry, _) in self.clients.items():
            clients.setdefault(client, {})[cluster] = entry
        auth, per_site = tripleo_auth.auth_sections(stacks, central, self.notes)
        for name, section in per_site.items():
            sites[name]["auth"] = section
        raw = {"clusters": clusters, "clients": clients, "sites": sites}
        return raw if auth is None else {"auth": auth, **raw}

    def ceph(self, stack: _Stack) -> None:
        """Record the clients and cluster facts of CephExtraKeys and CephExternalMultiConfig."""
        if "CephExtraKeys" in stack.params:
            at, origin = stack.at("CephExtraKeys"), stack.origin["CephExtraKeys"]
            self.keys(stack, stack.params["CephExtraKeys"], at, origin, stack.cluster)
        for i, entry in enumerate(stack.get("CephExternalMultiConfig", list) or []):
            at = f"{stack.at('CephExternalMultiConfig')}[{i}]"
            origin = stack.origin["CephExternalMultiConfig"]
            entry = _shape(entry, dict, at)
            cluster = _shape(entry.get("cluster"), str, f"{at}.cluster")
            facts: dict[str, Any] = {}
            if fsid := _opt(entry, "fsid", str, at):
                facts["fsid"] = fsid
            if "external_cluster_mon_ips" in entry:
                ips = entry["external_cluster_mon_ips"]
                facts["mon_host"] = _names(ips, f"{at}.external_cluster_mon_ips")
            _record(self.facts, cluster, facts, origin, f"cluster {cluster}")
            names = self.keys(stack, entry.get("keys", []), f"{at}.keys", origin, cluster)
            keyrings = [{"client": {"keyring": f"/etc/ceph/{cluster}.{n}.keyring"}} for n in names]
            for key, value in entry.items():
                if key in _EXTERNAL_KEYS or (key == "ceph_conf_overrides" and value in keyrings):
                    continue
                self.note(stack, f"{at}.{key}", _WHY.get(key, "unknown to ferry"))

    def keys(
        self, stack: _Stack, entries: object, at: str, origin: Path, cluster: str
    ) -> list[str]:
        """Record TripleO's key entries as clients of ``cluster``; return their entities."""
        entities = []
        for i, entry in enumerate(_shape(entries, list, at)):
            here = f"{at}[{i}]"
            entry = _shape(entry, dict, here)
            name = client_name(_shape(entry.get("name"), str, f"{here}.name"))
            key = _shape(entry.get("key"), str, f"{here}.key")
            try:
                validate_key(key)
            except InvalidRequest as exc:
                raise InvalidRequest(f"{here}.key: {exc}") from None
            caps = _shape(entry.get("caps", {}), dict, f"{here}.caps")
            for service, cap in caps.items():
                _shape(cap, str, f"{here}.caps.{service}")
            if str(entry.get("mode", "0600")) != "0600":
                self.note(stack, f"{here}.mode", "ceph-files always writes keyrings 0600")
            client = {"key": key, "caps": caps}
            _record(self.clients, (name, cluster), client, origin, f"client.{name} of {cluster}")
            entities.append(f"client.{name}")
        return entities

    def site(self, stack: _Stack, central: bool, listen: str) -> dict[str, Any]:
        nova = stack.get("NovaComputeAvailabilityZone", str)
        cinder = stack.get("CinderStorageAvailabilityZone", str)
        if nova and cinder and nova != cinder:
            at = stack.at("CinderStorageAvailabilityZone")
            self.note(stack, at, f"{cinder} differs from Nova's AZ {nova}, the site's az")
        self.methods(stack)
        cross = stack.get("NovaCrossAZAttach", bool)
        return {
            "role": "central" if central else "edge",
            "az": nova or cinder or stack.name,
            "listen": listen,
            "cluster": stack.cluster,
            "stores": [self.default_store(stack, central), *self.stores(stack)],
            "imports": {"convert": self.convert(stack)},
            "compute": {} if cross is None else {"cross_az_attach": cross},
        }

    def default_store(self, stack: _Stack, central: bool) -> dict[str, Any]:
        backend = stack.get("GlanceBackend", str)
        if backend is None:
            self.notes.append(
                f"{stack.name}: no GlanceBackend; taken as rbd, "
                "which TripleO's Ceph environments set"
            )
        elif backend != "rbd":
            raise InvalidRequest(
                f"{stack.at('GlanceBackend')}: {backend}: ferry serves rbd stores only, so "
                f"stack {stack.name} has no default store"
            )
        store_id = stack.get("GlanceBackendID", str)
        if store_id is None and not central:
            self.notes.append(
                f"{stack.name}: no GlanceBackendID; its default store is {stack.cluster}, its "
                "cluster's name (TripleO's would be default_backend, as at every site)"
            )
        store = {
            "id": store_id or ("default_backend" if central else stack.cluster),
            "description": stack.get("GlanceStoreDescription", str) or "",
            "default": True,
        }
        if pool := stack.get("GlanceRbdPoolName", str):
            store["pool"] = pool
        return store

    def stores(self, stack: _Stack) -> list[dict[str, Any]]:
        """The site's GlanceMultistoreConfig stores that ferry can serve."""
        stores = []
        for store_id, entry in (stack.get("GlanceMultistoreConfig", dict) or {}).items():
            at = f"{stack.at('GlanceMultistoreConfig')}.{store_id}"
            entry = _shape(entry, dict, at)
            backend = _opt(entry, "GlanceBackend", str, at) or "rbd"
            if backend != "rbd":
                self.note(stack, at, f"GlanceBackend {backend}: skipped, ferry serves rbd only")
                continue
            store = {
                "id": str(store_id),
                "description": _opt(entry, "GlanceStoreDescription", str, at) or "",
                "cluster": _opt(entry, "CephClusterName", str, at) or stack.cluster,
            }
            if user := _opt(entry, "CephClientUserName", str, at):
                store["client"] = client_name(user)
            if pool := _opt(entry, "GlanceRbdPoolName", str, at):
                store["pool"] = pool
            for key in entry:
                if key not in _STORE_KEYS:
                    self.note(stack, f"{at}.{key}", "unknown to ferry")
            stores.append(store)
        return stores

    def convert(self, stack: _Stack) -> bool:
        """Whether imports convert to raw: TripleO's image_conversion plugin."""
        param = next((p for p in _PLUGINS if p in stack.params), None)
        if param is None:
            return True  # TripleO turns image_conversion on when Nova and Glance use RBD
        plugins = _names(stack.params[param], stack.at(param))
        if other := [p for p in plugins if p not in ("image_conversion", "no_op")]:
            self.note(stack, stack.at(param), f"ferry has no {', '.join(other)} plugin")
        return "image_conversion" in plugins

    def methods(self, stack: _Stack) -> None:
        """Note the import methods and location display ferry does not do as TripleO says."""
        if "GlanceEnabledImportMethods" in stack.params:
            at = stack.at("GlanceEnabledImportMethods")
            methods = _names(stack.params["GlanceEnabledImportMethods"], at)
            if lacking := [m for m in methods if m not in METHODS]:
                self.note(stack, at, f"ferry does not offer {', '.join(lacking)}")
            if extra := [m for m in METHODS if m not in methods]:
                self.note(stack, at, f"ferry offers {', '.join(extra)} anyway")
        if stack.get("GlanceShowMultipleLocations", bool) is False:
            self.note(stack, stack.at("GlanceShowMultipleLocations"), "ferry always shows them")

    def leftovers(self, stack: _Stack) -> None:
        """Note every parameter no rule maps."""
        for param, value in stack.params.items():
            if param in _HANDLED:
                continue
            shown = json.dumps(value) if isinstance(value, str | int | float | bool) else "..."
            if param.endswith("Count"):
                why = "ferry deploys no nodes" + (
                    "; used only to find the central stack" if param == "ControllerCount" else ""
                )
            else:
                why = _WHY.get(param, "unknown to ferry")
            self.note(stack, f"{stack.at(param)}: {shown}", why)


def _record(
    table: dict[K, tuple[dict[str, Any], Path]], key: K, value: Any, origin: Path, what: str
) -> None:
    """Keep ``value`` under ``key``; two files giving it differently is an error."""
    seen, first = table.setdefault(key, (value, origin))
    if seen != value:
        raise InvalidRequest(f"{what} is described differently in {first} and {origin}")


def _central(stacks: list[_Stack]) -> str | None:
    """The stack with controllers; else the one named central, if any."""
    centrals = [s.name for s in stacks if (s.get("ControllerCount", int) or 0) > 0]
    if len(centrals) > 1:
        raise InvalidRequest(f"stacks {', '.join(centrals)} all have controllers; one may")
    if centrals:
        return centrals[0]
    return "central" if any(s.name == "central" for s in stacks) else None


def _files(stack: str, paths: list[Path]) -> list[Path]:
    """The environment files: each file given, and every *.yaml / *.yml of a directory."""
    if not paths:
        raise InvalidRequest(f"stack {stack}: no environment file given")
    files = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        if not found:
            raise InvalidRequest(f"stack {stack}: no *.yaml or *.yml file in {path}")
        files += found
    return files


def _read(path: Path) -> dict[str, Any]:
    """A TripleO environment file: a mapping with a ``parameter_defaults`` mapping."""
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("parameter_defaults"), dict):
        raise InvalidRequest(f"{path}: expected a parameter_defaults mapping")
    return doc


_KINDS: dict[type[Any], str] = {dict: "mapping", list: "list", str: "string", int: "number"}


def _shape(value: object, kind: type[T], at: str) -> T:
    """``value`` if it is a ``kind``, else InvalidRequest naming where it was found."""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        got = "missing" if value is None else f"a {type(value).__name__}"
        raise InvalidRequest(f"{at}: expected a {_KINDS.get(kind, kind.__name__)}, got {got}")
    return value


def _opt(entry: dict[str, Any], key: str, kind: type[T], at: str) -> T | None:
    return _shape(entry[key], kind, f"{at}.{key}") if key in entry else None


def _names(value: object, at: str) -> list[str]:
    """TripleO's comma_delimited_list: "a, b" or a list of strings."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [_shape(v, str, f"{at}[{i}]") for i, v in enumerate(_shape(value, list, at))]


def ceph_files(config: Config, out: Path) -> list[Path]:
    """Write, per site, the conf and keyring of every other cluster its stores use.

    ``out/<site>/<cluster>.conf`` and ``out/<site>/<cluster>.client.<client>.keyring``: what
    TripleO's CephExternalMultiConfig puts in /etc/ceph on that site's nodes.
    """
    written: dict[Path, str] = {}
    for site_name in config.sites:
        for ref in config.stores(site_name):
            cluster, cluster_name = ref.cluster, ref.cluster_name
            if cluster is None or cluster_name in (None, config.own_cluster(site_name)):
                continue
            where = f"site {site_name}, store {ref.config.id}: cluster {ref.cluster_name}"
            if missing := [f for f in ("fsid", "mon_host") if not getattr(cluster, f)]:
                raise InvalidRequest(f"{where} has no {' or '.join(missing)} for its conf")
            entry = config.clients.get(ref.client, {}).get(cluster_name)
            if entry is None:
                raise InvalidRequest(
                    f"{where}: no key for client.{ref.client} "
                    f"(clients.{ref.client}.{ref.cluster_name} in the topology)"
                )
            name = cluster.name or cluster_name
            keyring = out / site_name / f"{name}.client.{ref.client}.keyring"
            conf = (
                f"[global]\nfsid = {cluster.fsid}\nmon_host = {','.join(cluster.mon_host)}\n"
                f"\n[client]\nkeyring = /etc/ceph/{keyring.name}\n"
            )
            path = out / site_name / f"{name}.conf"
            if written.setdefault(path, conf) != conf:
                raise InvalidRequest(f"{where}: reached as two clients; one conf names one")
            make_dir(path.parent, parents=True)
            path.write_text(conf)
            write_keyring(keyring, [Client(ref.client, entry.key, dict(entry.caps))])
            written[keyring] = ""
    return list(written)
