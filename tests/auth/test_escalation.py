"""Privilege escalation attempts: a user who may write Roles, invites, passwords or tokens must still
never obtain, or hand out, a permission they do not hold."""

from __future__ import annotations

import httpx
import pytest
from auth_helpers import MERGE, create_role, create_user, set_password

# May write Roles, create invites and act on other users' credentials, but otherwise only read jobs.
ROLE_MANAGER_RULES = [
    {"verbs": ["*"], "resources": ["roles"]},
    {"verbs": ["create"], "resources": ["invites"]},
    {"verbs": ["*"], "resources": ["users/password", "users/tokens"]},
    {"verbs": ["get", "list", "watch"], "resources": ["jobs"]},
]


@pytest.fixture
def manager(api, user_client) -> httpx.Client:
    create_role(api, "role-manager", ROLE_MANAGER_RULES)
    return user_client("mallory", "role-manager")


def test_create_role_beyond_own_rights(manager):
    body = {
        "kind": "Role",
        "metadata": {"name": "everything"},
        "spec": {"rules": [{"verbs": ["*"], "resources": ["*"]}]},
    }

    response = manager.post("/api/v1/roles", json=body)

    assert response.status_code == 403
    assert "would grant permissions the user does not hold" in response.json()["message"]


def test_create_role_within_own_rights(api, manager):
    create_user(api, "someone")
    rules = [{"verbs": ["get", "list"], "resources": ["jobs"], "namespaces": ["dev"]}]
    body = {"kind": "Role", "metadata": {"name": "reader"}, "spec": {"rules": rules, "users": ["someone"]}}

    response = manager.post("/api/v1/roles", json=body)

    assert response.status_code == 201, response.text


def test_bind_self_to_admin_by_update(api, manager):
    admin_role = manager.get("/api/v1/roles/admin").json()
    admin_role["spec"]["users"].append("mallory")

    response = manager.put("/api/v1/roles/admin", json=admin_role)

    assert response.status_code == 403
    assert "mallory" not in api.get("/api/v1/roles/admin").json()["spec"]["users"]


@pytest.mark.parametrize(
    "patch",
    [
        {"spec": {"users": ["admin", "mallory"]}},
        {"metadata": {"labels": {"x": "y"}}, "spec": {"users": ["admin", "mallory"]}},
    ],
    ids=["bind-self", "bind-self-with-label"],
)
def test_patch_admin_role_to_bind_self(api, manager, patch):
    response = manager.patch("/api/v1/roles/admin", json=patch, headers=MERGE)

    assert response.status_code == 403
    assert "mallory" not in api.get("/api/v1/roles/admin").json()["spec"]["users"]


def test_widen_own_role(api, manager):
    create_role(api, "small", [{"verbs": ["get"], "resources": ["jobs"]}], users=["mallory"])
    widen = {"spec": {"rules": [{"verbs": ["*"], "resources": ["*"]}]}}

    response = manager.patch("/api/v1/roles/small", json=widen, headers=MERGE)

    assert response.status_code == 403
    rules = api.get("/api/v1/roles/small").json()["spec"]["rules"]
    assert rules == [{"verbs": ["get"], "resources": ["jobs"], "namespaces": ["*"]}]


def test_json_patch_role_to_escalate(manager):
    patch = [{"op": "add", "path": "/spec/users/-", "value": "mallory"}]

    response = manager.patch("/api/v1/roles/admin", json=patch, headers={"content-type": "application/json-patch+json"})

    assert response.status_code == 403


def test_unbinding_others_needs_no_extra_rights(api, manager):
    create_user(api, "someone-else")
    viewer = api.get("/api/v1/roles/viewer").json()
    viewer["spec"]["users"] = ["someone-else"]
    assert api.put("/api/v1/roles/viewer", json=viewer).status_code == 200

    current = manager.get("/api/v1/roles/viewer").json()
    current["spec"]["users"] = []
    response = manager.put("/api/v1/roles/viewer", json=current)

    assert response.status_code == 200, response.text


def test_invite_with_admin_role(manager):
    response = manager.post("/api/v1/invites", json={"roles": ["admin"]})

    assert response.status_code == 403


def test_take_over_admin_by_password(api, manager, anonymous_api):
    create_user(api, "root", ("admin",))
    set_password(api, "root", "the admin password")

    response = manager.put("/api/v1/users/root/password", json={"password": "mallory was here"})

    assert response.status_code == 403
    login = anonymous_api.post("/api/v1/login", json={"username": "root", "password": "the admin password"})
    assert login.status_code == 200


def test_take_over_admin_by_service_token(manager):
    response = manager.post("/api/v1/users/admin/tokens", json={"description": "mine now"})

    assert response.status_code == 403


def test_list_tokens_of_stronger_user_needs_only_list(api, user_client):
    # Listing shows ids, descriptions and expiry, never a secret, so it hands out nothing.
    created = api.post("/api/v1/users/admin/tokens", json={"description": "ops"}).json()
    create_role(api, "token-auditor", [{"verbs": ["list"], "resources": ["users/tokens"]}])
    auditor = user_client("audrey", "token-auditor")

    listed = auditor.get("/api/v1/users/admin/tokens")

    assert listed.status_code == 200, listed.text
    assert created["id"] in [item["id"] for item in listed.json()["items"]]
    assert "token" not in listed.json()["items"][0]


def test_act_for_weaker_user_allowed(api, manager, user_client):
    create_role(api, "jobs-reader", [{"verbs": ["get"], "resources": ["jobs"]}])
    user_client("weak", "jobs-reader")

    password = manager.put("/api/v1/users/weak/password", json={"password": "a new password"})
    token = manager.post("/api/v1/users/weak/tokens", json={"description": "automation"})

    assert password.status_code == 200, password.text
    assert token.status_code == 201, token.text


def test_revoke_other_users_token_needs_right(api, user_client):
    created = api.post("/api/v1/users/admin/tokens", json={"description": "ops"}).json()
    viewer = user_client("victor", "viewer")

    response = viewer.delete(f"/api/v1/users/admin/tokens/{created['id']}")

    assert response.status_code == 403
    assert created["id"] in [item["id"] for item in api.get("/api/v1/users/admin/tokens").json()["items"]]
