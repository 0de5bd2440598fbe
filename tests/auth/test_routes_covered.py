"""Every route of the API server requires a token, and every route but a few self-service ones
requires a Role: checked over the whole OpenAPI document, so a new route without a check fails here."""

from __future__ import annotations

import re

import pytest
from auth_helpers import create_user

# Served without a token: health checks, and the routes whose body carries the credential.
NO_TOKEN = {
    ("GET", "/healthz"),
    ("GET", "/livez"),
    ("GET", "/readyz"),
    ("GET", "/version"),
    ("POST", "/api/v1/login"),
    ("POST", "/api/v1/register"),
}
# Served to any authenticated user, whatever their Roles.
ANY_USER = {
    ("GET", "/api/v1"),
    ("GET", "/api/v1/plugins"),
    ("GET", "/api/v1/whoami"),
    ("POST", "/api/v1/logout"),
}
PARAMETERS = {"namespace": "default", "name": "someone-else", "invite_id": "00ff", "token_id": "00ff"}


def operations(api) -> list[tuple[str, str]]:
    document = api.get("/openapi.json").json()
    return sorted(
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    )


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda match: PARAMETERS[match.group(1)], path)


def test_openapi_lists_the_auth_routes(api):
    listed = operations(api)

    assert ("POST", "/api/v1/login") in listed
    assert ("PUT", "/api/v1/users/{name}/password") in listed
    assert len(listed) > 100


def test_every_route_needs_a_token(api, anonymous_api):
    failures = []
    for method, path in operations(api):
        if (method, path) in NO_TOKEN:
            continue
        response = anonymous_api.request(method, concrete(path))
        if response.status_code != 401:
            failures.append(f"{method} {path}: {response.status_code}")

    assert failures == []


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/metrics", "/api/v1/no-such-route"])
def test_other_paths_need_a_token(anonymous_api, path: str):
    assert anonymous_api.get(path).status_code == 401


def test_every_route_needs_a_role(api, client_as):
    nobody = client_as(create_user(api, "nobody"))
    failures = []
    for method, path in operations(api):
        if (method, path) in NO_TOKEN or (method, path) in ANY_USER:
            continue
        response = nobody.request(method, concrete(path))
        if response.status_code != 403:
            failures.append(f"{method} {path}: {response.status_code} {response.text[:100]}")

    assert failures == []


def test_metrics_need_a_role(api, client_as):
    nobody = client_as(create_user(api, "nobody"))

    assert nobody.get("/metrics").status_code == 403
    assert api.get("/metrics").status_code == 200
