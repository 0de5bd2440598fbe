"""Fuzz every operation of the OpenAPI document with schemathesis, as the administrator and without a
token, against a real API server: no request may get a 5xx response.

The number of examples per operation is small (FUZZ_EXAMPLES), so the whole run takes about 15 s on a
2-core machine. Set SKYSHIFT_FUZZ_EXAMPLES to run more.
"""

from __future__ import annotations

import os

import pytest
import requests
import schemathesis
from auth_helpers import bearer
from hypothesis import HealthCheck, Phase, given, settings

FUZZ_EXAMPLES = int(os.environ.get("SKYSHIFT_FUZZ_EXAMPLES", "10"))


@pytest.mark.slow
def test_fuzz_no_server_errors(api, api_server: str):
    schema = schemathesis.openapi.from_dict(api.get("/openapi.json").json())
    session = requests.Session()
    # A service token, which a fuzzed password change cannot revoke.
    service_token = api.post("/api/v1/users/admin/tokens", json={"description": "fuzz"}).json()["token"]
    callers = {"admin": bearer(service_token), "anonymous": {}}
    failures: list[str] = []
    operations = 0

    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case) -> None:
            for caller, headers in callers.items():
                if caller == "admin" and case.path == "/api/v1/logout":
                    # Logging out revokes the token it carries, so it gets a token of its own.
                    headers = bearer(api.post("/api/v1/users/admin/tokens", json={}).json()["token"])
                response = case.call(base_url=api_server, session=session, headers=headers, timeout=30)
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} as {caller}: {response.status_code} {response.text[:300]}"
                    )

        fuzz()

    session.close()
    assert operations > 100
    assert failures == []
