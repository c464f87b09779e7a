"""schemathesis over the server's whole OpenAPI document (stateless, bounded examples), anonymously and with the
restricted token: no generated request may get a response of 500 or more."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from servers import Server, bearer

#: examples per operation: the restricted caller sees every collection (about 95 operations), the anonymous one ~30
EXAMPLES = {None: 6, "tester": 4}


@pytest.mark.parametrize("caller", list(EXAMPLES))
def test_no_generated_request_gets_a_server_error(served: Server, caller: str | None) -> None:
    headers = bearer(caller)
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi?f=json", headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > (60 if caller else 20)
    failures: list[tuple[str, int, str, str]] = []
    calls = 0
    for operation in operations:
        @settings(max_examples=EXAMPLES[caller], deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def call(case: schemathesis.Case) -> None:
            nonlocal calls
            calls += 1
            response = case.call(base_url=served.url, headers=headers, timeout=60)
            if response.status_code >= 500:
                failures.append((operation.label, response.status_code, response.request.url[:300], response.text[:300]))

        call()
    assert calls >= len(operations)
    assert failures == []
