"""ferry's topology: parsed once from YAML into frozen objects, then passed in.

A deployment names its shared catalogue, its clusters, the clients each cluster knows, and its
sites. Each site serves the Image API; its stores are its own cluster's images pool (the
default store) and, usually, other sites' clusters::

    catalog: sqlite:////var/lib/ferry/catalog.db
    clusters:
      central: {embedded: /var/lib/ferry/central}
      dcn0: {ceph: /etc/ceph/dcn0.conf, fsid: 539e2b96-..., mon_host: [172.16.11.61]}
    clients:
      external:                      # client.external, one key per cluster
        dcn0: {key: AQBO/mte..., caps: {mon: profile rbd, osd: profile rbd pool=images}}
    sites:
      central:
        role: central
        listen: 127.0.0.1:9292
        cluster: central             # or inline: {embedded: DIR} / {ceph: CONF, ...}
        stores:
          - {id: default_backend, description: central rbd glance store, default: true}
          - {id: dcn0, description: dcn0 rbd glance store, cluster: dcn0, client: external}

A store's cluster defaults to its site's. Store ids are a site's own names: the same cluster
may be ``default_backend`` at central and ``central`` at an edge, as in TripleO. The catalogue
records a location by its cluster (see ``StoreRef.key_in_catalog``), so every site shows it by
its own name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from ferry.block.auth import OsdCaps, client_name, validate_key
from ferry.cacheconf import CacheConfig
from ferry.confbase import Frozen, relative_to_file
from ferry.errors import InvalidRequest
from ferry.identity.config import AuthConfig, TlsConfig

NOAUTH_PROJECT = "c0ffee00c0ffee00c0ffee00c0ffee00"
NAME = r"^[A-Za-z0-9_\-]+$"


class ClusterConfig(Frozen):
    """A storage cluster: an embedded directory, or a Ceph cluster reached through its conf."""

    embedded: Path | None = Field(None, description="The embedded cluster's directory.")
    ceph: Path | None = Field(None, description="The Ceph cluster's conf file.")
    name: str | None = Field(
        None, pattern=NAME, description="The cluster's own name ($cluster); default: its key."
    )
    fsid: str | None = Field(None, description="Ceph fsid, for 'ferry topology ceph-files'.")
    mon_host: tuple[str, ...] = Field((), description="Monitor addresses, for ceph-files.")
    client: str = Field("admin", description="Client the cluster's own site connects as.")
    keyring: Path | None = Field(None, description="That client's keyring (default: Ceph's).")

    @classmethod
    def from_target(cls, target: str) -> ClusterConfig:
        """The cluster ``ferry.block.connect`` would open for ``target``."""
        if target.startswith("ceph:"):
            return cls.model_validate({"ceph": target.removeprefix("ceph:")})
        return cls.model_validate({"embedded": target})

    @property
    def target(self) -> str:
        """What ``ferry.block.connect`` takes: ``ceph:CONF`` or a directory."""
        return f"ceph:{self.ceph}" if self.ceph else str(self.embedded)

    _paths = field_validator("embedded", "ceph", "keyring")(relative_to_file)

    @field_validator("mon_host", mode="before")
    @classmethod
    def _split_mons(cls, value: object) -> object:
        if isinstance(value, str):  # "a, b, c" as Ceph and TripleO write it
            return tuple(m.strip() for m in value.split(",") if m.strip())
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> ClusterConfig:
        if (self.embedded is None) == (self.ceph is None):
            raise ValueError("give exactly one of 'embedded: DIR' or 'ceph: CONF'")
        return self


class ClientConfig(Frozen):
    """One client's identity in one cluster: its cephx key and caps."""

    key: str
    caps: dict[str, str] = Field(default_factory=dict)

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        try:
            return validate_key(value)
        except InvalidRequest as exc:
            raise ValueError(str(exc)) from None

    @field_validator("caps")
    @classmethod
    def _caps(cls, value: dict[str, str]) -> dict[str, str]:
        try:
            OsdCaps.parse(value.get("osd", ""))
        except InvalidRequest as exc:
            raise ValueError(str(exc)) from None
        return value


class StoreConfig(Frozen):
    """A Glance store: where an image's data lives (``images/<id>@snap`` in a cluster)."""

    id: str = Field(pattern=NAME, description="Store id, as clients name it at this site.")
    description: str = Field("", description="Shown by 'glance stores-info'.")
    type: Literal["rbd", "http"] = Field(
        "rbd", description="rbd: a cluster's images pool; http: read-only, as Glance lists it."
    )
    cluster: str | None = Field(None, description="The cluster's name; default: the site's.")
    client: str | None = Field(
        None, description="Client (client.NAME) to connect as; default: the cluster's."
    )
    pool: str = Field("images", pattern=NAME, description="Pool holding the block images.")
    default: bool = Field(False, description="The store uploads go to when none is named.")

    @property
    def read_only(self) -> bool:
        return self.type == "http"


class ImportConfig(Frozen):
    """How a site's workers import: staging, conversion, web-download's guard, job leases."""

    staging: Path | None = Field(
        None,
        description="Directory for glance-direct's staged data and conversions "
        "(default: <tmp>/ferry-staging-<site>). Shared by the site's workers.",
    )
    convert: bool = Field(True, description="image_conversion: non-raw imports become raw.")
    allow_hosts: tuple[str, ...] = Field(
        (), description="Hosts web-download may fetch from although their address is internal."
    )
    max_size: int | None = Field(None, description="Largest web-download accepted, in bytes.")
    lease_seconds: float = Field(
        30.0, gt=0, description="A worker silent this long loses its job to another worker."
    )
    workers: int = Field(1, ge=0, description="Import workers this site's server runs.")
    manage_locations: bool = Field(
        False,
        description="Glance's show_multiple_locations for PATCH: clients may add locations "
        "(URLs of this site's stores only) and remove or re-label them by JSON patch, as "
        "Nova, Cinder and Tempest's location tests do. Off: such patches are refused.",
    )

    _paths = field_validator("staging")(relative_to_file)


class ComputeConfig(Frozen):
    """How a site makes volumes and instance disks (what Nova and Cinder are set to at DCN)."""

    cross_az_attach: bool = Field(
        False,
        description="Nova's cross_az_attach: with false (the DCN default) a boot-from-volume "
        "volume is made in the instance's zone; with true, in the default zone.",
    )
    missing_image: Literal["copy", "stream", "refuse"] = Field(
        "copy",
        description="An image not in the zone's store: copy it there once, then clone (copy); "
        "stream it into a full, uncached disk (stream, as Nova); or refuse (refuse, as Nova's "
        "never_download_image_if_on_rbd).",
    )
    max_clone_depth: int = Field(
        5, ge=1, description="rbd_max_clone_depth: a deeper clone is flattened at creation."
    )


class RecoveryConfig(Frozen):
    """How a site's server finds and finishes work that a dead process left unfinished."""

    interval_seconds: float = Field(
        60.0,
        gt=0,
        description="Seconds between reconcile passes (one also runs when the server starts).",
    )
    holder_lease_seconds: float = Field(
        30.0,
        gt=0,
        description="A server process whose heartbeat is silent this long is presumed dead and "
        "its unfinished work (uploads, creations, deletes) is finished or undone by another. "
        "A dead process on the same host is recognised at once, by its pid.",
    )
    remove_orphans: bool = Field(
        True,
        description="Remove block images in ferry's pools (images, volumes, vms, backups) that "
        "no catalogue record accounts for. Turn off if those pools are shared with another "
        "deployment: ferry's pools must be its own.",
    )


class LimitsConfig(Frozen):
    """What one request, one image and one connection may take (Glance's and Cinder's names)."""

    image_size_cap: int = Field(
        1 << 40,
        ge=0,
        description="Glance's image_size_cap: the largest image data accepted, in bytes "
        "(default 1 TiB). An upload declaring more, or sending more, is refused with 413.",
    )
    image_property_quota: int = Field(
        128,
        ge=0,
        description="Glance's image_property_quota: extra properties one image may have.",
    )
    image_tag_quota: int = Field(
        128, ge=0, description="Glance's image_tag_quota: tags one image may have."
    )
    image_member_quota: int = Field(
        128,
        ge=-1,
        description="Glance's image_member_quota: projects one image may be shared with "
        "(-1: no limit). Adding one more is refused with 413.",
    )
    max_request_body: int = Field(
        1 << 20,
        ge=1024,
        description="Largest JSON request body, in bytes, counted while it is read (image "
        "data uploads are bounded by image_size_cap instead). Larger bodies get 413.",
    )
    max_json_depth: int = Field(
        32, ge=2, description="Deepest nesting of arrays and objects a JSON body may have."
    )
    max_volume_size_gib: int = Field(
        16384,
        ge=1,
        description="Cinder's per_volume_size_limit: the largest volume (or boot volume) "
        "created, in GiB (default 16 TiB). Larger requests get 413.",
    )
    header_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a client has to send a request's whole header once it connects "
        "or starts the request; then the connection gets 408 and is closed.",
    )
    body_timeout: float = Field(
        60.0,
        gt=0,
        description="Seconds a request body (an upload) may pause while the server waits for "
        "it; then the connection is closed and the upload undone.",
    )
    keep_alive_timeout: int = Field(
        5, ge=1, description="Seconds an idle keep-alive connection is held (uvicorn's)."
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="Open connections per site; one more is answered 503 and closed at once. "
        "Keep it well below the process's open-file limit (ulimit -n), which every site of "
        "'ferry up' shares.",
    )
    backlog: int = Field(
        128, ge=1, description="Connections the kernel queues before the site accepts them."
    )
    log_repeat_seconds: float = Field(
        10.0,
        ge=0,
        description="An identical log line repeated within this many seconds is counted, not "
        "written (a flood of failing connections cannot fill the disk); 0 writes them all.",
    )


class SiteConfig(Frozen):
    """One site: its role, AZ, Image API address, cluster, stores and how it imports."""

    role: Literal["central", "edge"] = Field("edge", description="central or edge.")
    az: str | None = Field(None, description="Availability zone (default: the site's name).")
    listen: str = Field("127.0.0.1:9292", description="host:port the site's API listens on.")
    public_url: str | None = Field(
        None, description="URL clients use for this site (default: http://<listen>)."
    )
    cluster: str | None = Field(None, description="The site's own cluster (default: its name).")
    stores: tuple[StoreConfig, ...]
    imports: ImportConfig = Field(default_factory=lambda: ImportConfig.model_validate({}))
    compute: ComputeConfig = Field(default_factory=lambda: ComputeConfig.model_validate({}))
    limits: LimitsConfig = Field(default_factory=lambda: LimitsConfig.model_validate({}))
    recovery: RecoveryConfig = Field(default_factory=lambda: RecoveryConfig.model_validate({}))
    cache: CacheConfig = Field(default_factory=lambda: CacheConfig.model_validate({}))
    auth: AuthConfig | None = Field(None, description="This site's auth, if not the deployment's.")
    tls: TlsConfig | None = Field(None, description="Certificate and key: serve https.")

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0] or "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return (self.public_url or f"{scheme}://{self.listen}").rstrip("/")

    @property
    def default_store(self) -> StoreConfig:
        return next(s for s in self.stores if s.default)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        _, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected host:port, got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_default(self) -> SiteConfig:
        ids = [s.id for s in self.stores]
        if len(set(ids)) != len(ids):
            raise ValueError(f"store ids must be unique, got {ids}")
        defaults = [s.id for s in self.stores if s.default]
        if len(defaults) != 1:
            raise ValueError(f"exactly one store must be default, got {defaults or 'none'}")
        return self


@dataclass(frozen=True)
class StoreRef:
    """A store resolved against the topology: what to connect to, and as whom."""

    config: StoreConfig
    cluster_name: str | None  # None for an http store
    cluster: ClusterConfig | None
    client: str
    key: str | None  # from the topology's clients; None: the keyring (or the conf's)
    keyring: Path | None

    @property
    def key_in_catalog(self) -> str:
        """How the shared catalogue names this store's locations: by cluster (and pool)."""
        if self.cluster_name is None:
            return self.config.id
        pool = self.config.pool
        return self.cluster_name if pool == "images" else f"{self.cluster_name}/{pool}"


class Config(Frozen):
    """A deployment: the shared catalogue, the clusters, their clients, and every site."""

    catalog: str = Field(description="SQLAlchemy URL of the catalogue all sites share.")
    owner: str = Field(NOAUTH_PROJECT, description="Project id noauth requests act as.")
    auth: AuthConfig = Field(default_factory=lambda: AuthConfig.model_validate({}))
    clusters: dict[str, ClusterConfig] = Field(default_factory=dict)
    clients: dict[str, dict[str, ClientConfig]] = Field(
        default_factory=dict, description="client name -> cluster name -> key and caps."
    )
    sites: dict[str, SiteConfig]

    @model_validator(mode="before")
    @classmethod
    def _inline_clusters(cls, raw: Any) -> Any:
        """A site may define its cluster inline; it is then named after the site."""
        if not isinstance(raw, dict) or not isinstance(raw.get("sites"), dict):
            return raw
        clusters = dict(raw.get("clusters") or {})
        sites = {}
        for name, site in raw["sites"].items():
            if isinstance(site, dict) and isinstance(site.get("cluster"), dict):
                if name in clusters:
                    raise ValueError(f"sites.{name}.cluster: cluster {name!r} is defined twice")
                clusters[name] = site["cluster"]
                site = {**site, "cluster": name}
            sites[name] = site
        return {**raw, "clusters": clusters, "sites": sites}

    @model_validator(mode="after")
    def _references(self) -> Config:
        for name in self.clusters:
            if not _is_name(name):
                raise ValueError(f"clusters.{name}: names are letters, digits, '-' and '_'")
        for client, per_cluster in self.clients.items():
            client_name(client)
            for cluster in per_cluster:
                self._known_cluster(f"clients.{client}.{cluster}", cluster)
        centrals = [n for n, s in self.sites.items() if s.role == "central"]
        if len(centrals) > 1:
            raise ValueError(f"at most one site may be central, got {centrals}")
        for name, site in self.sites.items():
            if not _is_name(name):
                raise ValueError(f"sites.{name}: names are letters, digits, '-' and '_'")
            if site.cluster or any(s.type == "rbd" and not s.cluster for s in site.stores):
                self._known_cluster(f"sites.{name}.cluster", self.own_cluster(name))
            keys: dict[str, str] = {}
            for i, store in enumerate(site.stores):
                ref = self.store(name, store)
                where = f"sites.{name}.stores.{i}"
                if store.type == "rbd" and store.cluster:
                    self._known_cluster(f"{where}.cluster", store.cluster)
                if ref.key_in_catalog in keys:
                    raise ValueError(
                        f"{where}: stores {keys[ref.key_in_catalog]!r} and {store.id!r} are "
                        f"the same pool of cluster {ref.cluster_name!r}"
                    )
                keys[ref.key_in_catalog] = store.id
        return self

    def _known_cluster(self, where: str, name: str) -> None:
        if name not in self.clusters:
            known = ", ".join(self.clusters) or "none"
            raise ValueError(f"{where}: no cluster {name!r} (clusters: {known})")

    def site(self, name: str) -> SiteConfig:
        try:
            return self.sites[name]
        except KeyError:
            known = ", ".join(self.sites) or "none"
            raise InvalidRequest(
                f"no site {name!r} in the configuration (sites: {known})"
            ) from None

    @property
    def central(self) -> str | None:
        return next((n for n, s in self.sites.items() if s.role == "central"), None)

    def az(self, site_name: str) -> str:
        """The site's availability zone: its ``az``, else the site's name."""
        return self.site(site_name).az or site_name

    def zone_site(self, az: str) -> str:
        """The site whose availability zone is ``az``."""
        for name in self.sites:
            if self.az(name) == az:
                return name
        known = ", ".join(self.az(n) for n in self.sites)
        raise InvalidRequest(f"Availability zone '{az}' is invalid (zones: {known})")

    def own_cluster(self, site_name: str) -> str:
        """The site's own cluster's name: its ``cluster``, else the site's name."""
        return self.site(site_name).cluster or site_name

    def store(self, site_name: str, store: StoreConfig) -> StoreRef:
        """Resolve a site's store: its cluster, and the client and key it connects as."""
        if store.type == "http":
            return StoreRef(store, None, None, store.client or "admin", None, None)
        cluster_name = store.cluster or self.own_cluster(site_name)
        cluster = self.clusters.get(cluster_name)
        client = client_name(store.client or (cluster.client if cluster else "admin"))
        entry = self.clients.get(client, {}).get(cluster_name)
        own_keyring = cluster.keyring if cluster and client == cluster.client else None
        return StoreRef(
            store, cluster_name, cluster, client, entry.key if entry else None, own_keyring
        )

    def site_auth(self, site_name: str) -> AuthConfig:
        """The site's auth section, else the deployment's."""
        return self.site(site_name).auth or self.auth

    def stores(self, site_name: str) -> list[StoreRef]:
        return [self.store(site_name, s) for s in self.site(site_name).stores]


def _is_name(name: str) -> bool:
    return re.fullmatch(NAME, name) is not None


def load(path: Path) -> Config:
    """Parse and validate a YAML file; errors name the key and say what is wrong."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"{path} is not valid YAML: {exc}") from exc
    return parse(raw, str(path), base=Path(path).parent.resolve())


def parse(raw: object, where: str = "configuration", base: Path | None = None) -> Config:
    """Validate a topology; relative paths in it are taken relative to ``base``."""
    try:
        return Config.model_validate(raw, context={"base": base})
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        raise InvalidRequest(f"{where}: {problems}") from exc


def _problem(error: Any) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    msg = str(error["msg"]).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg
