"""schemathesis over the server's whole OpenAPI document (stateless, bounded examples), anonymously and with the
restricted token: no generated request may get a response of 500 or more."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from servers import Server, bearer

#: examples per operation: the restricted caller sees every collection (about 95 operations), the anonymous one ~30
EXAMPLES = {None: 6, "tester": 4}


#: the methods that write features: generated on the edits server of tests/test_serve_edits.py, whose database is its own
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def server_errors(url: str, headers: dict[str, str], examples: int,
                  select: Callable[[Any], bool]) -> tuple[int, list[tuple[str, int, str, str]]]:
    """Generated requests for the selected operations of the server's OpenAPI document: the operations, and the
    responses of 500 or more."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi?f=json", headers=headers)
    operations = [op for op in (result.ok() for result in schema.get_all_operations()) if select(op)]
    failures: list[tuple[str, int, str, str]] = []
    calls = 0
    for operation in operations:
        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def call(case: schemathesis.Case) -> None:
            nonlocal calls
            calls += 1
            response = case.call(base_url=url, headers=headers, timeout=60)
            if response.status_code >= 500:
                failures.append((operation.label, response.status_code, response.request.url[:300], response.text[:300]))

        call()
    assert calls >= len(operations)
    return len(operations), failures


def is_feature_write(operation: Any) -> bool:
    return operation.method.upper() in WRITES and "/items" in operation.path and not operation.path.endswith("/review")


@pytest.mark.parametrize("caller", list(EXAMPLES))
def test_no_generated_request_gets_a_server_error(served: Server, caller: str | None) -> None:
    operations, failures = server_errors(served.url, bearer(caller), EXAMPLES[caller],
                                         lambda operation: not is_feature_write(operation))
    assert operations > (60 if caller else 20)
    assert failures == []
