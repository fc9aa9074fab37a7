"""The Keystone side of a TripleO import: ``auth: {mode: keystone, keystone: {...}}``.

What TripleO's stacks carry about Keystone, and where ferry puts it:

- ``GlancePassword``: the ``glance`` service user's password (user ``glance``, project
  ``service``, domain ``Default``, as TripleO makes it). DCN stacks get central's through
  ``openstack overcloud export``; central's wins when stacks differ.
- ``EndpointMapOverride`` (the export's) or ``EndpointMap``: ``KeystoneInternal``, else
  ``KeystonePublic``, gives ``auth_url`` (``uri_no_suffix`` or ``uri``, plus ``/v3``) and the
  interface; else ``CloudNameInternal`` or ``CloudName``, as http on port 5000.
- ``KeystoneRegion`` (TripleO's default: ``regionOne``): each site's region. ``ferry keystone
  register`` puts one site per region, so an edge stack without one gets a region named after
  it; stacks that differ get per-site auth sections.

Without a password or a Keystone address the topology stays noauth, and a note says why.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from ferry.errors import InvalidRequest

PARAMS = frozenset(
    {"KeystoneRegion", "GlancePassword", "EndpointMapOverride", "EndpointMap", "CloudName",
     "CloudNameInternal"}
)  # fmt: skip
WHY = {
    "ServiceNetMap": "ferry has no service networks: a site listens where its listen says",
    "AdminPassword": "the topology keeps no admin password; ferry keystone register takes the "
    "admin's credentials from OS_* or clouds.yaml",
    "CinderPassword": "ferry's volume API validates tokens as the glance user",
}
DEFAULT_REGION = "regionOne"  # THT's KeystoneRegion default
_ENTRIES = (("KeystoneInternal", "internal"), ("KeystonePublic", "public"))
_NAMES = (("CloudNameInternal", "internal"), ("CloudName", "public"))
_UNRESOLVED = ("IP_ADDRESS", "CLOUDNAME")  # endpoint_map.yaml's placeholders


class Stack(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def params(self) -> dict[str, Any]: ...
    def at(self, param: str) -> str: ...


def auth_sections(
    stacks: Iterable[Stack], central: str | None, notes: list[str]
) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """The deployment's auth section and the sites' own (where their region differs), or
    (None, {}) when the stacks do not say enough to validate tokens."""
    ordered = sorted(stacks, key=lambda s: s.name != central)  # central's values first
    urls = {s.name: _keystone_url(s, notes) for s in ordered}
    passwords = {
        s.name: _string(s, "GlancePassword") for s in ordered if "GlancePassword" in s.params
    }
    url = next((u for u in urls.values() if u), None)
    password = next(iter(passwords.values()), None)
    if url is None or password is None:
        lacking = " and ".join(
            what for what, ok in (("GlancePassword", password), ("Keystone address", url)) if not ok
        )
        notes.append(
            f"no {lacking} in any stack (GlancePassword; EndpointMapOverride's KeystoneInternal "
            "or KeystonePublic, or CloudName): the topology runs noauth; give it an auth section "
            "(see docs/identity.md)"
        )
        return None, {}
    for s in ordered:
        if s.name in passwords and passwords[s.name] != password:
            notes.append(f"{s.name}: {s.at('GlancePassword')}: differs from another stack's; "
                         "one glance user has one password, the first stack's is kept")  # fmt: skip
        if (other := urls[s.name]) and other != url:
            notes.append(f"{s.name}: Keystone {other[0]} differs; {url[0]} is kept")
    regions = _regions(ordered, central, notes)
    first = regions[ordered[0].name]
    keystone = {
        "auth_url": url[0],
        "username": "glance",
        "password": password,
        "project_name": "service",
        "region": first,
        "interface": url[1],
    }
    own = {
        name: {"mode": "keystone", "keystone": keystone | {"region": region}}
        for name, region in regions.items()
        if region != first
    }
    return {"mode": "keystone", "keystone": keystone}, own


def _regions(stacks: list[Stack], central: str | None, notes: list[str]) -> dict[str, str]:
    """Each stack's KeystoneRegion; central's default regionOne, an edge's its own name."""
    regions: dict[str, str] = {}
    for s in stacks:
        if "KeystoneRegion" in s.params:
            regions[s.name] = _string(s, "KeystoneRegion")
        elif s.name == central or (central is None and not regions):
            regions[s.name] = DEFAULT_REGION
            notes.append(f"{s.name}: no KeystoneRegion: {DEFAULT_REGION}, TripleO's default")
        else:
            regions[s.name] = s.name
            notes.append(
                f"{s.name}: no KeystoneRegion: region {s.name}, so that ferry keystone register "
                "can give this site endpoints of its own (TripleO's default would be "
                f"{DEFAULT_REGION}, central's)"
            )
    shared: dict[str, list[str]] = {}
    for name, region in regions.items():
        shared.setdefault(region, []).append(name)
    for region, names in shared.items():
        if len(names) > 1:
            notes.append(
                f"stacks {', '.join(names)} share KeystoneRegion {region}: ferry keystone "
                "register puts one site per region (name one with --site, or give each its own)"
            )
    return regions


def _keystone_url(stack: Stack, notes: list[str]) -> tuple[str, str] | None:
    """Keystone's v3 URL and interface, from the stack's endpoint map or cloud names."""
    for param in ("EndpointMapOverride", "EndpointMap"):
        if param not in stack.params:
            continue
        endpoints = stack.params[param]
        if not isinstance(endpoints, dict):
            raise InvalidRequest(f"{stack.at(param)}: expected a mapping")
        for key, interface in _ENTRIES:
            if key not in endpoints:
                continue
            at = f"{stack.at(param)}.{key}"
            url = _entry_url(endpoints[key], at)
            if url is None:
                notes.append(f"{stack.name}: {at}: unresolved (IP_ADDRESS/CLOUDNAME), skipped")
                continue
            return url, interface
    for param, interface in _NAMES:
        if param in stack.params:
            host = _string(stack, param)
            notes.append(
                f"{stack.name}: {stack.at(param)}: Keystone taken as http://{host}:5000/v3 "
                "(no EndpointMapOverride says its scheme and port)"
            )
            return f"http://{host}:5000/v3", interface
    return None


def _entry_url(entry: object, at: str) -> str | None:
    """An endpoint map entry as Keystone's v3 URL; None while it holds a placeholder."""
    if not isinstance(entry, dict):
        raise InvalidRequest(f"{at}: expected a mapping")
    uri = entry.get("uri_no_suffix") or entry.get("uri")
    if uri is None and {"protocol", "host", "port"} <= entry.keys():
        uri = f"{entry['protocol']}://{entry['host']}:{entry['port']}"
    if not isinstance(uri, str) or not uri.startswith(("http://", "https://")):
        raise InvalidRequest(f"{at}: expected uri, or protocol, host and port, of http(s)")
    if any(mark in uri for mark in _UNRESOLVED):
        return None
    uri = uri.rstrip("/")
    return uri if uri.endswith("/v3") else f"{uri}/v3"


def _string(stack: Stack, param: str) -> str:
    value = stack.params[param]
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{stack.at(param)}: expected a non-empty string")
    return value
