"""Register ferry in Keystone's catalogue, as TripleO registers Glance and Cinder per stack.

``plan`` reads a topology: the service user of each ``keystone`` auth section (admin and
service roles on its project), and each site's region (its auth section's ``keystone.region``,
else the deployment's) and URL. ``register`` makes Keystone match it: regions, projects, roles,
users and role assignments, services ``glance`` (image), ``cinderv3`` (volumev3) and
``cinder`` (block-storage), and public, internal and admin endpoints per site. What exists and
matches is left alone, so a second run changes nothing; an endpoint whose URL differs is
updated, and a user whose password no longer logs in gets the topology's.

The volume endpoints are ``<site URL>/v3``, without Cinder's ``/%(project_id)s``: ferry's block
API takes no project in its paths (Cinder has accepted that form since microversion 3.67).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from keystoneauth1 import adapter

from ferry.config import Config
from ferry.errors import InvalidRequest
from ferry.identity.config import KeystoneConfig
from ferry.identity.keystone_api import Action, KeystoneApi

INTERFACES = ("public", "internal", "admin")
SERVICE_ROLES = ("admin", "service")  # what TripleO gives glance and cinder on project service
DEFAULT_REGION = "RegionOne"  # keystone-manage bootstrap's, TripleO's default KeystoneRegion


@dataclass(frozen=True)
class Service:
    type: str
    name: str
    description: str
    path: str  # appended to the site's URL to make the endpoint


IMAGE = Service("image", "glance", "OpenStack Image Service (ferry)", "")
VOLUME = (
    Service("volumev3", "cinderv3", "Cinder Volume Service V3 (ferry)", "/v3"),
    Service("block-storage", "cinder", "OpenStack Block Storage (ferry)", "/v3"),
)


@dataclass(frozen=True)
class ServiceUser:
    username: str
    password: str = field(repr=False)
    project: str
    user_domain: str
    project_domain: str


@dataclass(frozen=True)
class SiteEntry:
    site: str
    region: str
    url: str


@dataclass(frozen=True)
class Plan:
    """What Keystone must hold for the chosen sites, and what the topology left to defaults."""

    users: tuple[ServiceUser, ...]
    sites: tuple[SiteEntry, ...]
    services: tuple[Service, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Change:
    """One row of the report: what, which one, in which region, a detail, and what was done."""

    kind: str
    name: str
    region: str
    detail: str
    action: Action


def plan(config: Config, sites: Iterable[str] = (), *, volumes: bool = True) -> Plan:
    """The users, regions and endpoints of ``sites`` (default: every keystone-mode site)."""
    named = list(dict.fromkeys(sites))
    notes: list[str] = []
    chosen = []
    for name in named or config.sites:
        auth = config.site_auth(name)  # raises for an unknown site
        if auth.mode == "keystone":
            chosen.append(name)
        elif named:
            raise InvalidRequest(f"site {name} runs noauth: it has no Keystone to register in")
        else:
            notes.append(f"site {name}: noauth, not registered")
    if not chosen:
        raise InvalidRequest("no site of the topology uses Keystone (auth: mode: keystone)")
    entries: list[SiteEntry] = []
    users: dict[str, ServiceUser] = {}
    for name in chosen:
        section = _keystone(config, name)
        region = section.region or _deployment_region(config)
        if region is None:
            region = DEFAULT_REGION
            notes.append(f"site {name}: no keystone.region here or for the deployment: {region}")
        if same := next((e.site for e in entries if e.region == region), None):
            raise InvalidRequest(
                f"sites {same} and {name} are both in region {region}: a region has one "
                "endpoint per service; give each site its own keystone.region"
            )
        entries.append(SiteEntry(name, region, config.site(name).url))
        user = ServiceUser(
            section.username,
            section.password,
            section.project_name,
            section.user_domain_name,
            section.project_domain_name,
        )
        key = f"{user.user_domain}/{user.username}"
        if users.setdefault(key, user) != user:
            raise InvalidRequest(
                f"site {name}: service user {user.username} has another password or project "
                "than another site gives it; one user has one password"
            )
    services = (IMAGE, *VOLUME) if volumes else (IMAGE,)
    return Plan(tuple(users.values()), tuple(entries), services, tuple(notes))


def _keystone(config: Config, site: str) -> KeystoneConfig:
    section = config.site_auth(site).keystone
    assert section is not None  # AuthConfig requires it in keystone mode
    return section


def _deployment_region(config: Config) -> str | None:
    return config.auth.keystone.region if config.auth.keystone else None


def register(identity: adapter.Adapter, wanted: Plan) -> list[Change]:
    """Make Keystone hold ``wanted``; every object looked at is one row of the result."""
    api = KeystoneApi(identity)
    changes: list[Change] = []
    for region in dict.fromkeys(entry.region for entry in wanted.sites):
        changes.append(Change("region", region, "", "", api.ensure_region(region)))
    roles = {}
    for role in SERVICE_ROLES:
        roles[role], action = api.ensure_role(role)
        changes.append(Change("role", role, "", "", action))
    for user in wanted.users:
        changes += _user(api, user, roles)
    for service in wanted.services:
        service_id, action = api.ensure_service(service.type, service.name, service.description)
        changes.append(Change("service", service.name, "", f"type {service.type}", action))
        existing = api.endpoints(service_id)
        for entry in wanted.sites:
            url = entry.url + service.path
            for interface in INTERFACES:
                done = api.ensure_endpoint(service_id, entry.region, interface, url, existing)
                name = f"{service.type} {interface}"
                for action, at in done:
                    changes.append(Change("endpoint", name, entry.region, at, action))
    return changes


def _user(api: KeystoneApi, user: ServiceUser, roles: dict[str, str]) -> list[Change]:
    user_domain = api.domain_id(user.user_domain)
    project_domain = api.domain_id(user.project_domain)
    project_id, action = api.ensure_project(user.project, project_domain)
    changes = [Change("project", user.project, "", f"domain {user.project_domain}", action)]
    user_id, action = api.ensure_user(user.username, user.password, user_domain, project_id)
    changes.append(Change("user", user.username, "", f"domain {user.user_domain}", action))
    for role, role_id in roles.items():
        action = api.ensure_assignment(project_id, user_id, role_id)
        where = f"project {user.project}"
        changes.append(Change("role assignment", f"{user.username} {role}", "", where, action))
    return changes
