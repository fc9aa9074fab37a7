"""The request context: who is asking, for which project, with which roles.

Built from a validated Keystone token (``ferry.identity.keystone``) or, in ``noauth`` mode, as
the admin of the deployment's ``owner`` project. Services take it as their first argument when
what they do depends on the caller; policy checks read it as oslo.policy credentials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Context:
    user_id: str | None
    project_id: str | None
    roles: frozenset[str] = frozenset()
    domain_id: str | None = None  # a domain-scoped token's domain
    user_domain_id: str | None = None
    project_domain_id: str | None = None
    system_scope: str | None = None  # "all" for a system-scoped token
    service_roles: frozenset[str] = frozenset()  # roles of a valid X-Service-Token
    service_user_id: str | None = None
    auth_token: str | None = field(default=None, repr=False)
    noauth: bool = False

    @classmethod
    def admin(cls, project_id: str, user_id: str = "ferry") -> Context:
        """The noauth context: admin of one project (``ferry demo``, loopback-only sites)."""
        return cls(
            user_id=user_id,
            project_id=project_id,
            roles=frozenset({"admin", "member", "reader"}),
            noauth=True,
        )

    @property
    def is_admin(self) -> bool:
        """Admin in the legacy sense Glance keeps for visibility: the admin role."""
        return "admin" in self.roles

    def can_see_all(self) -> bool:
        """Whether listings span every project (Glance's context.is_admin)."""
        return self.is_admin

    def credentials(self) -> dict[str, Any]:
        """What oslo.policy checks rules against (oslo.context's ``to_policy_values``)."""
        return {
            "user_id": self.user_id,
            "project_id": self.project_id,
            "domain_id": self.domain_id,
            "user_domain_id": self.user_domain_id,
            "project_domain_id": self.project_domain_id,
            "system_scope": self.system_scope,
            "roles": sorted(self.roles),
            "service_roles": sorted(self.service_roles),
            "service_user_id": self.service_user_id,
            "is_admin_project": True,
        }
