"""Fuzz a live site's OpenAPI (schemathesis): no request may get a 5xx or hang the site."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from ferry.block.embedded import EmbeddedCluster
from tests.api.conftest import Site, start_site

# Bounded for CI: a few examples per operation, each call with a timeout (a hang fails).
EXAMPLES = 12
CALL_TIMEOUT = 20


@pytest.fixture(scope="module")
def fuzzed_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("fuzz")
    EmbeddedCluster.init(tmp / "default_backend", "default_backend")
    yield from start_site(tmp, {"default_backend": str(tmp / "default_backend")})


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_gets_a_server_error(fuzzed_site: Site, mode: GenerationMode) -> None:
    """Valid and invalid requests to every operation; each call is bounded by a timeout."""
    api = schemathesis.openapi.from_url(f"{fuzzed_site.url}/openapi.json")
    failures: list[str] = []
    for found in api.get_all_operations():
        operation = found.ok()

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(operation.as_strategy(generation_mode=mode))
        def call(case: schemathesis.Case) -> None:
            response = case.call(base_url=fuzzed_site.url, timeout=CALL_TIMEOUT)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")
                raise AssertionError(failures[-1])

        try:
            call()
        except AssertionError:
            pass  # recorded; go on to the other operations
        except Unsatisfiable:
            pass  # nothing in this operation can be made invalid (no parameters, no body)
    assert not failures, "\n".join(failures)
