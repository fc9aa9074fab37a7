"""The operator's own Keystone credentials, found where openstackclient finds them.

``--os-cloud NAME`` (or ``OS_CLOUD``) reads cloud NAME from the first clouds.yaml of
``OS_CLIENT_CONFIG_FILE``, ``./clouds.yaml``, ``~/.config/openstack/clouds.yaml`` and
``/etc/openstack/clouds.yaml``, with the same cloud of a secure.yaml (same places, or
``OS_CLIENT_SECURE_FILE``) merged over it; otherwise the ``OS_*`` variables an openrc sets. The
auth plugin (``auth_type``, default ``password``) is keystoneauth1's, loaded by name, so its
options and variables are keystoneauth1's own. openstacksdk reads the same files; ferry does not
import it (vendor ``profile`` entries are not supported).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from keystoneauth1 import adapter, loading, session
from keystoneauth1 import exceptions as ks_exc

from ferry.errors import InvalidRequest

_PLACES = (Path("."), Path("~/.config/openstack").expanduser(), Path("/etc/openstack"))
TIMEOUT = 60.0  # seconds per Keystone request


@dataclass(frozen=True)
class Admin:
    """An authenticated session and where in the catalogue to find Keystone."""

    session: session.Session
    region_name: str | None
    interface: str
    where: str  # "cloud NAME (path)" or "OS_* variables", for messages

    def identity(self) -> adapter.Adapter:
        """Keystone's v3 API, found in the catalogue as openstackclient finds it."""
        return adapter.Adapter(
            self.session,
            service_type="identity",
            interface=self.interface,
            region_name=self.region_name,
            min_version="3",
            max_version="3.latest",
            raise_exc=False,
        )


def admin(cloud: str | None = None, env: Mapping[str, str] | None = None) -> Admin:
    """The operator's credentials: cloud ``cloud`` (else ``OS_CLOUD``), else the OS_* variables."""
    env = os.environ if env is None else env
    cloud = cloud or env.get("OS_CLOUD")
    if cloud:
        return _from_cloud(cloud, env)
    return _from_env(env)


def _from_env(env: Mapping[str, str]) -> Admin:
    if not env.get("OS_AUTH_URL"):
        raise InvalidRequest(
            "no admin credentials: source an openrc (OS_AUTH_URL, OS_USERNAME, ...) or pass "
            "--os-cloud NAME from clouds.yaml"
        )
    auth_type = env.get("OS_AUTH_TYPE", "password")
    loader = _loader(auth_type, "OS_AUTH_TYPE")
    options = {}
    for opt in loader.get_options():
        for var in opt.argparse_envvars:
            if env.get(var):
                options[opt.dest] = env[var]
                break
    verify: bool | str = env.get("OS_CACERT") or True
    if env.get("OS_INSECURE", "").lower() in ("1", "true", "yes"):
        verify = False
    cert = (env["OS_CERT"], env["OS_KEY"]) if env.get("OS_CERT") and env.get("OS_KEY") else None
    return Admin(
        _session(loader, options, verify, cert, "the OS_* variables"),
        env.get("OS_REGION_NAME") or None,
        env.get("OS_INTERFACE", "public"),
        "the OS_* variables",
    )


def _from_cloud(name: str, env: Mapping[str, str]) -> Admin:
    path, clouds = _read_first(env.get("OS_CLIENT_CONFIG_FILE"), "clouds.yaml")
    if name not in clouds:
        known = ", ".join(clouds) or "none"
        where = path or env.get("OS_CLIENT_CONFIG_FILE") or "any clouds.yaml"
        raise InvalidRequest(f"no cloud {name!r} in {where} (clouds: {known})")
    entry = _merge(clouds[name], _read_first(env.get("OS_CLIENT_SECURE_FILE"), "secure.yaml")[1]
                   .get(name, {}))  # fmt: skip
    where = f"cloud {name} ({path})"
    if "profile" in entry:
        raise InvalidRequest(f"{where}: vendor profiles are not supported; write its auth out")
    loader = _loader(str(entry.get("auth_type", "password")), f"{where}: auth_type")
    auth = entry.get("auth") or {}
    if not isinstance(auth, dict):
        raise InvalidRequest(f"{where}: auth must be a mapping")
    dests = {opt.dest for opt in loader.get_options()}
    options = {key.replace("-", "_"): value for key, value in auth.items()}
    if unknown := sorted(set(options) - dests):
        raise InvalidRequest(f"{where}: auth has options its auth_type lacks: {unknown}")
    verify: bool | str = bool(entry.get("verify", True))
    if entry.get("cacert") and verify:
        verify = str(entry["cacert"])
    cert = None
    if entry.get("cert") and entry.get("key"):
        cert = (str(entry["cert"]), str(entry["key"]))
    return Admin(
        _session(loader, options, verify, cert, where),
        entry.get("region_name") or None,
        str(entry.get("interface", "public")),
        where,
    )


def _loader(name: str, where: str) -> loading.BaseLoader[Any]:
    try:
        return loading.get_plugin_loader(name)
    except ks_exc.NoMatchingPlugin:
        raise InvalidRequest(f"{where}: keystoneauth1 has no auth plugin {name!r}") from None


def _session(
    loader: loading.BaseLoader[Any],
    options: dict[str, Any],
    verify: bool | str,
    cert: tuple[str, str] | None,
    where: str,
) -> session.Session:
    if "password" in {opt.dest for opt in loader.get_options()} and not options.get("password"):
        raise InvalidRequest(f"{where}: no password (OS_PASSWORD, or the cloud's auth.password)")
    try:
        plugin = loader.load_from_options(**options)
    except ks_exc.MissingRequiredOptions as exc:
        missing = ", ".join(opt.dest for opt in exc.options)
        raise InvalidRequest(f"{where}: missing auth options: {missing}") from None
    return session.Session(auth=plugin, verify=verify, cert=cert, timeout=TIMEOUT)


def _read_first(given: str | None, name: str) -> tuple[Path | None, dict[str, Any]]:
    """The ``clouds`` mapping of the first file found, and its path."""
    paths = [Path(given)] if given else [place / name for place in _PLACES]
    for path in paths:
        try:
            doc = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise InvalidRequest(f"cannot read {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise InvalidRequest(f"{path} is not valid YAML: {exc}") from exc
        clouds = doc.get("clouds") if isinstance(doc, dict) else None
        if not isinstance(clouds, dict):
            raise InvalidRequest(f"{path}: expected a 'clouds' mapping")
        return path, clouds
    return None, {}


def _merge(base: Any, over: Any) -> Any:
    """``over`` merged into ``base``, mappings key by key (secure.yaml over clouds.yaml)."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in over.items()}}
    return over if over is not None else base
