"""``KeystoneApi``: find-or-make calls on Keystone v3's identity, assignment and catalogue
resources, each answering what it did. Keystone's refusals become ferry's errors here."""

from __future__ import annotations

from typing import Any, Literal

from keystoneauth1 import adapter
from keystoneauth1 import exceptions as ks_exc

from ferry.errors import (
    BackendUnavailable,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    Unauthenticated,
)

Action = Literal["created", "updated", "unchanged", "removed"]
_ERRORS: dict[int, type[Exception]] = {
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
}


class KeystoneApi:
    def __init__(self, identity: adapter.Adapter) -> None:
        self.identity = identity

    def call(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kw: Any) -> Any:
        """Keystone's JSON answer (None when it has none, or its status is in ``ok``)."""
        try:
            reply = self.identity.request(path, method, raise_exc=False, **kw)
        except ks_exc.ClientException as exc:  # no identity endpoint, refused, timed out
            raise BackendUnavailable(f"Keystone cannot be reached: {exc}") from exc
        if reply.status_code in ok:
            return None
        if reply.status_code >= 400:
            try:
                message = reply.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = reply.text[:200]
            error = _ERRORS.get(reply.status_code)
            if error is None:
                error = BackendUnavailable if reply.status_code >= 500 else InvalidRequest
            raise error(f"Keystone: {method} {path}: {reply.status_code} {message}")
        return reply.json() if reply.content else None

    def find(self, kind: str, **filters: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"/{kind}", params=filters)[kind])

    def domain_id(self, name: str) -> str:
        found = self.find("domains", name=name)
        if not found:
            raise NotFound(f"Keystone has no domain {name!r}; make it first")
        return str(found[0]["id"])

    def ensure_region(self, region: str) -> Action:
        if self.call("GET", f"/regions/{region}", ok=(404,)) is not None:
            return "unchanged"
        self.call("POST", "/regions", json={"region": {"id": region}})
        return "created"

    def ensure_role(self, name: str) -> tuple[str, Action]:
        found = [r for r in self.find("roles", name=name) if not r.get("domain_id")]
        if found:
            return str(found[0]["id"]), "unchanged"
        made = self.call("POST", "/roles", json={"role": {"name": name}})
        return str(made["role"]["id"]), "created"

    def ensure_project(self, name: str, domain_id: str) -> tuple[str, Action]:
        found = self.find("projects", name=name, domain_id=domain_id)
        if found:
            return str(found[0]["id"]), "unchanged"
        body = {"project": {"name": name, "domain_id": domain_id, "enabled": True}}
        return str(self.call("POST", "/projects", json=body)["project"]["id"]), "created"

    def ensure_user(
        self, name: str, password: str, domain_id: str, project_id: str
    ) -> tuple[str, Action]:
        """The user, made with ``password``; an existing one gets it if it does not log in,
        and is enabled if it was not."""
        found = self.find("users", name=name, domain_id=domain_id)
        if not found:
            body = {
                "user": {
                    "name": name,
                    "password": password,
                    "domain_id": domain_id,
                    "default_project_id": project_id,
                    "enabled": True,
                }
            }
            return str(self.call("POST", "/users", json=body)["user"]["id"]), "created"
        user = found[0]
        change: dict[str, Any] = {}
        if not user.get("enabled", True):
            change["enabled"] = True
        if not self.logs_in(str(user["id"]), password):
            change["password"] = password
        if not change:
            return str(user["id"]), "unchanged"
        self.call("PATCH", f"/users/{user['id']}", json={"user": change})
        return str(user["id"]), "updated"

    def logs_in(self, user_id: str, password: str) -> bool:
        """Whether ``password`` is the user's (an unscoped password login)."""
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {"id": user_id, "password": password}},
                }
            }
        }
        try:
            self.call("POST", "/auth/tokens", json=body, authenticated=False)
        except Unauthenticated:
            return False
        return True

    def ensure_assignment(self, project_id: str, user_id: str, role_id: str) -> Action:
        path = f"/projects/{project_id}/users/{user_id}/roles/{role_id}"
        try:
            self.call("HEAD", path)
        except NotFound:
            self.call("PUT", path)
            return "created"
        return "unchanged"

    def ensure_service(self, service_type: str, name: str, description: str) -> tuple[str, Action]:
        """The service of ``service_type`` (the one called ``name`` if several are)."""
        found = self.find("services", type=service_type)
        found.sort(key=lambda s: s.get("name") != name)
        if found:
            service = found[0]
            if service.get("enabled", True):
                return str(service["id"]), "unchanged"
            self.call("PATCH", f"/services/{service['id']}", json={"service": {"enabled": True}})
            return str(service["id"]), "updated"
        body = {
            "service": {
                "type": service_type,
                "name": name,
                "description": description,
                "enabled": True,
            }
        }
        return str(self.call("POST", "/services", json=body)["service"]["id"]), "created"

    def endpoints(self, service_id: str) -> list[dict[str, Any]]:
        return self.find("endpoints", service_id=service_id)

    def ensure_endpoint(
        self,
        service_id: str,
        region: str,
        interface: str,
        url: str,
        existing: list[dict[str, Any]],
    ) -> list[tuple[Action, str]]:
        """One enabled endpoint at ``url``: made, its URL updated, duplicates removed; each
        action with the URL it concerned."""
        same = [e for e in existing if e.get("region_id") == region and e["interface"] == interface]
        same.sort(key=lambda e: e["url"] != url)  # keep one already right, if any
        actions: list[tuple[Action, str]] = []
        for extra in same[1:]:
            self.call("DELETE", f"/endpoints/{extra['id']}")
            actions.append(("removed", extra["url"]))
        if not same:
            body = {
                "endpoint": {
                    "service_id": service_id,
                    "region_id": region,
                    "interface": interface,
                    "url": url,
                    "enabled": True,
                }
            }
            self.call("POST", "/endpoints", json=body)
            return [*actions, ("created", url)]
        endpoint = same[0]
        if endpoint["url"] == url and endpoint.get("enabled", True):
            return [*actions, ("unchanged", url)]
        change = {"endpoint": {"url": url, "enabled": True}}
        self.call("PATCH", f"/endpoints/{endpoint['id']}", json=change)
        return [*actions, ("updated", url)]
