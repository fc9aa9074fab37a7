"""openstacksdk (what openstackclient and Nova-era tooling use) against a running ferry site."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import openstack
import pytest

from tests.api.conftest import Site

MiB = 1 << 20
# openstacksdk warns about its own deprecated internals on every connection and upload.
pytestmark = [
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning"),
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning"),
]


def connection(site: Site) -> openstack.connection.Connection:
    return openstack.connection.Connection(
        auth_type="none",
        image_endpoint_override=site.url,
        image_api_version="2",
    )


def test_sdk_upload_list_download_delete(site: Site, tmp_path: Path) -> None:
    conn = connection(site)
    data = os.urandom(3 * MiB) + bytes(5 * MiB)
    image = conn.image.create_image(
        name="sdk-image", data=data, disk_format="raw", container_format="bare",
        allow_duplicates=True, validate_checksum=False,
    )  # fmt: skip
    image = conn.image.get_image(image.id)
    assert image.status == "active"
    assert image.checksum == hashlib.md5(data).hexdigest()  # noqa: S324 - Glance's checksum
    assert image.hash_value == hashlib.sha512(data).hexdigest()
    assert image.properties["stores"] == "default_backend"
    assert image.id in [i.id for i in conn.image.images(name="sdk-image")]
    downloaded = conn.image.download_image(image)
    assert downloaded.content == data
    conn.image.update_image(image, min_ram=512, hw_qemu_guest_agent="yes", site_note="edge")
    again = conn.image.get_image(image.id)
    assert again.min_ram == 512
    assert again.hw_qemu_guest_agent == "yes"
    assert again.properties["site_note"] == "edge"
    conn.image.delete_image(image)
    with pytest.raises(openstack.exceptions.NotFoundException, match="No image found"):
        conn.image.get_image(image.id)
