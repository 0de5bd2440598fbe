"""Password hashes and token digests stay in etcd: no response of any endpoint that returns users (or
tokens, or invites) contains one."""

from __future__ import annotations

import httpx
from auth_helpers import MERGE, set_password

from skyshift_core.auth.passwords import password_path

PASSWORD = "a long password"


def responses_returning_users(api: httpx.Client, anonymous_api: httpx.Client) -> dict[str, httpx.Response]:
    """Call every endpoint that returns a User, a user's tokens or an invite; return the responses by name."""
    invite = api.post("/api/v1/invites", json={"roles": ["viewer"]}).json()
    responses = {
        "register": anonymous_api.post(
            "/api/v1/register", json={"invite": invite["invite"], "username": "bob", "password": PASSWORD}
        ),
        "login": anonymous_api.post("/api/v1/login", json={"username": "alice", "password": PASSWORD}),
        "create": api.post("/api/v1/users", json={"kind": "User", "metadata": {"name": "carol"}}),
        "list": api.get("/api/v1/users"),
        "get": api.get("/api/v1/users/alice"),
        "get-status": api.get("/api/v1/users/alice/status"),
        "patch": api.patch("/api/v1/users/alice", json={"spec": {"display_name": "Alice"}}, headers=MERGE),
        "patch-status": api.patch("/api/v1/users/alice/status", json={"status": {"note": "x"}}, headers=MERGE),
        "whoami": api.get("/api/v1/whoami"),
        "tokens": api.get("/api/v1/users/alice/tokens"),
        "create-token": api.post("/api/v1/users/alice/tokens", json={}),
        "invites": api.get("/api/v1/invites"),
        "invite": api.get(f"/api/v1/invites/{invite['id']}"),
        "roles": api.get("/api/v1/roles"),
        "set-password": api.put("/api/v1/users/alice/password", json={"password": PASSWORD}),
    }
    current = api.get("/api/v1/users/alice").json()
    responses["update"] = api.put("/api/v1/users/alice", json=current)
    responses["update-status"] = api.put("/api/v1/users/alice/status", json=current)
    with api.stream("GET", "/api/v1/users", params={"watch": "true", "timeout_seconds": "1"}) as watch:
        watch.read()
        responses["watch"] = watch
    responses["delete"] = api.delete("/api/v1/users/bob")
    return responses


async def test_no_response_contains_a_secret(api, anonymous_api, store):
    assert api.post("/api/v1/users", json={"kind": "User", "metadata": {"name": "alice"}}).status_code == 201
    set_password(api, "alice", PASSWORD)
    hashes = [(await store.get_secret(password_path("alice"))).value["hash"]]

    responses = responses_returning_users(api, anonymous_api)

    # Setting the password again during the calls stored a second hash and revoked alice's session
    # token, so her service token's digest is left.
    hashes.append((await store.get_secret(password_path("alice"))).value["hash"])
    digests = [record.value["digest"] for record in await store.list_secrets("tokens/alice")]
    assert all(stored.startswith("$argon2id$") for stored in hashes)
    assert len(digests) == 1
    for name, response in responses.items():
        assert response.status_code < 300, f"{name}: {response.status_code} {response.text}"
        body = response.text
        assert "$argon2" not in body, name
        assert '"digest"' not in body, name
        for secret in hashes + digests:
            assert secret not in body, name


def test_user_object_has_no_password_field(api):
    manifest = {"kind": "User", "metadata": {"name": "dave"}, "spec": {"password": "hunter2hunter2"}}

    response = api.post("/api/v1/users", json=manifest)

    assert response.status_code == 422
    assert "unknown field 'password'" in response.json()["message"]
