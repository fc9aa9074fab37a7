"""The session's Keystone, as tests/identity gets it (tests/identity/keystone.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.identity.keystone import Keystone, keystone_for_tests


@pytest.fixture(scope="session")
def keystone() -> Iterator[Keystone]:
    yield from keystone_for_tests()
