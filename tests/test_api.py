"""The API server against a real etcd: CRUD for every kind, preconditions, lists, watches, errors."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import yaml

from skyshift_core import __version__
from skyshift_core.local.processes import free_port, stop_process, wait_for_port
from skyshift_core.errors import NotFoundError
from skyshift_core.objects import Job, Namespace, kinds
from manifests_minimal import MINIMAL, SPEC_CHANGE

MERGE = {"content-type": "application/merge-patch+json"}
JSON_PATCH = {"content-type": "application/json-patch+json"}


def collection_path(kind: str, namespace: str = "default") -> str:
    model = kinds()[kind]
    if model.namespaced:
        return f"/api/v1/namespaces/{namespace}/{model.plural}"
    return f"/api/v1/{model.plural}"


def item_path(kind: str, name: str, namespace: str = "default") -> str:
    return f"{collection_path(kind, namespace)}/{name}"


def make_job(api: httpx.Client, name: str, namespace: str = "default", labels: dict | None = None) -> dict:
    body = {"kind": "Job", "metadata": {"name": name, "labels": labels or {}}, "spec": {"run": "true"}}
    response = api.post(collection_path("Job", namespace), json=body)
    assert response.status_code == 201, response.text
    return response.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def read_watch(url: str, lines: list, stop_after: int, timeout: float = 10.0, headers=None) -> None:
    """Collect watch events (bookmarks skipped) until `stop_after` arrived or the timeout ends."""
    with httpx.stream("GET", url, timeout=timeout, headers=headers) as response:
        for line in response.iter_lines():
            event = json.loads(line)
            if event["type"] == "BOOKMARK":
                continue
            lines.append(event)
            if len(lines) >= stop_after:
                return


@pytest.mark.parametrize("kind", sorted(MINIMAL))
def test_crud_every_kind(api, kind):
    manifest = MINIMAL[kind]
    name = manifest["metadata"]["name"]

    created = api.post(collection_path(kind), json=manifest)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["metadata"]["uid"]
    assert body["metadata"]["generation"] == 1
    assert body["metadata"]["creation_timestamp"]

    fetched = api.get(item_path(kind, name))
    assert fetched.status_code == 200
    assert fetched.json()["metadata"]["uid"] == body["metadata"]["uid"]

    listed = api.get(collection_path(kind))
    assert name in [item["metadata"]["name"] for item in listed.json()["items"]]
    assert listed.json()["kind"] == f"{kind}List"

    replacement = {**fetched.json(), **SPEC_CHANGE[kind]}
    if "spec" in SPEC_CHANGE[kind]:
        replacement["spec"] = {**fetched.json().get("spec", {}), **SPEC_CHANGE[kind]["spec"]}
    updated = api.put(item_path(kind, name), json=replacement)
    assert updated.status_code == 200, updated.text
    assert updated.json()["metadata"]["generation"] == 2

    patched = api.patch(item_path(kind, name), json={"metadata": {"labels": {"patched": "yes"}}}, headers=MERGE)
    assert patched.status_code == 200, patched.text
    assert patched.json()["metadata"]["labels"] == {"patched": "yes"}
    assert patched.json()["metadata"]["generation"] == 2  # Labels are not spec.

    deleted = api.delete(item_path(kind, name))
    assert deleted.status_code == 200
    assert api.get(item_path(kind, name)).status_code == 404


def test_duplicate_create_conflicts(api):
    make_job(api, "dup")
    response = api.post(collection_path("Job"), json={"kind": "Job", "metadata": {"name": "dup"}})
    assert response.status_code == 409
    assert response.json()["reason"] == "AlreadyExists"
    assert "dup" in response.json()["message"]


def test_stale_resource_version_conflicts(api):
    job = make_job(api, "stale")
    fresh = api.patch(item_path("Job", "stale"), json={"spec": {"replicas": 2}}, headers=MERGE).json()
    job["spec"]["replicas"] = 5
    response = api.put(item_path("Job", "stale"), json=job)
    assert response.status_code == 409
    assert response.json()["reason"] == "Conflict"
    assert job["metadata"]["resource_version"] in response.json()["message"]
    assert api.get(item_path("Job", "stale")).json()["spec"]["replicas"] == 2
    stale_delete = api.delete(item_path("Job", "stale"), params={"resource_version": job["metadata"]["resource_version"]})
    assert stale_delete.status_code == 409
    assert api.delete(item_path("Job", "stale"), params={"resource_version": fresh["metadata"]["resource_version"]}).status_code == 200


def test_patch_with_stale_resource_version_conflicts(api):
    job = make_job(api, "patched")
    api.patch(item_path("Job", "patched"), json={"spec": {"replicas": 2}}, headers=MERGE)
    stale = {"metadata": {"resource_version": job["metadata"]["resource_version"]}, "spec": {"replicas": 9}}
    assert api.patch(item_path("Job", "patched"), json=stale, headers=MERGE).status_code == 409


def test_concurrent_updates_with_preconditions(api_server, admin_token):
    """8 writers each read the object once and write with its resource_version: exactly one wins,
    because they all read the same version and every write is conditional on it."""
    with httpx.Client(base_url=api_server, headers=bearer(admin_token)) as api:
        job = make_job(api, "contended")
    barrier = threading.Barrier(8)

    def write(index: int) -> int:
        body = json.loads(json.dumps(job))
        body["spec"]["replicas"] = index + 2  # Never the current 1, which would be a no-op.
        with httpx.Client(base_url=api_server, timeout=30, headers=bearer(admin_token)) as client:
            barrier.wait()
            return client.put(item_path("Job", "contended"), json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(write, range(8)))
    assert sorted(codes) == [200] + [409] * 7


def test_concurrent_read_modify_write_loses_nothing(api_server, admin_token):
    """8 writers each add 5 labels with read-modify-write retried on 409: all 40 labels survive."""
    with httpx.Client(base_url=api_server, headers=bearer(admin_token)) as api:
        make_job(api, "counter")

    def add_labels(writer: int) -> int:
        conflicts = 0
        with httpx.Client(base_url=api_server, timeout=30, headers=bearer(admin_token)) as client:
            for step in range(5):
                while True:
                    current = client.get(item_path("Job", "counter")).json()
                    current["metadata"]["labels"][f"w{writer}-{step}"] = "x"
                    response = client.put(item_path("Job", "counter"), json=current)
                    if response.status_code == 200:
                        break
                    assert response.status_code == 409
                    conflicts += 1
        return conflicts

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(add_labels, range(8)))
    with httpx.Client(base_url=api_server, headers=bearer(admin_token)) as api:
        labels = api.get(item_path("Job", "counter")).json()["metadata"]["labels"]
    assert len(labels) == 40


def test_status_subresource_changes_only_status(api):
    job = make_job(api, "st")
    job["status"]["phase"] = "Running"
    job["spec"]["replicas"] = 7
    response = api.put(item_path("Job", "st") + "/status", json=job)
    assert response.status_code == 200, response.text
    assert response.json()["status"]["phase"] == "Running"
    assert response.json()["spec"]["replicas"] == 1
    assert response.json()["metadata"]["generation"] == 1


def test_main_resource_update_keeps_status(api):
    job = make_job(api, "keep")
    api.patch(item_path("Job", "keep") + "/status", json={"status": {"phase": "Running"}}, headers=MERGE)
    job["status"]["phase"] = "Failed"
    job["metadata"]["resource_version"] = None
    response = api.put(item_path("Job", "keep"), json=job)
    assert response.json()["status"]["phase"] == "Running"


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_finished_job_spec_immutable(api, phase):
    make_job(api, "done")
    api.patch(item_path("Job", "done") + "/status", json={"status": {"phase": phase}}, headers=MERGE)

    scaled = api.patch(item_path("Job", "done"), json={"spec": {"replicas": 6}}, headers=MERGE)
    labelled = api.patch(item_path("Job", "done"), json={"metadata": {"labels": {"kept": "yes"}}}, headers=MERGE)

    assert scaled.status_code == 422, scaled.text
    assert scaled.json()["message"].startswith(
        f"Job 'default/done' has {phase.lower()}, so its spec cannot change: the controllers do not run a "
        "finished Job again. To run it with the new spec, delete it and apply it again"
    )
    assert labelled.status_code == 200, labelled.text
    assert labelled.json()["metadata"]["labels"] == {"kept": "yes"}
    assert labelled.json()["spec"]["replicas"] == 1


def test_placed_job_only_replicas_change(api):
    make_job(api, "placed")
    api.patch(item_path("Job", "placed") + "/status", json={"status": {"placement": {"site-a": 1}}}, headers=MERGE)

    rerun = api.patch(item_path("Job", "placed"), json={"spec": {"run": "echo v2", "image": "debian"}}, headers=MERGE)
    scaled = api.patch(item_path("Job", "placed"), json={"spec": {"replicas": 3}}, headers=MERGE)

    assert rerun.status_code == 422, rerun.text
    assert rerun.json()["message"] == (
        "Job 'default/placed' is placed on clusters, so of its spec only spec.replicas can change, not spec.image, "
        "spec.run: its submitted replicas would keep the old values. To change them, delete the Job and apply it again"
    )
    assert scaled.status_code == 200, scaled.text
    assert scaled.json()["spec"]["replicas"] == 3


def test_pending_job_spec_changes(api):
    make_job(api, "waiting")

    response = api.patch(item_path("Job", "waiting"), json={"spec": {"run": "echo fixed"}}, headers=MERGE)

    assert response.status_code == 200, response.text
    assert response.json()["spec"]["run"] == "echo fixed"


def test_json_patch(api):
    make_job(api, "jp")
    operations = [{"op": "replace", "path": "/spec/replicas", "value": 4}, {"op": "add", "path": "/metadata/labels/a", "value": "b"}]
    response = api.patch(item_path("Job", "jp"), json=operations, headers=JSON_PATCH)
    assert response.status_code == 200, response.text
    assert response.json()["spec"]["replicas"] == 4
    assert response.json()["metadata"]["labels"] == {"a": "b"}


def test_invalid_json_patch_is_client_error(api):
    make_job(api, "jp-bad")
    response = api.patch(item_path("Job", "jp-bad"), json=[{"op": "remove", "path": "/spec/nothing"}], headers=JSON_PATCH)
    assert response.status_code == 422
    assert response.json()["kind"] == "Status"


def test_merge_patch_accepts_camel_case_and_aliases(api):
    make_job(api, "camel")
    patch = {"spec": {"restartPolicy": "Never", "env": {"A": "1"}, "placement": {"filters": [{"matchLabels": {"zone": "x"}}]}}}

    response = api.patch(item_path("Job", "camel"), json=patch, headers=MERGE)

    assert response.status_code == 200, response.text
    spec = response.json()["spec"]
    assert spec["restart_policy"] == "Never"
    assert spec["envs"] == {"A": "1"}
    assert spec["placement"]["filters"][0]["match_labels"] == {"zone": "x"}


def test_json_patch_accepts_camel_case_paths(api):
    make_job(api, "camel-jp")
    operations = [{"op": "replace", "path": "/spec/restartPolicy", "value": "OnFailure"}]

    response = api.patch(item_path("Job", "camel-jp"), json=operations, headers=JSON_PATCH)

    assert response.status_code == 200, response.text
    assert response.json()["spec"]["restart_policy"] == "OnFailure"


def test_merge_patch_camel_case_resource_version_is_precondition(api):
    created = make_job(api, "camel-rv")
    api.patch(item_path("Job", "camel-rv"), json={"spec": {"replicas": 2}}, headers=MERGE)
    stale = {"metadata": {"resourceVersion": created["metadata"]["resource_version"]}, "spec": {"replicas": 3}}

    response = api.patch(item_path("Job", "camel-rv"), json=stale, headers=MERGE)

    assert response.status_code == 409, response.text
    assert api.get(item_path("Job", "camel-rv")).json()["spec"]["replicas"] == 2


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_query_resource_version_is_precondition(api, method):
    created = make_job(api, f"query-rv-{method.lower()}")
    path = item_path("Job", created["metadata"]["name"])
    api.patch(path, json={"spec": {"replicas": 2}}, headers=MERGE)
    stale = created["metadata"]["resource_version"]
    body = {**created, "metadata": {**created["metadata"], "resource_version": None}, "spec": {"run": "true", "replicas": 3}}
    if method == "PATCH":
        body, headers = {"spec": {"replicas": 3}}, MERGE
    else:
        headers = {}

    response = api.request(method, path, params={"resourceVersion": stale}, json=body, headers=headers)

    assert response.status_code == 409, response.text
    assert api.get(path).json()["spec"]["replicas"] == 2


def test_query_and_body_resource_versions_must_agree(api):
    created = make_job(api, "query-rv-both")
    path = item_path("Job", "query-rv-both")

    response = api.put(path, params={"resource_version": "1"}, json=created)

    assert response.status_code == 400
    assert "resource_version '1' in the query differs from metadata.resource_version" in response.json()["message"]


def test_merge_patch_spelling_field_twice_rejected(api):
    make_job(api, "twice")

    response = api.patch(item_path("Job", "twice"), json={"spec": {"env": {"A": "1"}, "envs": {"B": "2"}}}, headers=MERGE)

    assert response.status_code == 422
    assert "sets spec.envs twice, as 'env' and 'envs'" in response.json()["message"]


def test_patch_invalid_value_names_field(api):
    make_job(api, "pv")
    response = api.patch(item_path("Job", "pv"), json={"spec": {"replicas": -1}}, headers=MERGE)
    assert response.status_code == 422
    assert "spec.replicas" in response.json()["message"]


def test_yaml_body(api):
    manifest = "kind: Job\nmetadata:\n  name: from-yaml\nspec:\n  run: echo hi\n  restartPolicy: Never\n"
    response = api.post(collection_path("Job"), content=manifest, headers={"content-type": "application/yaml"})
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["restart_policy"] == "Never"


def test_legacy_manifest_over_api(api):
    manifest = (
        "kind: Job\nmetadata:\n  name: legacy\n  labels: {app: batchjob}\nspec:\n  replicas: 1\n  image: ubuntu:latest\n"
        "  resources: {cpus: 1, memory: 128, A100: 1}\n  env:\n    - HELLO_SKY: hello_sky\n  run: 'echo $HELLO_SKY'\n"
        "  restart_policy: Never\n  placement:\n    filters:\n    - name: filter-1\n      match_labels: {purpose: dev}\n"
    )
    response = api.post(collection_path("Job"), content=manifest, headers={"content-type": "application/yaml"})
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["envs"] == {"HELLO_SKY": "hello_sky"}


@pytest.mark.parametrize(
    "body, headers, status, fragment",
    [
        pytest.param(b"{not json", {"content-type": "application/json"}, 400, "not valid JSON", id="bad-json"),
        pytest.param(b"a: [", {"content-type": "application/yaml"}, 400, "not valid YAML", id="bad-yaml"),
        pytest.param(
            b"kind: Job\nmetadata: {name: x}\nspec: {replicas: 2, replicas: 3}\n",
            {"content-type": "application/yaml"},
            400,
            "found duplicate key 'replicas'",
            id="yaml-duplicate-key",
        ),
        pytest.param(b"[1, 2]", {"content-type": "application/json"}, 400, "must be an object", id="not-object"),
        pytest.param(b"", {"content-type": "application/json"}, 400, "empty", id="empty"),
        pytest.param(
            json.dumps({"kind": "Job", "metadata": {"name": "x"}, "spec": {"replica": 2}}).encode(),
            {"content-type": "application/json"},
            422,
            "did you mean 'replicas'",
            id="unknown-field",
        ),
        pytest.param(
            json.dumps({"kind": "Cluster", "metadata": {"name": "x"}, "spec": {"manager": "slurm"}}).encode(),
            {"content-type": "application/json"},
            400,
            "does not match the request path",
            id="kind-mismatch",
        ),
        pytest.param(
            json.dumps({"kind": "Job", "metadata": {"name": "x", "namespace": "other"}}).encode(),
            {"content-type": "application/json"},
            400,
            "does not match the namespace in the path",
            id="namespace-mismatch",
        ),
    ],
)
def test_bad_create_bodies_get_clear_errors(api, body, headers, status, fragment):
    response = api.post(collection_path("Job"), content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["kind"] == "Status"
    assert fragment in response.json()["message"]


def test_create_in_missing_namespace_is_not_found(api):
    response = api.post(collection_path("Job", "nowhere"), json={"kind": "Job", "metadata": {"name": "a"}})
    assert response.status_code == 404
    assert "namespace 'nowhere' not found" in response.json()["message"]


def test_label_selectors(api):
    make_job(api, "web-1", labels={"app": "web", "tier": "front"})
    make_job(api, "web-2", labels={"app": "web", "tier": "db"})
    make_job(api, "batch", labels={"app": "batch", "env": "a"})
    cases = {
        "app=web": {"web-1", "web-2"},
        "app=web,tier!=db": {"web-1"},
        "env in (a,b)": {"batch"},
        "!env": {"web-1", "web-2"},
        "app notin (web)": {"batch"},
    }
    for selector, expected in cases.items():
        items = api.get("/api/v1/jobs", params={"labelSelector": selector}).json()["items"]
        assert {item["metadata"]["name"] for item in items} == expected, selector


def test_bad_selector_is_bad_request(api):
    response = api.get("/api/v1/jobs", params={"label_selector": "env in ("})
    assert response.status_code == 400
    assert "env in (" in response.json()["message"]


def test_namespaces_are_isolated_by_prefix(api):
    for namespace in ("dev", "dev2"):
        assert api.post("/api/v1/namespaces", json={"kind": "Namespace", "metadata": {"name": namespace}}).status_code == 201
    make_job(api, "only-in-dev2", namespace="dev2")
    assert api.get(collection_path("Job", "dev")).json()["items"] == []
    assert len(api.get(collection_path("Job", "dev2")).json()["items"]) == 1


def test_deleting_namespace_deletes_its_objects(api):
    api.post("/api/v1/namespaces", json={"kind": "Namespace", "metadata": {"name": "doomed"}})
    api.post("/api/v1/namespaces", json={"kind": "Namespace", "metadata": {"name": "doomed2"}})
    make_job(api, "a", namespace="doomed")
    api.post(collection_path("Service", "doomed"), json=MINIMAL["Service"])
    make_job(api, "survivor", namespace="doomed2")
    assert api.delete("/api/v1/namespaces/doomed").status_code == 200
    assert api.get(collection_path("Job", "doomed")).json()["items"] == []
    assert api.get(collection_path("Service", "doomed")).json()["items"] == []
    assert [j["metadata"]["name"] for j in api.get(collection_path("Job", "doomed2")).json()["items"]] == ["survivor"]


async def test_create_racing_namespace_delete_leaves_nothing(store):
    """A create that checked the namespace before a concurrent delete of it must not leave its object behind."""
    for round_number in range(10):
        namespace = f"racing-{round_number}"
        await store.create(Namespace(metadata={"name": namespace}))

        async def create(index: int) -> str:
            job = Job.model_validate({"kind": "Job", "metadata": {"name": f"job-{index}", "namespace": namespace}})
            try:
                await store.create(job)
            except NotFoundError:
                return "namespace gone"
            return "created"

        creates = [create(index) for index in range(40)]
        results = await asyncio.gather(*creates[:20], store.delete(Namespace, None, namespace), *creates[20:])
        deleted = results.pop(20)

        assert deleted.metadata.name == namespace
        assert set(results) <= {"created", "namespace gone"}
        assert (await store.list(Job, namespace)).items == []


def test_default_namespace_cannot_be_deleted(api):
    response = api.delete("/api/v1/namespaces/default")

    assert response.status_code == 403
    assert "namespace 'default' cannot be deleted" in response.json()["message"]
    assert api.get("/api/v1/namespaces/default").status_code == 200


def test_pagination_over_1000_objects(api_server, admin_token):
    with httpx.Client(base_url=api_server, timeout=60, headers=bearer(admin_token)) as api:
        api.post("/api/v1/namespaces", json={"kind": "Namespace", "metadata": {"name": "many"}})

        def create(index: int) -> int:
            body = {"kind": "Job", "metadata": {"name": f"job-{index:04d}", "labels": {"parity": str(index % 2)}}}
            return api.post(collection_path("Job", "many"), json=body).status_code

        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(create, range(1000))) == {201}

        names, token, versions = [], None, set()
        while True:
            params = {"limit": 128}
            if token:
                params["continue"] = token
            page = api.get(collection_path("Job", "many"), params=params).json()
            names.extend(item["metadata"]["name"] for item in page["items"])
            versions.add(page["metadata"]["resource_version"])
            token = page["metadata"].get("continue")
            if not token:
                break
        assert names == [f"job-{index:04d}" for index in range(1000)]
        assert len(versions) == 1  # Every page reads the same snapshot.

        odd, token = [], None
        while True:
            params = {"limit": 100, "labelSelector": "parity=1"}
            if token:
                params["continue"] = token
            page = api.get(collection_path("Job", "many"), params=params).json()
            assert len(page["items"]) <= 100
            odd.extend(item["metadata"]["name"] for item in page["items"])
            token = page["metadata"].get("continue")
            if not token:
                break
        assert odd == [f"job-{index:04d}" for index in range(1, 1000, 2)]


def test_pagination_snapshot_ignores_later_writes(api):
    for index in range(5):
        make_job(api, f"snap-{index}")
    first = api.get(collection_path("Job"), params={"limit": 2}).json()
    make_job(api, "snap-late")
    rest = api.get(collection_path("Job"), params={"limit": 10, "continue": first["metadata"]["continue"]}).json()
    names = [item["metadata"]["name"] for item in first["items"] + rest["items"]]
    assert names == [f"snap-{index}" for index in range(5)]


def test_bad_continue_token(api):
    response = api.get(collection_path("Job"), params={"limit": 1, "continue": "garbage!"})
    assert response.status_code == 400
    assert "continue token" in response.json()["message"]


def test_watch_resumed_from_old_version_yields_each_event_once(api_server, api):
    start = api.get(collection_path("Job")).json()["metadata"]["resource_version"]
    make_job(api, "w1")
    api.patch(item_path("Job", "w1"), json={"spec": {"replicas": 2}}, headers=MERGE)
    make_job(api, "w2")
    api.delete(item_path("Job", "w1"))
    expected = [("ADDED", "w1"), ("MODIFIED", "w1"), ("ADDED", "w2"), ("DELETED", "w1")]

    events: list = []
    url = f"{api_server}{collection_path('Job')}?watch=true&resource_version={start}&timeout_seconds=3"
    read_watch(url, events, 10, headers=api.headers)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == expected
    revisions = [int(e["object"]["metadata"]["resource_version"]) for e in events]
    assert revisions == sorted(revisions)
    assert len(set(revisions)) == len(revisions)

    # Resuming after the second event yields exactly the remaining two.
    resumed: list = []
    url = f"{api_server}{collection_path('Job')}?watch=true&resourceVersion={revisions[1]}&timeoutSeconds=3"
    read_watch(url, resumed, 10, headers=api.headers)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in resumed] == expected[2:]


def test_watch_sees_live_changes_and_bookmarks(api_server, api):
    start = api.get(collection_path("Job")).json()["metadata"]["resource_version"]
    raw: list = []

    def collect() -> None:
        url = f"{api_server}{collection_path('Job')}?watch=true&resource_version={start}&timeout_seconds=3"
        with httpx.stream("GET", url, timeout=10, headers=api.headers) as response:
            raw.extend(json.loads(line) for line in response.iter_lines())

    thread = threading.Thread(target=collect)
    thread.start()
    time.sleep(0.3)
    make_job(api, "live")
    thread.join()
    types = [event["type"] for event in raw]
    assert types.count("ADDED") == 1
    assert "BOOKMARK" in types  # The test server sends one per idle second.
    bookmark = [event for event in raw if event["type"] == "BOOKMARK"][-1]
    assert int(bookmark["object"]["metadata"]["resource_version"]) >= int(raw[0]["object"]["metadata"]["resource_version"])


def test_shutdown_ends_open_watches_cleanly(etcd_server, etcd_root, admin_token):
    from skyshift_core.api.app import ApiSettings
    from skyshift_core.api.server import ServerThread

    settings = ApiSettings(etcd_endpoints=[etcd_server.endpoint], etcd_root=etcd_root, bookmark_interval=1.0)
    server = ServerThread(settings, free_port()).start()
    headers = {"Authorization": f"Bearer {admin_token}"}
    lines: list = []
    errors: list = []
    streaming = threading.Event()

    def watch() -> None:
        try:
            with httpx.stream("GET", f"{server.url}{collection_path('Job')}?watch=true", timeout=30, headers=headers) as response:
                streaming.set()
                lines.extend(response.iter_lines())
        except httpx.HTTPError as error:
            errors.append(error)

    reader = threading.Thread(target=watch)
    reader.start()
    try:
        assert streaming.wait(10)
    finally:
        server.stop()
        reader.join(timeout=15)

    # Without the drain, uvicorn cancels the stream after its graceful shutdown timeout and the
    # client reads an incomplete chunked response.
    assert not reader.is_alive()
    assert errors == []


def test_watch_selector_reports_leaving_and_entering(api_server, api):
    make_job(api, "sel", labels={"app": "web"})
    start = api.get(collection_path("Job")).json()["metadata"]["resource_version"]
    api.patch(item_path("Job", "sel"), json={"metadata": {"labels": {"app": "db"}}}, headers=MERGE)
    api.patch(item_path("Job", "sel"), json={"metadata": {"labels": {"app": "web"}}}, headers=MERGE)
    events: list = []
    url = f"{api_server}{collection_path('Job')}?watch=true&resource_version={start}&labelSelector=app%3Dweb&timeout_seconds=2"
    read_watch(url, events, 10, headers=api.headers)
    assert [e["type"] for e in events] == ["DELETED", "ADDED"]


def test_watch_without_version_starts_with_current_objects(api_server, api):
    make_job(api, "existing")
    events: list = []
    read_watch(f"{api_server}{collection_path('Job')}?watch=true&timeout_seconds=1", events, 10, headers=api.headers)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "existing")]


def test_watch_compacted_version_is_gone(api, store):
    old = api.get(collection_path("Job")).json()["metadata"]["resource_version"]
    for index in range(3):
        make_job(api, f"c{index}")

    async def compact() -> None:
        await store.compact(await store.ping())

    import asyncio

    asyncio.run(compact())
    response = api.get(collection_path("Job"), params={"watch": "true", "resource_version": old})
    assert response.status_code == 410
    assert response.json()["reason"] == "Expired"
    assert "list again" in response.json()["message"]


def test_health_readiness_metrics_and_docs(api, anonymous_api):
    assert api.get("/healthz").text == "ok"
    assert api.get("/readyz").status_code == 200
    for path in ("/healthz", "/livez", "/readyz"):
        assert anonymous_api.get(path).text == "ok", path
        assert anonymous_api.head(path).status_code == 200, path
    assert anonymous_api.get("/version").json() == {"kind": "Version", "version": __version__}
    assert anonymous_api.head("/version").status_code == 200
    api.get(collection_path("Job"))
    metrics = api.get("/metrics").text
    assert 'skyshift_apiserver_requests_total{code="200",method="GET",route="/api/v1/namespaces/{namespace}/jobs"}' in metrics
    assert "skyshift_apiserver_request_duration_seconds_bucket" in metrics
    assert "skyshift_apiserver_open_watches" in metrics
    assert api.get("/docs").status_code == 200
    paths = api.get("/openapi.json").json()["paths"]
    assert "/api/v1/namespaces/{namespace}/jobs/{name}/status" in paths
    assert "/api/v1/clusters/{name}" in paths


def test_open_watches_gauge_counts_streams(api_server, api):
    opened = threading.Event()

    def hold() -> None:
        url = f"{api_server}{collection_path('Job')}?watch=true&timeout_seconds=2"
        with httpx.stream("GET", url, timeout=10, headers=api.headers) as response:
            opened.set()
            for _ in response.iter_lines():
                pass

    thread = threading.Thread(target=hold)
    thread.start()
    opened.wait(5)
    time.sleep(0.2)
    metrics = api.get("/metrics").text
    thread.join()
    assert 'skyshift_apiserver_open_watches{kind="Job"} 1.0' in metrics


def test_not_found_is_status(api):
    response = api.get(item_path("Cluster", "nope"))
    assert response.status_code == 404
    assert response.json() == {
        "kind": "Status",
        "api_version": "v1",
        "status": "Failure",
        "code": 404,
        "reason": "NotFound",
        "message": "Cluster 'nope' not found",
        "details": {"name": "nope", "kind": "clusters"},
    }


def _start_api_process(etcd_endpoint: str, root: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    code = (
        "from skyshift_core.api.app import ApiSettings\n"
        "from skyshift_core.api.server import serve\n"
        f"serve(ApiSettings(etcd_endpoints=[{etcd_endpoint!r}], etcd_root={root!r}, bookmark_interval=1), port={port}, log_level='warning')\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert wait_for_port("127.0.0.1", port, 20, pid=process.pid), "API server process did not start"
    return process, f"http://127.0.0.1:{port}"


def test_two_api_server_processes_share_state(etcd_server, etcd_root, admin_token):
    first, first_url = _start_api_process(etcd_server.endpoint, etcd_root)
    second, second_url = _start_api_process(etcd_server.endpoint, etcd_root)
    headers = bearer(admin_token)
    try:
        with (
            httpx.Client(base_url=first_url, timeout=30, headers=headers) as one,
            httpx.Client(base_url=second_url, timeout=30, headers=headers) as two,
        ):
            start = two.get(collection_path("Job")).json()["metadata"]["resource_version"]
            events: list = []
            url = f"{second_url}{collection_path('Job')}?watch=true&resource_version={start}&timeout_seconds=5"
            watcher = threading.Thread(target=read_watch, args=(url, events, 2), kwargs={"headers": headers})
            watcher.start()
            created = make_job(one, "shared")
            assert two.get(item_path("Job", "shared")).json()["metadata"]["uid"] == created["metadata"]["uid"]
            one.patch(item_path("Job", "shared"), json={"spec": {"replicas": 3}}, headers=MERGE)
            watcher.join()
            assert [(e["type"], e["object"]["spec"]["replicas"]) for e in events] == [("ADDED", 1), ("MODIFIED", 3)]
            stale = dict(created, spec={**created["spec"], "replicas": 9})
            assert two.put(item_path("Job", "shared"), json=stale).status_code == 409
    finally:
        stop_process(first.pid)
        stop_process(second.pid)


def test_manager_typo_gets_warning_header(api):
    cluster = {"kind": "Cluster", "metadata": {"name": "typo"}, "spec": {"manager": "slurn"}}

    created = api.post(collection_path("Cluster"), json=cluster)
    replaced = api.put(collection_path("Cluster") + "/typo", json=created.json())

    assert created.status_code == 201, created.text
    for response in (created, replaced):
        (warning,) = response.headers.get_list("warning")
        assert warning.startswith('299 - "spec.manager: no cluster manager named \'slurn\' is installed')
        assert "(did you mean 'slurm'?)" in warning


def test_installed_manager_gets_no_warning(api):
    config = {"node_count": 1, "node": {"cpus": 2, "memory": "4Gi"}}
    cluster = {"kind": "Cluster", "metadata": {"name": "plain"}, "spec": {"manager": "simulated", "config": config}}

    created = api.post(collection_path("Cluster"), json=cluster)

    assert created.status_code == 201, created.text
    assert created.headers.get_list("warning") == []
