"""Direct dispatch of the resource routes: it picks FastAPI's route and responds exactly as FastAPI does."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import pytest
from starlette.exceptions import HTTPException
from starlette.testclient import TestClient

from skyshift_core.api.app import ApiSettings, create_app
from skyshift_core.api.fast_routes import SkyShiftApi
from skyshift_core.auth.bootstrap import bootstrap_admin_token, run_sync
from skyshift_core.auth.service import AuthSettings
import skyshift_core.store.etcd as etcd_store
from skyshift_core.store import Store

JOBS = "/api/v1/namespaces/default/jobs"

# (method, path, name of the endpoint FastAPI calls, whether the table dispatches it directly)
ROUTE_CASES = [
    ("POST", JOBS, "create_namespaced", True),
    ("GET", JOBS, "list_namespaced", True),
    ("GET", "/api/v1/jobs", "list_all", True),
    ("GET", f"{JOBS}/j1", "read_namespaced", True),
    ("PUT", f"{JOBS}/j1", "replace_namespaced", True),
    ("PATCH", f"{JOBS}/j1", "patch_namespaced", True),
    ("DELETE", f"{JOBS}/j1", "delete_namespaced", True),
    ("GET", f"{JOBS}/j1/status", "read_namespaced_status", True),
    ("PUT", f"{JOBS}/j1/status", "replace_namespaced_status", True),
    ("PATCH", f"{JOBS}/j1/status", "patch_namespaced_status", True),
    ("POST", "/api/v1/clusters", "create_cluster", True),
    ("GET", "/api/v1/clusters/c1", "read_cluster", True),
    ("DELETE", "/api/v1/clusters/c1", "delete_cluster", True),
    ("PATCH", "/api/v1/clusters/c1/status", "patch_status", True),
    # The Namespace kind is cluster-scoped and shares its first segment with namespaced paths.
    ("GET", "/api/v1/namespaces/ns1", "read_cluster", True),
    ("PUT", "/api/v1/namespaces/ns1/status", "replace_status", True),
    ("GET", "/api/v1/namespaces", "list_cluster", True),
    # Routes of other routers, and paths no route takes, stay with FastAPI.
    ("GET", f"{JOBS}/j1/logs", "job_logs", False),
    ("GET", f"{JOBS}/j1/explain", "explain_job", False),
    ("GET", "/api/v1/plugins", "plugins_endpoint", False),
    ("GET", "/api/v1", "discovery", False),
    ("GET", "/api/v1/leases/cm", "read_lease", False),
    ("POST", "/api/v1/leases/cm/acquire", "acquire_lease", False),
    ("GET", "/api/v1/whoami", "whoami", False),
    ("GET", "/api/v1/users/u1/tokens", "list_tokens", False),
    ("GET", "/api/v1/invites/i1", "read_invite", False),
    ("GET", f"{JOBS}/", None, False),
    ("HEAD", f"{JOBS}/j1", None, False),
    ("POST", f"{JOBS}/j1", None, False),
    ("GET", "/api/v1/namespaces/default/widgets/w1", None, False),
    ("GET", "/api/v2/namespaces/default/jobs", None, False),
]


def fastapi_endpoint(app: SkyShiftApi, method: str, path: str) -> str | None:
    """Route a request with FastAPI's own router and return the name of the endpoint it calls."""
    scope = {
        "type": "http", "method": method, "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "headers": [], "app": app, "state": {},
        "starlette.exception_handlers": ({}, {}),
    }  # fmt: skip

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses = []

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def route() -> None:
        try:
            await app.router(scope, receive, send)
        except HTTPException as error:  # Starlette's "no route" and "wrong method" inside an app.
            statuses.append(error.status_code)
        except Exception:  # The endpoint runs without a caller and fails, and only the choice matters.
            pass

    asyncio.run(route())
    chosen = scope.get("route")
    if chosen is None or statuses in ([404], [405]):
        return None  # No route, or one for another method: FastAPI responds 404 or 405 itself.
    return chosen.endpoint.__name__


@pytest.fixture(scope="module")
def app() -> SkyShiftApi:
    return create_app(ApiSettings())


@pytest.mark.parametrize(
    ("method", "path", "endpoint", "direct"), ROUTE_CASES, ids=[f"{m} {p}" for m, p, _, _ in ROUTE_CASES]
)
def test_route_choice_matches_fastapi(app, method, path, endpoint, direct):
    table = app._direct_table or app._build_direct()

    found = table.match(method, path)

    assert fastapi_endpoint(app, method, path) == endpoint
    assert (found is not None) == direct
    if found is not None:
        assert found[0].route.endpoint.__name__ == endpoint


def test_earlier_route_keeps_its_paths():
    # A route registered before the resource routes takes a path of their shape in FastAPI, so the
    # table must leave that path to FastAPI.
    app = create_app(ApiSettings())

    @app.get("/api/v1/namespaces/{namespace}/jobs/special")
    async def special() -> dict:
        return {}

    # Move the new route in front of the resource routes.
    app.router.routes.insert(0, app.router.routes.pop())
    table = app._build_direct()

    assert table.match("GET", f"{JOBS}/special") is None
    assert table.match("GET", f"{JOBS}/other") is not None
    assert table.match("PUT", f"{JOBS}/special") is not None


# ---- the same requests through both paths -------------------------------------------------------

# Server-set values that differ between two runs (continue tokens hold a revision), and numbers in messages.
_VOLATILE = ("uid", "creation_timestamp", "resource_version", "continue")


def normalize(value):
    if isinstance(value, dict):
        return {key: "<set>" if key in _VOLATILE else normalize(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalize(item) for item in value]
    if isinstance(value, str):
        return re.sub(r"\d+", "N", value)
    return value


def job(name: str, **spec) -> dict:
    return {"kind": "Job", "metadata": {"name": name}, "spec": {"run": "true", **spec}}


def exchange(client: TestClient, token: str) -> list[tuple]:
    """Send one fixed sequence of requests and return what came back, normalized."""
    auth = {"Authorization": f"Bearer {token}"}
    merge = {**auth, "content-type": "application/merge-patch+json"}
    responses = [
        client.post(JOBS, json=job("j1"), headers=auth),
        client.post(JOBS, json=job("j1"), headers=auth),
        client.post(JOBS, content=b"kind: Job\nmetadata: {name: j2}\nspec: {run: 'true'}\n", headers={**auth, "content-type": "application/yaml"}),
        client.post(JOBS, content=b"{not json", headers={**auth, "content-type": "application/json"}),
        client.post(JOBS, json={"kind": "Service", "metadata": {"name": "s1"}}, headers=auth),
        client.post(JOBS, json={**job("j3"), "spec": {"runn": "true"}}, headers=auth),
        client.post("/api/v1/namespaces/missing/jobs", json=job("j4"), headers=auth),
        client.post(JOBS, json=job("j5")),
        client.post(JOBS, json=job("j5"), headers={"Authorization": "Bearer not-a-token"}),
        client.post(JOBS, json=job("j6"), headers={**auth, "X-SkyShift-Fence": "bad header"}),
        client.get(f"{JOBS}/j1", headers=auth),
        client.get(f"{JOBS}/nope", headers=auth),
        client.put(f"{JOBS}/j1", json={**job("j1", run="echo 2"), "metadata": {"name": "j1", "resource_version": "1"}}, headers=auth),
        client.put(f"{JOBS}/j1", json=job("j1", run="echo 3"), headers=auth),
        client.put(f"{JOBS}/j1", json=job("other"), headers=auth),
        client.put(f"{JOBS}/j1/status", json={**job("j1"), "status": {"placement": {"c1": 1}}}, headers=auth),
        client.patch(f"{JOBS}/j1", content=b'{"spec": {"replicas": 2}}', headers=merge),
        client.patch(f"{JOBS}/j1", content=b'[{"op": "replace", "path": "/spec/run", "value": "echo 4"}]', headers={**auth, "content-type": "application/json-patch+json"}),
        client.patch(f"{JOBS}/j1/status", content=b'{"status": {"phase": "Running"}}', headers=merge),
        client.get(f"{JOBS}?limit=1", headers=auth),
        client.get("/api/v1/jobs", headers=auth),
        client.get(f"{JOBS}?label_selector=a%3D%3D%3D", headers=auth),
        client.delete(f"{JOBS}/j2", headers=auth),
        client.delete(f"{JOBS}/j2", headers=auth),
        client.post("/api/v1/clusters", json={"kind": "Cluster", "metadata": {"name": "c1"}, "spec": {"manager": "none"}}, headers=auth),
        client.get("/api/v1/clusters/c1/status", headers=auth),
        # Careless input: each is rejected, or handled, the same way on both paths.
        client.post(JOBS, json={**job("j7"), "status": {"phase": "Succeeded"}}, headers=auth),
        client.get(f"{JOBS}?limit=9223372036854775808", headers=auth),
        client.get(f"{JOBS}?fieldSelector=metadata.name%3Dj1", headers=auth),
        client.get(f"{JOBS}?field_selector=spec.run%3Dtrue", headers=auth),
        client.get(f"{JOBS}?resourceVersion=abc", headers=auth),
        client.get(f"{JOBS}/j1?resourceVersion=9999999999", headers=auth),
        client.put(f"{JOBS}/j1?resource_version=9223372036854775808", json=job("j1"), headers=auth),
        client.request("DELETE", f"{JOBS}/j1", content=b"[]", headers=auth),
        client.post(JOBS, content=b"null", headers=auth),
        client.post(JOBS, content=b"{}", headers={**auth, "content-type": "text/plain"}),
        client.patch(f"{JOBS}/j1", content=b"{}", headers={**auth, "content-type": "application/xml"}),
        client.put(f"{JOBS}/j1", json={"kind": "Service", "metadata": {"name": "j1"}}, headers=auth),
    ]  # fmt: skip
    results = []
    for response in responses:
        try:
            body = normalize(response.json())
        except ValueError:
            body = response.text
        headers = {name: response.headers.get(name) for name in ("content-type", "www-authenticate", "content-length")}
        if isinstance(body, dict):
            headers.pop("content-length")  # Lengths follow the volatile values.
        results.append((response.request.method, response.request.url.path, response.status_code, headers, body))
    return results


def run_app(etcd_endpoint: str, audit_log: Path, direct: bool) -> tuple[list[tuple], list[dict], str]:
    root = f"/skyshift-test-{uuid.uuid4().hex[:12]}"

    async def bootstrap() -> str:
        store = Store([etcd_endpoint], root=root)
        try:
            return await bootstrap_admin_token(store)
        finally:
            await store.close()

    token = run_sync(bootstrap)
    settings = ApiSettings(etcd_endpoints=[etcd_endpoint], etcd_root=root, auth=AuthSettings(audit_log=str(audit_log)))
    app = create_app(settings)
    app.direct_dispatch = direct
    with TestClient(app) as client:
        results = exchange(client, token)
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).text
    entries = []
    for line in audit_log.read_text().splitlines():
        entry = json.loads(line)
        for key in ("time", "request_id", "duration_ms", "token_id"):
            entry.pop(key)
        entries.append(normalize(entry))
    requests = sorted(line.split(" ")[0] for line in metrics.splitlines() if line.startswith("skyshift_apiserver_requests_total{"))
    return results, entries, "\n".join(requests)


@pytest.fixture(scope="module")
def both_paths(etcd_server, tmp_path_factory):
    directory = tmp_path_factory.mktemp("audit")
    with pytest.MonkeyPatch.context() as patch:
        # The GET with a resource_version far ahead of etcd then gives up after 0.2 s, not 3 s.
        patch.setattr(etcd_store, "RESOURCE_VERSION_WAIT", 0.2)
        direct = run_app(etcd_server.endpoint, directory / "direct.log", direct=True)
        through_fastapi = run_app(etcd_server.endpoint, directory / "fastapi.log", direct=False)
    return direct, through_fastapi


def test_responses_same_through_both_paths(both_paths):
    direct, through_fastapi = both_paths

    for answer, expected in zip(direct[0], through_fastapi[0], strict=True):
        assert answer == expected


def outcome(body) -> object:
    """Sum up a response body: a Status's reason, a list's item names, or an object's status phase."""
    if body.get("kind") == "Status":
        return body["reason"]
    if "items" in body:
        return [item["metadata"]["name"] for item in body["items"]]
    return body["status"]["phase"]


def test_careless_input_on_direct_path(both_paths):
    direct, _ = both_paths
    # The last requests of `exchange`, in order; `normalize` has turned digits into N.
    expected = [
        (201, "Pending"),  # The submitted status is dropped.
        (400, "BadRequest"),  # limit above int64
        (200, ["jN"]),  # fieldSelector=metadata.name=j1, one Job of several
        (400, "BadRequest"),  # field_selector on an unsupported field
        (400, "BadRequest"),  # resourceVersion=abc
        (504, "Timeout"),  # resourceVersion ahead of etcd
        (400, "BadRequest"),  # resource_version precondition above int64
        (400, "BadRequest"),  # delete options that are a list
        (400, "BadRequest"),  # a body of null
        (415, "UnsupportedMediaType"),  # POST as text/plain
        (415, "UnsupportedMediaType"),  # PATCH as application/xml
        (400, "BadRequest"),  # PUT of another kind
    ]

    answers = [(code, outcome(body)) for _, _, code, _, body in direct[0][-len(expected) :]]

    assert answers == expected


def test_audit_entries_same_through_both_paths(both_paths):
    direct, through_fastapi = both_paths

    assert direct[1] == through_fastapi[1]
    assert len(direct[1]) >= 20


def test_metrics_labels_same_through_both_paths(both_paths):
    direct, through_fastapi = both_paths

    assert direct[2] == through_fastapi[2]
    assert 'route="/api/v1/namespaces/{namespace}/jobs"' in direct[2]
