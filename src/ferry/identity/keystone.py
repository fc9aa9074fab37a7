"""``Tokens``: validate Keystone v3 tokens with the service's own session, and cache them.

keystonemiddleware's semantics: ``X-Auth-Token`` is checked with ``GET /v3/auth/tokens`` as
the service user (keystoneauth1 keeps and renews the service's token); a valid token is kept
until ``cache_seconds`` pass or shortly before it expires, whichever is first; the cache is
bounded (least recently used tokens go first) and keyed by the token's sha256, never the token.
An ``X-Service-Token`` that is valid and carries a service role adds its roles to the context.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime

from keystoneauth1 import access, session
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1.identity import v3

from ferry.errors import BackendUnavailable, Unauthenticated
from ferry.identity.config import KeystoneConfig
from ferry.identity.context import Context

EXPIRY_MARGIN = 30.0  # seconds: a token this close to its expiry is validated again


class Tokens:
    def __init__(self, config: KeystoneConfig) -> None:
        self.config = config
        plugin = v3.Password(
            auth_url=config.auth_url,
            username=config.username,
            password=config.password,
            project_name=config.project_name,
            user_domain_name=config.user_domain_name,
            project_domain_name=config.project_domain_name,
        )
        verify: bool | str = str(config.cafile) if config.cafile else True
        self.session = session.Session(auth=plugin, verify=verify, timeout=config.timeout)
        self._cache: OrderedDict[str, tuple[float, access.AccessInfoV3]] = OrderedDict()
        self._lock = threading.Lock()

    def context(self, token: str | None, service_token: str | None = None) -> Context:
        """The context a request's tokens give; ``Unauthenticated`` when they give none."""
        if not token:
            raise Unauthenticated("Authentication required")
        user = self.validate(token)
        service_roles: frozenset[str] = frozenset()
        service_user = None
        if service_token:
            service = self.validate(service_token)
            service_roles = frozenset(service.role_names or ())
            if not service_roles & set(self.config.service_token_roles):
                raise Unauthenticated("The service token does not carry a service role")
            service_user = service.user_id
        return Context(
            user_id=user.user_id,
            project_id=user.project_id,
            roles=frozenset(user.role_names or ()),
            domain_id=user.domain_id if user.domain_scoped else None,
            user_domain_id=user.user_domain_id,
            project_domain_id=user.project_domain_id,
            system_scope="all" if user.system_scoped else None,
            service_roles=service_roles,
            service_user_id=service_user,
            auth_token=token,
        )

    def validate(self, token: str) -> access.AccessInfoV3:
        """Keystone's word on a token, from the cache while it is fresh."""
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                self._cache.move_to_end(key)
                return hit[1]
        info = self._ask_keystone(token)
        assert info.expires is not None  # _ask_keystone refuses a token without one
        left = (info.expires - datetime.now(UTC)).total_seconds() - EXPIRY_MARGIN
        keep = min(self.config.cache_seconds, left)
        if keep > 0 and self.config.cache_size > 0:
            with self._lock:
                self._cache[key] = (now + keep, info)
                self._cache.move_to_end(key)
                while len(self._cache) > self.config.cache_size:
                    self._cache.popitem(last=False)
        return info

    def _ask_keystone(self, token: str) -> access.AccessInfoV3:
        try:
            resp = self.session.get(
                f"{self.config.auth_url}/auth/tokens",
                headers={"X-Subject-Token": token},
                authenticated=True,
                raise_exc=False,
            )
        except ks_exc.ClientException as exc:  # connection refused, timeout, service auth failed
            raise BackendUnavailable(f"Keystone cannot validate tokens now: {exc}") from exc
        if resp.status_code in (401, 403, 404):
            raise Unauthenticated("The request you have made requires authentication.")
        if resp.status_code != 200:
            raise BackendUnavailable(f"Keystone answered {resp.status_code} to a token check")
        info = access.create(body=resp.json(), auth_token=token)
        if not isinstance(info, access.AccessInfoV3):
            raise Unauthenticated("Only Keystone v3 tokens are accepted")
        if info.expires is None or info.expires <= datetime.now(UTC):
            raise Unauthenticated("The token has expired.")
        return info

    def close(self) -> None:
        self.session.session.close()
