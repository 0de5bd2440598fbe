"""Watches check authentication and permission when they open, before any event is sent, and
again at every bookmark interval while they stream (1 s in the test API server)."""

from __future__ import annotations

import json
import time

import pytest
from auth_helpers import create_namespace, create_role

WATCH = {"watch": "true", "timeout_seconds": "2"}


def first_line(client, path: str) -> tuple[int, dict | None]:
    with client.stream("GET", path, params=WATCH) as response:
        for line in response.iter_lines():
            return response.status_code, json.loads(line)
        return response.status_code, None


def test_unauthenticated_watch_rejected(api, anonymous_api):
    api.post("/api/v1/namespaces/default/jobs", json={"kind": "Job", "metadata": {"name": "secret-job"}})

    with anonymous_api.stream("GET", "/api/v1/namespaces/default/jobs", params=WATCH) as response:
        body = response.read()

    assert response.status_code == 401
    assert b"secret-job" not in body


def test_watch_without_permission_rejected(api, user_client):
    create_role(api, "lister", [{"verbs": ["list"], "resources": ["jobs"]}])
    lister = user_client("lena", "lister")

    code, _ = first_line(lister, "/api/v1/namespaces/default/jobs")

    assert code == 403
    assert lister.get("/api/v1/namespaces/default/jobs").status_code == 200


def test_watch_across_namespaces_needs_every_namespace(api, user_client):
    create_namespace(api, "team-a")
    create_role(api, "team-a-watcher", [{"verbs": ["watch"], "resources": ["jobs"], "namespaces": ["team-a"]}])
    watcher = user_client("wendy", "team-a-watcher")

    across, _ = first_line(watcher, "/api/v1/jobs")
    own, _ = first_line(watcher, "/api/v1/namespaces/team-a/jobs")

    assert across == 403
    assert own == 200


def test_permitted_watch_streams_events(api, user_client):
    api.post("/api/v1/namespaces/default/jobs", json={"kind": "Job", "metadata": {"name": "visible"}})
    viewer = user_client("vera", "viewer")

    code, event = first_line(viewer, "/api/v1/namespaces/default/jobs")

    assert code == 200
    assert event["type"] == "ADDED"
    assert event["object"]["metadata"]["name"] == "visible"


def unbind(api, role: str, user: str) -> None:
    current = api.get(f"/api/v1/roles/{role}").json()
    current["spec"]["users"] = [name for name in current["spec"]["users"] if name != user]
    assert api.put(f"/api/v1/roles/{role}", json=current).status_code == 200


@pytest.mark.parametrize(
    ("revoke", "code", "message"),
    [
        (lambda api: api.delete("/api/v1/users/olga"), 401, "the bearer token is not valid"),
        (lambda api: unbind(api, "viewer", "olga"), 403, "may not watch jobs"),
    ],
    ids=["user-deleted", "role-unbound"],
)
def test_open_watch_ends_once_access_is_revoked(api, user_client, revoke, code, message):
    # As long-lived as a watch may be, it must not outlive the access that opened it.
    watcher = user_client("olga", "viewer")
    seen: list[dict] = []
    with watcher.stream("GET", "/api/v1/namespaces/default/jobs", params={"watch": "true"}) as response:
        assert response.status_code == 200
        revoke(api)
        revoked_at = time.monotonic()
        api.post("/api/v1/namespaces/default/jobs", json={"kind": "Job", "metadata": {"name": "after-revoke"}})
        for line in response.iter_lines():
            seen.append(json.loads(line))
            if seen[-1]["type"] == "ERROR":
                break
            assert time.monotonic() - revoked_at < 30, "the watch went on streaming after the access was revoked"

    error = seen[-1]
    assert error["type"] == "ERROR"
    assert error["object"]["code"] == code
    assert message in error["object"]["message"]
