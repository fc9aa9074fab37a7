"""The ``auth`` and ``tls`` sections of a topology.

``auth`` is set once for the deployment and may be replaced per site::

    auth:
      mode: keystone
      keystone:
        auth_url: http://127.0.0.1:5000/v3
        username: glance
        password: secret
        project_name: service
        region: RegionOne
      policy_file: /etc/ferry/policy.yaml     # oslo.policy rules, as Glance's policy.yaml

``noauth`` (the default) makes every request the admin of the deployment's ``owner`` project;
a site refuses to listen beyond loopback in that mode unless ``allow_noauth_remote`` is true.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ferry.confbase import Frozen as _Frozen
from ferry.confbase import relative_to_file


class KeystoneConfig(_Frozen):
    """Keystone v3, and the service's own credentials to validate users' tokens with."""

    auth_url: str = Field(description="Keystone v3 URL, e.g. http://keystone:5000/v3.")
    username: str = Field(description="The service user (TripleO: glance).")
    password: str = Field(repr=False, description="The service user's password.")
    project_name: str = Field("service", description="The service user's project.")
    user_domain_name: str = Field("Default")
    project_domain_name: str = Field("Default")
    region: str | None = Field(None, description="This site's region in the catalogue.")
    interface: Literal["public", "internal", "admin"] = Field(
        "internal", description="Keystone endpoint interface the service talks to."
    )
    cache_seconds: float = Field(
        300, ge=0, description="A valid token is trusted this long, never past its expiry."
    )
    cache_size: int = Field(10_000, ge=0, description="Tokens kept in the cache at most.")
    service_token_roles: tuple[str, ...] = Field(
        ("service",), description="Roles an X-Service-Token must carry to be accepted."
    )
    cafile: Path | None = Field(None, description="CA bundle for an https Keystone.")
    timeout: float = Field(10, gt=0, description="Seconds to wait for Keystone.")

    _paths = field_validator("cafile")(relative_to_file)

    @field_validator("auth_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value.rstrip("/")


class AuthConfig(_Frozen):
    """How a site authenticates requests and which policy it enforces."""

    mode: Literal["noauth", "keystone"] = Field(
        "noauth", description="keystone: X-Auth-Token required; noauth: every caller is admin."
    )
    keystone: KeystoneConfig | None = None
    policy_file: Path | None = Field(
        None, description="oslo.policy rules (YAML or JSON) overriding ferry's defaults."
    )
    allow_noauth_remote: bool = Field(
        False, description="Let a noauth site listen on a non-loopback address."
    )

    _paths = field_validator("policy_file")(relative_to_file)

    @model_validator(mode="after")
    def _keystone_given(self) -> AuthConfig:
        if self.mode == "keystone" and self.keystone is None:
            raise ValueError("mode keystone needs a 'keystone' section (auth_url, credentials)")
        return self


class TlsConfig(_Frozen):
    """A site's certificate: the API then speaks https."""

    cert: Path = Field(description="PEM certificate (chain) file.")
    key: Path = Field(description="PEM private key file (keep it 0600).")

    _paths = field_validator("cert", "key")(relative_to_file)
