"""Kubernetes API conventions that controllers rely on: uid preconditions, unconditional patches
that always apply, the revision of a watch's first bookmark, and a server that stays usable after
an unexpected error."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import aetcd
import httpx
import pytest

import skyshift_core.api.resources as resources
from skyshift_core.objects import Job
from skyshift_core.store.keys import object_key

JOBS = "/api/v1/namespaces/default/jobs"
MERGE = {"content-type": "application/merge-patch+json"}


def make_job(api: httpx.Client, name: str, labels: dict | None = None) -> dict:
    body = {"kind": "Job", "metadata": {"name": name, "labels": labels or {}}, "spec": {"run": "true"}}
    response = api.post(JOBS, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def recreate(api: httpx.Client, name: str) -> tuple[str, str]:
    """Create, delete and create again the Job `name`; return the old and the new uid."""
    old = make_job(api, name)["metadata"]["uid"]
    assert api.delete(f"{JOBS}/{name}").status_code == 200
    new = make_job(api, name)["metadata"]["uid"]
    assert old != new
    return old, new


# ---- uid preconditions ---------------------------------------------------------------------------


def test_delete_stale_uid_is_409(api):
    old, new = recreate(api, "again")

    response = api.request("DELETE", f"{JOBS}/again", json={"preconditions": {"uid": old}})

    assert response.status_code == 409, response.text
    assert response.json()["message"].startswith(
        f"Precondition failed: UID in precondition: {old}, UID in object meta: {new}. Job 'default/again' is "
        "another object than the request names: the uid is wrong, or the object was deleted and created again"
    )
    assert api.get(f"{JOBS}/again").json()["metadata"]["uid"] == new


def test_delete_with_current_uid_deletes(api):
    uid = make_job(api, "current")["metadata"]["uid"]

    response = api.request("DELETE", f"{JOBS}/current", json={"preconditions": {"uid": uid}})

    assert response.status_code == 200, response.text
    assert api.get(f"{JOBS}/current").status_code == 404


def test_delete_uid_not_string_is_400(api):
    make_job(api, "numbered")

    response = api.request("DELETE", f"{JOBS}/numbered", json={"preconditions": {"uid": 7}})

    assert response.status_code == 400
    assert response.json()["message"] == (
        "preconditions.uid must be a string holding the object's metadata.uid, got a number"
    )
    assert api.get(f"{JOBS}/numbered").status_code == 200


def test_put_of_recreated_object_is_409(api):
    make_job(api, "replaced")
    stale = api.get(f"{JOBS}/replaced").json()
    api.delete(f"{JOBS}/replaced")
    fresh = make_job(api, "replaced")
    stale["metadata"]["resource_version"] = None
    stale["spec"]["run"] = "false"

    response = api.put(f"{JOBS}/replaced", json=stale)

    assert response.status_code == 409, response.text
    assert "UID in precondition: " + stale["metadata"]["uid"] in response.json()["message"]
    assert api.get(f"{JOBS}/replaced").json()["spec"]["run"] == fresh["spec"]["run"]


@pytest.mark.parametrize("subresource", ["", "/status"], ids=["object", "status"])
def test_patch_naming_another_uid_is_409(api, subresource):
    make_job(api, "patched")
    patch = {"metadata": {"uid": "00000000-0000-0000-0000-000000000000", "labels": {"a": "b"}}}

    response = api.patch(f"{JOBS}/patched{subresource}", json=patch, headers=MERGE)

    assert response.status_code == 409, response.text
    assert "UID in precondition: 00000000-0000-0000-0000-000000000000" in response.json()["message"]
    assert api.get(f"{JOBS}/patched").json()["metadata"]["labels"] == {}


def test_client_delete_with_uid(api_server, admin_token, api):
    from skyshift_core.client import SkyShiftClient
    from skyshift_core.errors import ConflictError

    old, new = recreate(api, "by-client")
    with SkyShiftClient(api_server, token=admin_token) as client:
        with pytest.raises(ConflictError, match="UID in precondition"):
            client.delete("jobs", "by-client", uid=old)
        assert client.delete("jobs", "by-client", uid=new)["metadata"]["uid"] == new


# ---- patches without a precondition ------------------------------------------------------------


def test_concurrent_label_patches_all_apply(api):
    make_job(api, "contended")

    def add_label(index: int) -> int:
        patch = {"metadata": {"labels": {f"c{index}": "x"}}}
        return api.patch(f"{JOBS}/contended", json=patch, headers=MERGE).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(add_label, range(16)))

    assert codes == [200] * 16
    labels = api.get(f"{JOBS}/contended").json()["metadata"]["labels"]
    assert labels == {f"c{index}": "x" for index in range(16)}


# ---- watch bookmarks ----------------------------------------------------------------------------


def first_events(api_server: str, api: httpx.Client, path: str) -> list[dict]:
    """Watch `path` without a resource_version and return the events up to the first bookmark."""
    events = []
    url = f"{api_server}{path}?watch=true"
    with httpx.stream("GET", url, timeout=10, headers=api.headers) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            events.append(json.loads(line))
            if events[-1]["type"] == "BOOKMARK":
                return events
    return events


def test_first_bookmark_carries_list_revision(api_server, api):
    make_job(api, "older")
    make_job(api, "newer")
    # A change elsewhere moves the revision past both Jobs.
    api.post("/api/v1/namespaces", json={"kind": "Namespace", "metadata": {"name": "elsewhere"}})
    listed = int(api.get(JOBS).json()["metadata"]["resource_version"])

    events = first_events(api_server, api, JOBS)

    assert [event["type"] for event in events] == ["ADDED", "ADDED", "BOOKMARK"]
    assert int(events[-1]["object"]["metadata"]["resource_version"]) >= listed
    newest = max(int(event["object"]["metadata"]["resource_version"]) for event in events[:2])
    assert newest < listed


def test_first_bookmark_of_empty_collection_is_not_zero(api_server, api):
    listed = int(api.get("/api/v1/namespaces/default/services").json()["metadata"]["resource_version"])

    events = first_events(api_server, api, "/api/v1/namespaces/default/services")

    assert events[0]["type"] == "BOOKMARK"
    assert int(events[0]["object"]["metadata"]["resource_version"]) >= listed > 0


# ---- unexpected errors ---------------------------------------------------------------------------


def test_connection_stays_open_after_unexpected_error(api_server, admin_token, monkeypatch):
    original = resources.parse_object

    def parse_or_fail(data, model):
        if data.get("metadata", {}).get("name") == "explode":
            raise RuntimeError("a bug in the server")
        return original(data, model)

    monkeypatch.setattr(resources, "parse_object", parse_or_fail)
    address = urlsplit(api_server)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    headers = {"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"}

    def post(name: str) -> tuple[int, dict]:
        body = json.dumps({"kind": "Job", "metadata": {"name": name}, "spec": {"run": "true"}})
        connection.request("POST", JOBS, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())

    try:
        status, body = post("explode")
        socket = connection.sock
        assert status == 500
        assert body["message"] == f"internal error while handling POST {JOBS}: RuntimeError"
        status, body = post("after-explode")
        assert status == 201, body
        assert connection.sock is socket  # The same connection served the second request.
    finally:
        connection.close()


def test_watch_ends_with_error_on_unreadable_object(api_server, api, etcd_server, etcd_root):
    start = api.get(JOBS).json()["metadata"]["resource_version"]
    # A value that no SkyShift version writes: replicas must be an integer.
    value = json.dumps(
        {"kind": "Job", "metadata": {"name": "unreadable", "namespace": "default"}, "spec": {"replicas": "x"}}
    )

    async def put() -> None:
        async with aetcd.Client(host="127.0.0.1", port=etcd_server.client_port) as client:
            await client.put(object_key(Job, "default", "unreadable", etcd_root), value.encode())

    asyncio.run(put())
    events: list[dict] = []
    url = f"{api_server}{JOBS}?watch=true&resource_version={start}"
    with httpx.stream("GET", url, timeout=10, headers=api.headers) as response:
        for line in response.iter_lines():
            events.append(json.loads(line))

    assert [event["type"] for event in events] == ["ERROR"]
    status = events[0]["object"]
    assert status["code"] == 500
    assert status["reason"] == "InternalError"
    assert status["message"].startswith("the watch of Job cannot read a stored change ")


# ---- resourceVersionMatch ------------------------------------------------------------------------


def test_exact_list_reads_the_state_at_that_version(api):
    make_job(api, "kept", labels={"v": "1"})
    make_job(api, "gone")
    version = api.get(JOBS).json()["metadata"]["resource_version"]
    api.patch(f"{JOBS}/kept", json={"metadata": {"labels": {"v": "2"}}}, headers=MERGE)
    api.delete(f"{JOBS}/gone")
    make_job(api, "later")

    response = api.get(JOBS, params={"resourceVersion": version, "resourceVersionMatch": "Exact"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["metadata"]["resource_version"] == version
    assert {item["metadata"]["name"]: item["metadata"]["labels"] for item in body["items"]} == {
        "gone": {},
        "kept": {"v": "1"},
    }


def test_exact_list_pages_stay_at_that_version(api):
    for name in ("p1", "p2", "p3"):
        make_job(api, name)
    version = api.get(JOBS).json()["metadata"]["resource_version"]
    make_job(api, "p4")

    first = api.get(JOBS, params={"resourceVersion": version, "resourceVersionMatch": "Exact", "limit": 2}).json()
    rest = api.get(JOBS, params={"limit": 2, "continue": first["metadata"]["continue"]}).json()

    assert [item["metadata"]["name"] for item in first["items"] + rest["items"]] == ["p1", "p2", "p3"]
    assert rest["metadata"]["resource_version"] == version


def test_not_older_than_lists_the_latest_state(api):
    make_job(api, "first")
    version = api.get(JOBS).json()["metadata"]["resource_version"]
    make_job(api, "second")

    response = api.get(JOBS, params={"resource_version": version, "resource_version_match": "NotOlderThan"})

    assert response.status_code == 200, response.text
    assert [item["metadata"]["name"] for item in response.json()["items"]] == ["first", "second"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param(
            {"resourceVersion": "5", "resourceVersionMatch": "exact"},
            "invalid query parameter resourceVersionMatch='exact' (did you mean 'Exact'?): expected NotOlderThan "
            "or Exact",
            id="spelling",
        ),
        pytest.param(
            {"resourceVersionMatch": "Exact"},
            "query parameter resourceVersionMatch=Exact needs a nonzero resourceVersion to compare with; add one "
            "or leave it out",
            id="no-version",
        ),
        pytest.param(
            {"resourceVersion": "0", "resourceVersionMatch": "Exact"},
            "query parameter resourceVersionMatch=Exact needs a nonzero resourceVersion",
            id="zero-exact",
        ),
        pytest.param(
            {"resourceVersionMatch": "NotOlderThan"},
            "query parameter resourceVersionMatch=NotOlderThan needs a resourceVersion to compare with",
            id="no-version-not-older",
        ),
        pytest.param(
            {"watch": "true", "resourceVersion": "1", "resourceVersionMatch": "NotOlderThan"},
            "query parameter resourceVersionMatch=NotOlderThan on a watch needs sendInitialEvents=true and takes "
            "only NotOlderThan",
            id="watch",
        ),
        pytest.param(
            {"sendInitialEvents": "true"},
            "query parameter sendInitialEvents applies to watches; add watch=true",
            id="initial-events-on-list",
        ),
    ],
)
def test_bad_resource_version_match_is_400(api, params, message):
    response = api.get(JOBS, params=params)

    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith(message)


def test_exact_list_of_compacted_version_is_gone(api, store):
    version = api.get(JOBS).json()["metadata"]["resource_version"]
    make_job(api, "after-compaction")

    async def compact() -> None:
        await store.compact(await store.ping())

    asyncio.run(compact())
    response = api.get(JOBS, params={"resourceVersion": version, "resourceVersionMatch": "Exact"})

    assert response.status_code == 410, response.text
    assert response.json()["reason"] == "Expired"
    assert f"resource_version {version} is too old to list exactly" in response.json()["message"]


# ---- Status details ------------------------------------------------------------------------------


def test_status_details_name_the_object(api):
    job = make_job(api, "detailed")
    stale = {**job, "metadata": {**job["metadata"], "resource_version": "1"}}

    missing = api.get(f"{JOBS}/absent").json()
    duplicate = api.post(JOBS, json={"kind": "Job", "metadata": {"name": "detailed"}}).json()
    conflict = api.put(f"{JOBS}/detailed", json=stale).json()

    assert (missing["code"], missing["details"]) == (404, {"name": "absent", "kind": "jobs"})
    expected = {"name": "detailed", "kind": "jobs"}
    assert (duplicate["code"], duplicate["reason"], duplicate["details"]) == (409, "AlreadyExists", expected)
    assert (conflict["code"], conflict["reason"], conflict["details"]) == (409, "Conflict", expected)


# ---- sendInitialEvents ---------------------------------------------------------------------------


def watch_lines(api_server: str, api: httpx.Client, query: str, count: int) -> list[dict]:
    """Read the first `count` events of a watch of JOBS with `query`."""
    events = []
    with httpx.stream("GET", f"{api_server}{JOBS}?watch=true&{query}", timeout=10, headers=api.headers) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            events.append(json.loads(line))
            if len(events) == count:
                break
    return events


def test_initial_events_end_with_annotated_bookmark(api_server, api):
    make_job(api, "one")
    version = make_job(api, "two")["metadata"]["resource_version"]
    query = (
        "sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
        f"&resourceVersion={version}"
    )

    events = watch_lines(api_server, api, query, 3)

    assert [(event["type"], event["object"]["metadata"].get("name")) for event in events] == [
        ("ADDED", "one"),
        ("ADDED", "two"),
        ("BOOKMARK", None),
    ]
    metadata = events[2]["object"]["metadata"]
    assert metadata["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(metadata["resource_version"]) >= int(version)


def test_no_initial_events_starts_from_now(api_server, api):
    make_job(api, "before")
    events: list[dict] = []

    def watch() -> None:
        events.extend(watch_lines(api_server, api, "sendInitialEvents=false", 1))

    thread = threading.Thread(target=watch)
    thread.start()
    time.sleep(0.5)
    make_job(api, "after")
    thread.join(timeout=10)

    assert [(event["type"], event["object"]["metadata"]["name"]) for event in events] == [("ADDED", "after")]
