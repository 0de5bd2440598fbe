"""Invites: registering with one, reuse, expiry, revocation, and what invites may grant."""

from __future__ import annotations

from datetime import timedelta

import pytest
from auth_helpers import bind, create_role

from skyshift_core.auth.invites import invite_path, parse_invite
from skyshift_core.errors import UnauthorizedError
from skyshift_core.objects import Role
from skyshift_core.objects.meta import utc_now

JOBS = "/api/v1/namespaces/default/jobs"


def invite(api, *roles: str, **extra) -> dict:
    response = api.post("/api/v1/invites", json={"roles": list(roles), **extra})
    assert response.status_code == 201, response.text
    return response.json()


def register(anonymous_api, code: str, username: str, password: str = "a long password"):
    return anonymous_api.post("/api/v1/register", json={"invite": code, "username": username, "password": password})


def test_register_creates_user_with_invite_roles(api, anonymous_api, client_as):
    created = invite(api, "viewer", description="for carol")

    response = register(anonymous_api, created["invite"], "carol")

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["user"]["metadata"]["name"] == "carol"
    assert "carol" in api.get("/api/v1/roles/viewer").json()["spec"]["users"]
    carol = client_as(body["token"])
    assert carol.get("/api/v1/whoami").json()["roles"] == ["viewer"]
    assert carol.get(JOBS).status_code == 200
    assert carol.post(JOBS, json={"kind": "Job", "metadata": {"name": "x"}}).status_code == 403
    login = anonymous_api.post("/api/v1/login", json={"username": "carol", "password": "a long password"})
    assert login.status_code == 200


def test_invite_is_single_use(api, anonymous_api):
    code = invite(api, "viewer")["invite"]
    assert register(anonymous_api, code, "first").status_code == 201

    again = register(anonymous_api, code, "second")

    assert again.status_code == 401
    assert "already used (by 'first'" in again.json()["message"]
    assert api.get("/api/v1/users/second").status_code == 404


async def test_expired_invite_rejected(api, anonymous_api, store):
    created = invite(api, "viewer")
    # Move the expiry into the past, as if the invite's lifetime had gone by.
    record = await store.get_secret(invite_path(created["id"]))
    record.value["expires_at"] = (utc_now() - timedelta(seconds=1)).isoformat()
    transaction = store.transaction()
    transaction.put_secret(invite_path(created["id"]), record.value)
    await transaction.commit()

    response = register(anonymous_api, created["invite"], "late")

    assert response.status_code == 401
    assert "expired at" in response.json()["message"]
    assert api.get(f"/api/v1/invites/{created['id']}").json()["state"] == "Expired"


def test_revoked_invite_rejected(api, anonymous_api):
    created = invite(api, "viewer")
    assert api.delete(f"/api/v1/invites/{created['id']}").status_code == 200

    response = register(anonymous_api, created["invite"], "dave")

    assert response.status_code == 401
    assert api.get(f"/api/v1/invites/{created['id']}").status_code == 404


def test_used_invite_cannot_be_revoked(api, anonymous_api):
    # It stays as the record of who registered with it; the user's access is what to take away.
    created = invite(api, "viewer")
    assert register(anonymous_api, created["invite"], "uma").status_code == 201

    response = api.delete(f"/api/v1/invites/{created['id']}")

    assert response.status_code == 409
    assert response.json()["message"].startswith(f"invite {created['id']} was already used, by 'uma' at ")
    assert response.json()["message"].endswith("unbind or delete the user: skyshift user delete uma")
    assert api.get(f"/api/v1/invites/{created['id']}").json()["state"] == "Used"


def test_wrong_secret_rejected(api, anonymous_api):
    created = invite(api, "viewer")
    forged = created["invite"].rsplit(".", 1)[0] + "." + "0" * 64

    response = register(anonymous_api, forged, "mallory")

    assert response.status_code == 401
    assert api.get(f"/api/v1/invites/{created['id']}").json()["state"] == "Pending"


def test_register_taken_name_keeps_invite(api, anonymous_api):
    created = invite(api, "viewer")

    response = register(anonymous_api, created["invite"], "admin")

    assert response.status_code == 409
    assert api.get(f"/api/v1/invites/{created['id']}").json()["state"] == "Pending"


def test_invite_list_hides_codes(api):
    created = invite(api, "viewer", "editor")

    listed = api.get("/api/v1/invites").json()["items"]

    (item,) = [entry for entry in listed if entry["id"] == created["id"]]
    assert item["roles"] == ["editor", "viewer"]
    assert item["created_by"] == "admin"
    assert item["state"] == "Pending"
    assert "invite" not in item
    assert "digest" not in item
    assert created["invite"] not in api.get("/api/v1/invites").text


def test_invite_for_missing_role_is_404(api):
    response = api.post("/api/v1/invites", json={"roles": ["no-such-role"]})

    assert response.status_code == 404


def test_invite_needs_permission(user_client):
    viewer = user_client("erin", "viewer")

    response = viewer.post("/api/v1/invites", json={"roles": ["viewer"]})

    assert response.status_code == 403


def test_inviter_cannot_grant_roles_beyond_own(api, user_client):
    create_role(api, "inviter", [{"verbs": ["create", "list"], "resources": ["invites"]}])
    create_role(api, "inviter-viewer", [{"verbs": ["get", "list", "watch"], "resources": ["jobs"]}])
    inviter = user_client("frank", "inviter", "inviter-viewer")

    allowed = inviter.post("/api/v1/invites", json={"roles": ["inviter-viewer"]})
    escalating = inviter.post("/api/v1/invites", json={"roles": ["editor"]})

    assert allowed.status_code == 201, allowed.text
    assert escalating.status_code == 403
    assert "would grant permissions the user does not hold" in escalating.json()["message"]


def test_invite_fails_when_inviter_lost_rights(api, anonymous_api, user_client):
    create_role(api, "inviter", [{"verbs": ["create"], "resources": ["invites"]}])
    inviter = user_client("grace", "inviter", "viewer")
    code = inviter.post("/api/v1/invites", json={"roles": ["viewer"]}).json()["invite"]
    role = api.get("/api/v1/roles/viewer").json()
    role["spec"]["users"].remove("grace")
    assert api.put("/api/v1/roles/viewer", json=role).status_code == 200

    response = register(anonymous_api, code, "heidi")

    assert response.status_code == 403
    assert "no longer holds" in response.json()["message"]


def test_parse_invite_rejects_other_strings():
    assert parse_invite("ski_00ff.secret") == "00ff"
    for text in ("", "sks_admin.00.secret", "ski_.secret", "ski_zz.secret", "ski_00ff"):
        with pytest.raises(UnauthorizedError):
            parse_invite(text)


def test_role_bound_by_invite_then_rebind_is_idempotent(api, anonymous_api):
    code = invite(api, "viewer")["invite"]
    assert register(anonymous_api, code, "ivan").status_code == 201

    bind(api, "viewer", "ivan")

    assert api.get("/api/v1/roles/viewer").json()["spec"]["users"].count("ivan") == 1


def test_binding_a_user_who_does_not_exist_rejected(api):
    # The first user to register the name would get the Role.
    create_role(api, "group-b-jobs", [{"verbs": ["*"], "resources": ["jobs"], "namespaces": ["group-b"]}])
    role = api.get("/api/v1/roles/group-b-jobs").json()
    role["spec"]["users"] = ["bobb"]

    response = api.put("/api/v1/roles/group-b-jobs", json=role)

    assert response.status_code == 422
    assert response.json()["message"].startswith(
        "invalid spec.users of Role 'group-b-jobs': no user named 'bobb'; a binding to a name that no user holds "
        "would go to the first user to register that name"
    )
    assert api.get("/api/v1/roles/group-b-jobs").json()["spec"]["users"] == []


async def test_register_gets_only_the_invite_roles(api, anonymous_api, client_as, store):
    # A binding that names a user before it exists, written by an older version or in a race with a
    # user's deletion, does not pass to the user who registers the name.
    create_role(api, "group-b-jobs", [{"verbs": ["*"], "resources": ["jobs"], "namespaces": ["group-b"]}])
    stale = await store.get(Role, None, "group-b-jobs")
    stale.spec.users = ["bobb"]
    stale.spec.namespace_users = {"group-b": ["bobb"]}
    await store.update(stale)
    code = invite(api, "viewer")["invite"]

    response = register(anonymous_api, code, "bobb")

    assert response.status_code == 201, response.text
    whoami = client_as(response.json()["token"]).get("/api/v1/whoami").json()
    assert whoami["roles"] == ["viewer"]
    assert whoami["namespace_roles"] == {}
    assert api.get("/api/v1/roles/group-b-jobs").json()["spec"]["users"] == []
    assert api.get("/api/v1/roles/group-b-jobs").json()["spec"]["namespace_users"] == {}
