"""Error responses of the API server: failed JSON patches, routing's 404 and 405, and /readyz without etcd."""

from __future__ import annotations

import httpx
import pytest

from skyshift_core.api.app import READINESS_TIMEOUT, ApiSettings
from skyshift_core.api.server import ServerThread
from skyshift_core.auth.service import AuthSettings
from skyshift_core.local.etcd import EtcdProcess
from skyshift_core.local.processes import free_port

JSON_PATCH = {"content-type": "application/json-patch+json"}
JOBS = "/api/v1/namespaces/default/jobs"
JOB = f"{JOBS}/patched"


def create_job(api: httpx.Client) -> dict:
    body = {"kind": "Job", "metadata": {"name": "patched"}, "spec": {"run": "true", "ports": [80, 443]}}
    response = api.post(JOBS, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def patch_failure_message(operation: str, problem: str) -> str:
    return f"JSON patch operation {operation} failed: {problem}; the object was not changed"


# Each case: the operations, then the expected message. The job has spec.ports [80, 443] and
# spec.run "true", and its spec has no member named x or nope.
PATCH_FAILURES = [
    pytest.param(
        [{"op": "move", "from": "/spec/x", "path": "/spec/y"}],
        patch_failure_message('0 (op "move", from "/spec/x", path "/spec/y")', "from /spec/x: /spec/x does not exist"),
        id="move-from-missing",
    ),
    pytest.param(
        [{"op": "copy", "from": "/spec/nope", "path": "/spec/y"}],
        patch_failure_message(
            '0 (op "copy", from "/spec/nope", path "/spec/y")',
            "from /spec/nope: /spec/nope does not exist",
        ),
        id="copy-from-missing",
    ),
    pytest.param(
        [{"op": "replace", "path": "/spec/ports/7", "value": 1}],
        patch_failure_message(
            '0 (op "replace", path "/spec/ports/7")',
            "path /spec/ports/7: index 7 is out of range for a list of 2 items",
        ),
        id="replace-index-out-of-range",
    ),
    pytest.param(
        [{"op": "replace", "path": "/spec/nope/x", "value": 1}],
        patch_failure_message('0 (op "replace", path "/spec/nope/x")', "path /spec/nope/x: /spec/nope does not exist"),
        id="replace-below-missing-member",
    ),
    pytest.param(
        [{"op": "add", "path": "/spec/ports/3", "value": 8080}],
        patch_failure_message(
            '0 (op "add", path "/spec/ports/3")',
            "path /spec/ports/3: index 3 is out of range for a list of 2 items; add accepts 0 to 2, or - to append",
        ),
        id="add-index-out-of-range",
    ),
    pytest.param(
        [{"op": "add", "path": "/spec/run/x", "value": 1}],
        patch_failure_message(
            '0 (op "add", path "/spec/run/x")',
            "path /spec/run/x: /spec/run is a string, not an object or a list, so it has no member 'x'",
        ),
        id="add-below-string",
    ),
    pytest.param(
        [{"op": "move", "from": "/spec", "path": "/spec/x"}],
        patch_failure_message(
            '0 (op "move", from "/spec", path "/spec/x")',
            "path /spec/x is inside from /spec, and a value cannot be moved into itself",
        ),
        id="move-into-own-child",
    ),
    pytest.param(
        [{"op": "test", "path": "/spec/run", "value": "false"}],
        patch_failure_message(
            '0 (op "test", path "/spec/run")',
            "the value at /spec/run does not equal the tested value",
        ),
        id="test-mismatch",
    ),
    pytest.param(
        [{"op": "add", "path": "/spec/replicas"}],
        patch_failure_message(
            '0 (op "add", path "/spec/replicas")',
            "the value member is missing; add needs path, value",
        ),
        id="add-without-value",
    ),
    pytest.param(
        [
            {"op": "add", "path": "/metadata/labels/a", "value": "b"},
            {"op": "upsert", "path": "/spec/replicas", "value": 2},
        ],
        patch_failure_message(
            '1 (op "upsert", path "/spec/replicas")',
            "the op member \"upsert\" is unknown; use one of add, remove, replace, move, copy, test",
        ),
        id="unknown-op-second",
    ),
    pytest.param(
        [{"op": "add", "path": "/metadata/labels/a", "value": "b"}, {"op": "remove", "path": "/spec/nope"}],
        patch_failure_message('1 (op "remove", path "/spec/nope")', "path /spec/nope: /spec/nope does not exist"),
        id="remove-missing-second",
    ),
]


@pytest.mark.parametrize(("operations", "message"), PATCH_FAILURES)
def test_json_patch_failure_names_operation(api, operations, message):
    created = create_job(api)

    response = api.patch(JOB, json=operations, headers=JSON_PATCH)

    assert response.status_code == 422
    body = response.json()
    assert body["kind"] == "Status"
    assert body["reason"] == "Invalid"
    assert body["message"] == message
    # No operation of a failed patch is stored, including those before the failing one.
    current = api.get(JOB).json()
    assert current["metadata"]["resource_version"] == created["metadata"]["resource_version"]
    assert current["metadata"]["labels"] == {}


def test_json_patch_failure_omits_document(api):
    create_job(api)

    response = api.patch(JOB, json=[{"op": "replace", "path": "/spec/nope/x", "value": 1}], headers=JSON_PATCH)

    assert response.status_code == 422
    message = response.json()["message"]
    # Values and member names of the stored spec, which jsonpatch's own message would contain.
    assert "ubuntu:latest" not in message
    assert "restart_policy" not in message
    assert "{" not in message


@pytest.mark.parametrize("path", ["/api/v1/nosuch", "/api/v1/namespaces/default/nosuch/x", "/nosuch"])
def test_unknown_path_is_status_404(api, path):
    response = api.get(path)

    assert response.status_code == 404
    body = response.json()
    assert body["kind"] == "Status"
    assert body["status"] == "Failure"
    assert body["code"] == 404
    assert body["reason"] == "NotFound"
    assert body["message"] == f"path {path} not found on this API server; GET /api/v1 lists the resources it serves"


# Each case: the method, the path, then the methods its routes accept.
METHOD_NOT_ALLOWED = [
    pytest.param("PUT", JOBS, ["GET", "POST"], id="put-collection"),
    pytest.param("POST", f"{JOBS}/x", ["GET", "PUT", "PATCH", "DELETE"], id="post-item"),
    pytest.param("DELETE", "/api/v1", ["GET"], id="delete-discovery"),
]


@pytest.mark.parametrize(("method", "path", "allowed"), METHOD_NOT_ALLOWED)
def test_wrong_method_is_status_405(api, method, path, allowed):
    response = api.request(method, path)

    assert response.status_code == 405
    assert response.headers["allow"] == ", ".join(allowed)
    body = response.json()
    assert body["kind"] == "Status"
    assert body["code"] == 405
    assert body["reason"] == "MethodNotAllowed"
    assert body["message"] == f"method {method} is not allowed on {path}; allowed methods: {', '.join(allowed)}"


def test_unknown_path_without_token_is_401(anonymous_api):
    response = anonymous_api.get("/api/v1/nosuch")

    assert response.status_code == 401
    assert response.json()["reason"] == "Unauthorized"
    assert response.headers["www-authenticate"] == 'Bearer realm="skyshift"'


def test_readyz_ok_without_token(anonymous_api):
    response = anonymous_api.get("/readyz")

    assert response.status_code == 200
    assert response.text == "ok"
    assert response.headers["content-type"].startswith("text/plain")


@pytest.fixture
def server_without_etcd(tmp_path):
    """An API server whose own etcd has stopped after the server started."""
    etcd = EtcdProcess(data_dir=tmp_path / "etcd").start()
    try:
        settings = ApiSettings(etcd_endpoints=[etcd.endpoint], auth=AuthSettings(audit_log=str(tmp_path / "audit.log")))
        server = ServerThread(settings, free_port()).start()
    finally:
        etcd.stop()
    try:
        yield server.url, etcd.endpoint
    finally:
        server.stop()


def test_readyz_without_etcd_is_status_503(server_without_etcd):
    url, endpoint = server_without_etcd

    # The client timeout is far above READINESS_TIMEOUT; the message below shows which bound ended the check.
    response = httpx.get(f"{url}/readyz", timeout=60)

    assert response.status_code == 503
    body = response.json()
    assert body["kind"] == "Status"
    assert body["code"] == 503
    assert body["reason"] == "ServiceUnavailable"
    assert body["message"] == (
        f"not ready: the readiness check of etcd at {endpoint} failed: no answer within {READINESS_TIMEOUT:g} s; "
        "check that etcd runs and that this API server can reach it"
    )


def test_malformed_login_body_is_400(anonymous_api):
    response = anonymous_api.post(
        "/api/v1/login", content=b'{"username": "admin", ', headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    body = response.json()
    assert body["reason"] == "BadRequest"
    assert body["message"].startswith("request body is not valid JSON: ")


def test_oversized_login_body_is_413(anonymous_api):
    body = b'{"username": "admin", "password": "' + b"x" * (65 * 1024) + b'"}'

    response = anonymous_api.post("/api/v1/login", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 413
    assert response.json()["reason"] == "RequestEntityTooLarge"
    assert "/api/v1/login takes at most 65536 bytes" in response.json()["message"]
