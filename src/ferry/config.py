"""ferry's configuration: parsed once from YAML into frozen objects, then passed in.

A deployment names its shared catalogue and its sites; each site serves the Image API and has
stores: its own cluster (the default store) and, usually, other sites' clusters::

    catalog: sqlite:////var/lib/ferry/catalog.db
    sites:
      central:
        listen: 127.0.0.1:9292
        stores:
          - {id: default_backend, description: central rbd glance store,
             cluster: /var/lib/ferry/central, default: true}
          - {id: http, type: http, description: http store}
          - {id: dcn0, description: dcn0 rbd glance store, cluster: ceph:/etc/ceph/dcn0.conf,
             client: external}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ferry.errors import InvalidRequest

NOAUTH_PROJECT = "c0ffee00c0ffee00c0ffee00c0ffee00"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StoreConfig(_Frozen):
    """A Glance store: where an image's data lives (``images/<id>@snap`` in a cluster)."""

    id: str = Field(pattern=r"^[A-Za-z0-9_\-]+$", description="Store id, as clients name it.")
    description: str = Field("", description="Shown by 'glance stores-info'.")
    type: Literal["rbd", "http"] = Field(
        "rbd", description="rbd: a cluster's images pool; http: read-only, as Glance lists it."
    )
    cluster: str | None = Field(
        None, description="Embedded cluster directory, or ceph:CONF for a Ceph cluster."
    )
    client: str = Field("admin", description="Client (client.NAME) the store connects as.")
    keyring: Path | None = Field(None, description="Keyring file; default: the cluster's.")
    pool: str = Field("images", description="Pool holding the images' block images.")
    default: bool = Field(False, description="The store uploads go to when none is named.")

    @property
    def read_only(self) -> bool:
        return self.type == "http"

    @model_validator(mode="after")
    def _cluster_for_rbd(self) -> StoreConfig:
        if self.type == "rbd" and not self.cluster:
            raise ValueError(f"store {self.id!r} needs 'cluster' (a directory or ceph:CONF)")
        return self


class ImportConfig(_Frozen):
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


class SiteConfig(_Frozen):
    """One site: its Image API address, its stores and how it imports."""

    listen: str = Field("127.0.0.1:9292", description="host:port the site's API listens on.")
    public_url: str | None = Field(
        None, description="URL clients use for this site (default: http://<listen>)."
    )
    stores: tuple[StoreConfig, ...]
    imports: ImportConfig = Field(default_factory=lambda: ImportConfig.model_validate({}))

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0] or "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def url(self) -> str:
        return (self.public_url or f"http://{self.listen}").rstrip("/")

    @model_validator(mode="after")
    def _one_default(self) -> SiteConfig:
        ids = [s.id for s in self.stores]
        if len(set(ids)) != len(ids):
            raise ValueError(f"store ids must be unique, got {ids}")
        defaults = [s.id for s in self.stores if s.default]
        if len(defaults) != 1:
            raise ValueError(f"exactly one store must be default, got {defaults or 'none'}")
        return self


class Config(_Frozen):
    """A deployment: the shared catalogue and every site."""

    catalog: str = Field(description="SQLAlchemy URL of the catalogue all sites share.")
    owner: str = Field(NOAUTH_PROJECT, description="Project id requests act as (no auth yet).")
    sites: dict[str, SiteConfig]

    def site(self, name: str) -> SiteConfig:
        try:
            return self.sites[name]
        except KeyError:
            known = ", ".join(self.sites) or "none"
            raise InvalidRequest(
                f"no site {name!r} in the configuration (sites: {known})"
            ) from None


def load(path: Path) -> Config:
    """Parse and validate a YAML file; errors name the key and say what is wrong."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"{path} is not valid YAML: {exc}") from exc
    return parse(raw, str(path))


def parse(raw: object, where: str = "configuration") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidRequest(f"{where}: {problems}") from exc
