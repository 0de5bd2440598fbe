"""Authorization through the API: each user's Roles against verbs, resources and namespaces.

Every case sends one real request as that user and expects the verb's success code when its Roles
allow the request and 403 when they do not. Objects the request needs are created first by the
administrator, so a denial can only come from authorization.
"""

from __future__ import annotations

import itertools

import httpx
import pytest
from auth_helpers import MERGE, create_namespace, create_role
from manifests_minimal import MINIMAL

ALL_NAMESPACES = "*"
SUCCESS = {"get": 200, "list": 200, "watch": 200, "create": 201, "update": 200, "patch": 200, "delete": 200}
_counter = itertools.count()

# (verb, resource, namespace, allowed). Namespace None is a cluster-scoped kind; "*" lists or watches
# across all namespaces.
MATRIX: dict[str, list[tuple[str, str, str | None, bool]]] = {
    # Built-in viewer: reads workloads and clusters everywhere, writes nothing, never sees Roles or Users.
    "viewer": [
        ("get", "jobs", "team-a", True),
        ("list", "jobs", "team-a", True),
        ("watch", "jobs", "team-a", True),
        ("list", "jobs", ALL_NAMESPACES, True),
        ("watch", "jobs", ALL_NAMESPACES, True),
        ("get", "jobs/status", "team-b", True),
        ("create", "jobs", "team-a", False),
        ("update", "jobs", "team-a", False),
        ("patch", "jobs", "team-a", False),
        ("delete", "jobs", "team-a", False),
        ("update", "jobs/status", "team-a", False),
        ("get", "clusters", None, True),
        ("list", "clusters", None, True),
        ("create", "clusters", None, False),
        ("delete", "clusters", None, False),
        ("list", "roles", None, False),
        ("get", "users", None, False),
    ],
    # Built-in editor: writes workloads, but not their status, clusters, FilterPolicies, Roles or Users.
    "editor": [
        ("create", "jobs", "team-b", True),
        ("get", "filterpolicies", "team-a", True),
        ("create", "filterpolicies", "team-a", False),
        ("delete", "filterpolicies", "team-a", False),
        ("get", "jobs", "team-b", True),
        ("update", "jobs", "team-b", True),
        ("patch", "jobs", "team-a", True),
        ("delete", "jobs", "team-a", True),
        ("list", "jobs", ALL_NAMESPACES, True),
        ("patch", "jobs/status", "team-a", False),
        ("get", "clusters", None, True),
        ("create", "clusters", None, False),
        ("patch", "clusters", None, False),
        ("list", "roles", None, False),
        ("create", "roles", None, False),
        ("list", "users", None, False),
    ],
    # A Role limited to one namespace: every verb on jobs and their subresources in team-a only.
    "team-a-member": [
        ("create", "jobs", "team-a", True),
        ("get", "jobs", "team-a", True),
        ("list", "jobs", "team-a", True),
        ("watch", "jobs", "team-a", True),
        ("update", "jobs", "team-a", True),
        ("patch", "jobs", "team-a", True),
        ("delete", "jobs", "team-a", True),
        ("update", "jobs/status", "team-a", True),
        ("get", "jobs", "team-b", False),
        ("create", "jobs", "team-b", False),
        ("delete", "jobs", "team-b", False),
        ("list", "jobs", ALL_NAMESPACES, False),
        ("watch", "jobs", ALL_NAMESPACES, False),
        ("list", "clusters", None, False),
    ],
    # A Role on one subresource only: job status, in every namespace.
    "status-writer": [
        ("get", "jobs/status", "team-b", True),
        ("update", "jobs/status", "team-b", True),
        ("patch", "jobs/status", "team-a", True),
        ("get", "jobs", "team-b", False),
        ("patch", "jobs", "team-a", False),
        ("update", "clusters/status", None, False),
    ],
    # No Role at all.
    "nobody": [
        ("get", "jobs", "team-a", False),
        ("list", "jobs", "team-a", False),
        ("watch", "jobs", "team-a", False),
        ("create", "jobs", "team-a", False),
        ("list", "clusters", None, False),
        ("list", "roles", None, False),
        ("list", "users", None, False),
    ],
    # Built-in admin: everything.
    "admin": [
        ("delete", "clusters", None, True),
        ("create", "roles", None, True),
        ("patch", "roles", None, True),
        ("list", "users", None, True),
        ("delete", "users", None, True),
        ("watch", "jobs", ALL_NAMESPACES, True),
        ("update", "clusters/status", None, True),
    ],
}

ROLES = {
    "viewer": ("viewer",),
    "editor": ("editor",),
    "team-a-member": ("team-a-jobs",),
    "status-writer": ("status-writer",),
    "nobody": (),
}


def manifest(kind: str, name: str) -> dict:
    if kind == "jobs":
        return {"kind": "Job", "metadata": {"name": name}, "spec": {"run": "true"}}
    if kind == "clusters":
        return {**MINIMAL["Cluster"], "metadata": {"name": name}}
    if kind == "roles":
        return {"kind": "Role", "metadata": {"name": name}, "spec": {"rules": []}}
    if kind == "filterpolicies":
        return {**MINIMAL["FilterPolicy"], "metadata": {"name": name}}
    return {"kind": "User", "metadata": {"name": name}}


def collection(kind: str, namespace: str | None) -> str:
    if namespace == ALL_NAMESPACES:
        return f"/api/v1/{kind}"
    if namespace is None:
        return f"/api/v1/{kind}"
    return f"/api/v1/namespaces/{namespace}/{kind}"


def send(admin: httpx.Client, client: httpx.Client, verb: str, resource: str, namespace: str | None) -> int:
    """Prepare what the request needs as the administrator, send it as `client` and return its status code."""
    kind, _, subresource = resource.partition("/")
    name = f"obj-{next(_counter)}"
    base = collection(kind, namespace)
    if verb in ("list", "watch"):
        if verb == "list":
            return client.get(base).status_code
        with client.stream("GET", base, params={"watch": "true", "timeout_seconds": "1"}) as response:
            return response.status_code
    if verb == "create":
        return client.post(base, json=manifest(kind, name)).status_code

    created = admin.post(base, json=manifest(kind, name))
    assert created.status_code == 201, created.text
    path = f"{base}/{name}" + (f"/{subresource}" if subresource else "")
    if verb == "get":
        return client.get(path).status_code
    if verb == "update":
        return client.put(path, json=created.json()).status_code
    if verb == "patch":
        patch = {"status": {"phase": "Running"}} if subresource else {"metadata": {"labels": {"patched": "yes"}}}
        if kind == "clusters" and subresource:
            patch = {"status": {"phase": "READY"}}
        return client.patch(path, json=patch, headers=MERGE).status_code
    return client.delete(path).status_code


@pytest.fixture
def clients(api, user_client) -> dict[str, httpx.Client]:
    create_namespace(api, "team-a")
    create_namespace(api, "team-b")
    create_role(api, "team-a-jobs", [{"verbs": ["*"], "resources": ["jobs", "jobs/*"], "namespaces": ["team-a"]}])
    create_role(api, "status-writer", [{"verbs": ["get", "update", "patch"], "resources": ["jobs/status"]}])
    built = {user: user_client(user, *roles) for user, roles in ROLES.items()}
    built["admin"] = api
    return built


@pytest.mark.parametrize("user", sorted(MATRIX))
def test_rbac_matrix(user: str, api, clients):
    mismatches = []
    for verb, resource, namespace, allowed in MATRIX[user]:
        code = send(api, clients[user], verb, resource, namespace)
        expected = SUCCESS[verb] if allowed else 403
        if code != expected:
            where = "all namespaces" if namespace == ALL_NAMESPACES else namespace or "cluster-scoped"
            mismatches.append(f"{verb} {resource} in {where}: expected {expected}, got {code}")
    assert mismatches == [], f"user {user}: " + "; ".join(mismatches)


def test_forbidden_message_names_request(clients):
    response = clients["viewer"].post("/api/v1/namespaces/team-a/jobs", json=manifest("jobs", "x"))

    assert response.status_code == 403
    body = response.json()
    assert body["reason"] == "Forbidden"
    assert "user 'viewer' may not create jobs in namespace 'team-a'" in body["message"]
    assert "skyshift role bind" in body["message"]


def test_denied_before_body_validation(clients):
    # The body is invalid, but a user without the right must learn nothing about validation.
    response = clients["viewer"].post("/api/v1/namespaces/team-a/jobs", content=b"not json")

    assert response.status_code == 403


def test_unbinding_takes_effect_at_once(api, clients):
    viewer = clients["viewer"]
    assert viewer.get("/api/v1/namespaces/team-a/jobs").status_code == 200

    role = api.get("/api/v1/roles/viewer").json()
    role["spec"]["users"].remove("viewer")
    assert api.put("/api/v1/roles/viewer", json=role).status_code == 200

    assert viewer.get("/api/v1/namespaces/team-a/jobs").status_code == 403
