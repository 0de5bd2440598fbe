"""Login, logout, whoami, service tokens, expiry and revocation against a real API server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from auth_helpers import create_user, set_password

from skyshift_core.auth.tokens import SESSION, issue_token, token_path
from skyshift_core.objects.meta import utc_now

JOBS = "/api/v1/namespaces/default/jobs"


def login(anonymous_api, username: str, password: str, **extra) -> dict:
    response = anonymous_api.post("/api/v1/login", json={"username": username, "password": password, **extra})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def alice(api) -> str:
    """User alice with the viewer Role and the password 'correct horse'."""
    create_user(api, "alice", ("viewer",))
    set_password(api, "alice", "correct horse")
    return "alice"


def test_login_returns_working_session_token(anonymous_api, client_as, alice):
    result = login(anonymous_api, alice, "correct horse")

    assert result["kind"] == "Token"
    assert result["type"] == "session"
    assert result["token"].startswith("sks_alice.")
    assert result["user"] == "alice"
    assert result["expires_at"] is not None
    assert client_as(result["token"]).get(JOBS).status_code == 200


def test_login_lifetime_is_capped(anonymous_api, alice):
    too_long = anonymous_api.post(
        "/api/v1/login", json={"username": alice, "password": "correct horse", "lifetime_seconds": 10**9}
    )

    assert too_long.status_code == 422
    assert "the maximum is" in too_long.json()["message"]


@pytest.mark.parametrize(
    "username, password",
    [("alice", "wrong password"), ("nobody-here", "correct horse"), ("admin", "anything at all")],
    ids=["wrong-password", "unknown-user", "user-without-password"],
)
def test_login_failure_is_401_without_detail(anonymous_api, alice, username: str, password: str):
    response = anonymous_api.post("/api/v1/login", json={"username": username, "password": password})

    assert response.status_code == 401
    assert response.json()["message"] == "login failed: wrong user name or password"


def test_whoami_shows_user_roles_and_token(client_as, api, alice):
    token = create_user(api, "bob", ("viewer", "editor"))

    result = client_as(token).get("/api/v1/whoami").json()

    assert result["user"] == "bob"
    assert result["roles"] == ["editor", "viewer"]
    assert result["token"]["type"] == "service"
    assert result["token"]["expires_at"] is None
    # The editor Role's write rule is among the rules.
    assert any("create" in rule["verbs"] and "jobs" in rule["resources"] for rule in result["rules"])


def test_logout_revokes_the_token(anonymous_api, client_as, alice):
    client = client_as(login(anonymous_api, alice, "correct horse")["token"])

    assert client.post("/api/v1/logout").status_code == 200
    response = client.get(JOBS)

    assert response.status_code == 401
    assert "revoked" in response.json()["message"]


@pytest.mark.parametrize(
    "header, message",
    [
        (None, "authentication required"),
        ("Basic YWxpY2U6cGFzcw==", "unsupported Authorization scheme 'Basic'"),
        ("Bearer", "no token after 'Bearer'"),
        ("Bearer not-a-token", "not a SkyShift token"),
        ("Bearer sks_alice.zz.secret", "invalid id"),
        ("Bearer sks_Alice.00.secret", "invalid user"),
        ("Bearer sks_alice.0011223344556677.guessed", "is not valid"),
    ],
)
def test_bad_credentials_are_401(anonymous_api, alice, header: str | None, message: str):
    headers = {"Authorization": header} if header is not None else {}

    response = anonymous_api.get(JOBS, headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="skyshift"'
    assert message in response.json()["message"]


async def test_expired_token_is_401(store, client_as, alice):
    token, record = await issue_token(store, "alice", SESSION, 3600)
    # Move the expiry into the past, as if an hour had gone by.
    stored = await store.get_secret(token_path("alice", record.id))
    stored.value["expires_at"] = (utc_now() - timedelta(seconds=1)).isoformat()
    transaction = store.transaction()
    transaction.put_secret(token_path("alice", record.id), stored.value)
    await transaction.commit()

    response = client_as(token).get(JOBS)

    assert response.status_code == 401
    assert "expired at" in response.json()["message"]


def test_service_token_list_and_revoke(api, client_as, alice):
    created = api.post("/api/v1/users/alice/tokens", json={"description": "ci", "lifetime_seconds": 600}).json()
    client = client_as(created["token"])
    assert client.get(JOBS).status_code == 200

    listed = api.get("/api/v1/users/alice/tokens").json()["items"]
    assert created["id"] in [item["id"] for item in listed]
    assert all("digest" not in item and "token" not in item for item in listed)

    revoked = api.delete(f"/api/v1/users/alice/tokens/{created['id']}")
    assert revoked.status_code == 200
    assert client.get(JOBS).status_code == 401
    assert api.delete(f"/api/v1/users/alice/tokens/{created['id']}").status_code == 404


def test_users_manage_their_own_tokens(client_as, alice, anonymous_api):
    client = client_as(login(anonymous_api, alice, "correct horse")["token"])
    before = client.get("/api/v1/users/alice/tokens").json()["items"]

    created = client.post("/api/v1/users/alice/tokens", json={"description": "mine"})
    listed = client.get("/api/v1/users/alice/tokens")

    assert created.status_code == 201
    assert listed.status_code == 200
    assert len(listed.json()["items"]) == len(before) + 1


def test_password_change_revokes_other_sessions(anonymous_api, client_as, alice):
    first = client_as(login(anonymous_api, alice, "correct horse")["token"])
    second = client_as(login(anonymous_api, alice, "correct horse")["token"])

    changed = second.put(
        "/api/v1/users/alice/password", json={"password": "battery staple", "current_password": "correct horse"}
    )

    assert changed.status_code == 200, changed.text
    assert first.get(JOBS).status_code == 401
    assert second.get(JOBS).status_code == 200
    assert (
        anonymous_api.post("/api/v1/login", json={"username": "alice", "password": "correct horse"}).status_code == 401
    )
    login(anonymous_api, alice, "battery staple")


def test_own_password_change_needs_current_password(anonymous_api, client_as, alice):
    client = client_as(login(anonymous_api, alice, "correct horse")["token"])

    missing = client.put("/api/v1/users/alice/password", json={"password": "battery staple"})
    wrong = client.put("/api/v1/users/alice/password", json={"password": "battery staple", "current_password": "nope"})

    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert "current password" in wrong.json()["message"]


def test_short_password_rejected(api, alice):
    response = api.put("/api/v1/users/alice/password", json={"password": "short"})

    assert response.status_code == 422
    assert "expected 8 to 1024 characters, got 5" in response.json()["message"]


def test_whitespace_password_rejected(api, alice):
    response = api.put("/api/v1/users/alice/password", json={"password": " " * 12})

    assert response.status_code == 422
    assert response.json()["message"] == "invalid password: it is only whitespace; choose one with other characters too"


def test_deleted_user_loses_tokens_and_bindings(api, client_as, anonymous_api, alice):
    client = client_as(login(anonymous_api, alice, "correct horse")["token"])
    assert api.delete("/api/v1/users/alice").status_code == 200

    assert client.get(JOBS).status_code == 401
    assert "alice" not in api.get("/api/v1/roles/viewer").json()["spec"]["users"]
    # A new user with the same name inherits nothing.
    token = create_user(api, "alice")
    assert client_as(token).get(JOBS).status_code == 403
