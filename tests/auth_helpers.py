"""Helpers for the authentication and authorization tests in tests/auth: users with Roles, created
through an administrator's client."""

from __future__ import annotations

import httpx

MERGE = {"content-type": "application/merge-patch+json"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_namespace(api: httpx.Client, name: str) -> None:
    response = api.post("/api/v1/namespaces", json={"kind": "Namespace", "metadata": {"name": name}})
    assert response.status_code in (201, 409), response.text


def create_role(api: httpx.Client, name: str, rules: list[dict], users: list[str] | None = None) -> dict:
    body = {"kind": "Role", "metadata": {"name": name}, "spec": {"rules": rules, "users": users or []}}
    response = api.post("/api/v1/roles", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def bind(api: httpx.Client, role: str, user: str) -> None:
    current = api.get(f"/api/v1/roles/{role}").json()
    current["spec"]["users"] = sorted({*current["spec"]["users"], user})
    response = api.put(f"/api/v1/roles/{role}", json=current)
    assert response.status_code == 200, response.text


def create_user(api: httpx.Client, name: str, roles: tuple[str, ...] = ()) -> str:
    """Create a User bound to `roles` and return a service token of it, all through the admin client."""
    response = api.post("/api/v1/users", json={"kind": "User", "metadata": {"name": name}})
    assert response.status_code == 201, response.text
    for role in roles:
        bind(api, role, name)
    response = api.post(f"/api/v1/users/{name}/tokens", json={"description": "test"})
    assert response.status_code == 201, response.text
    return response.json()["token"]


def set_password(api: httpx.Client, name: str, password: str) -> None:
    response = api.put(f"/api/v1/users/{name}/password", json={"password": password})
    assert response.status_code == 200, response.text
