"""Where ``ferry keystone register`` finds the admin's credentials: an openrc's OS_* variables,
or a cloud of clouds.yaml with secure.yaml's secrets merged in (no Keystone needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from keystoneauth1.identity import generic

from ferry.errors import InvalidRequest
from ferry.identity.credentials import admin

OPENRC = {
    "OS_AUTH_URL": "http://keystone.example.com:5000/v3",
    "OS_USERNAME": "admin",
    "OS_PASSWORD": "secret",
    "OS_PROJECT_NAME": "admin",
    "OS_USER_DOMAIN_NAME": "Default",
    "OS_PROJECT_DOMAIN_NAME": "Default",
    "OS_REGION_NAME": "regionOne",
    "OS_IDENTITY_API_VERSION": "3",
}


def password_of(plugin: Any) -> dict[str, Any]:
    """What keystoneauth1's generic password plugin was given."""
    assert isinstance(plugin, generic.Password)
    given = vars(plugin)
    return {"auth_url": plugin.auth_url} | {
        name: given[f"_{name}"]
        for name in ("username", "password", "project_name", "user_domain_name")
    }


def test_an_openrc_is_read_with_keystoneauths_variables() -> None:
    found = admin(env=OPENRC | {"OS_INTERFACE": "internal", "OS_CACERT": "/etc/ca.pem"})
    assert password_of(found.session.auth) == {
        "auth_url": "http://keystone.example.com:5000/v3",
        "username": "admin",
        "password": "secret",
        "project_name": "admin",
        "user_domain_name": "Default",
    }
    assert (found.region_name, found.interface, found.where) == (
        "regionOne",
        "internal",
        "the OS_* variables",
    )
    assert found.session.verify == "/etc/ca.pem"
    identity = found.identity()
    assert (identity.service_type, identity.interface) == ("identity", "internal")


def test_without_credentials_it_says_where_to_put_them() -> None:
    with pytest.raises(InvalidRequest, match=r"source an openrc .* or pass --os-cloud"):
        admin(env={})
    with pytest.raises(InvalidRequest, match="no password"):
        admin(env={k: v for k, v in OPENRC.items() if k != "OS_PASSWORD"})
    with pytest.raises(InvalidRequest, match="no auth plugin 'kerberos-ish'"):
        admin(env=OPENRC | {"OS_AUTH_TYPE": "kerberos-ish"})


def write(path: Path, doc: object) -> str:
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_a_cloud_comes_from_clouds_yaml_with_secure_yaml_over_it(tmp_path: Path) -> None:
    clouds = {
        "clouds": {
            "overcloud": {
                "auth": {
                    "auth_url": "https://overcloud.example.com:13000",
                    "username": "admin",
                    "project_name": "admin",
                    "user_domain_name": "Default",
                    "project_domain_name": "Default",
                },
                "region_name": "regionOne",
                "cacert": "/etc/pki/ca.pem",
                "identity_api_version": 3,
            }
        }
    }
    secure = {"clouds": {"overcloud": {"auth": {"password": "from-secure"}}}}
    env = {
        "OS_CLIENT_CONFIG_FILE": write(tmp_path / "clouds.yaml", clouds),
        "OS_CLIENT_SECURE_FILE": write(tmp_path / "secure.yaml", secure),
    }
    found = admin("overcloud", env)
    given = password_of(found.session.auth)
    assert (given["auth_url"], given["password"]) == (
        "https://overcloud.example.com:13000",
        "from-secure",
    )
    assert (found.region_name, found.interface) == ("regionOne", "public")
    assert found.session.verify == "/etc/pki/ca.pem"
    assert found.where == f"cloud overcloud ({tmp_path / 'clouds.yaml'})"
    # OS_CLOUD names it too, and wins over OS_* variables as in openstackclient
    assert admin(env=env | OPENRC | {"OS_CLOUD": "overcloud"}).where.startswith("cloud overcloud")


def test_a_cloud_that_is_missing_or_unusable_is_named(tmp_path: Path) -> None:
    path = tmp_path / "clouds.yaml"
    env = {"OS_CLIENT_CONFIG_FILE": str(path), "OS_CLIENT_SECURE_FILE": str(tmp_path / "none")}
    with pytest.raises(InvalidRequest, match=f"no cloud 'a' in {path}"):
        admin("a", env)
    write(path, {"clouds": {"a": {"auth": {"auth_url": "http://k:5000", "bogus": 1}}}})
    with pytest.raises(InvalidRequest, match=r"cloud a .*: auth has options its auth_type lacks"):
        admin("a", env)
    write(path, {"clouds": {"a": {"auth": {"username": "admin", "password": "pw"}}}})
    with pytest.raises(InvalidRequest, match=r"cloud a .*: missing auth options: auth_url"):
        admin("a", env)
    write(path, {"clouds": {"a": {"profile": "vexxhost"}}})
    with pytest.raises(InvalidRequest, match="vendor profiles are not supported"):
        admin("a", env)
    path.write_text("clouds: [")
    with pytest.raises(InvalidRequest, match="is not valid YAML"):
        admin("a", env)
