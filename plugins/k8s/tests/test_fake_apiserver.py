"""Tests of the fake Kubernetes API server and simulated kubelet through the official client.

Every test talks HTTP to a FakeApiServer on 127.0.0.1 with the `kubernetes` package (releases
35 and 37 are supported), except a few raw-protocol checks that use httpx.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import urllib3
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream
from skyshift_k8s.testing import (
    JOB_COMPLETION_INDEX_ANNOTATION,
    UNPULLABLE_REGISTRY,
    FakeApiServer,
    ManualClock,
    SimulatedKubelet,
)

T = TypeVar("T")
TOKEN = "test-token"
NAMESPACE = "default"


@pytest.fixture
def server():
    fake = FakeApiServer(token=TOKEN, bookmark_interval_seconds=0.2)
    fake.start()
    yield fake
    if fake.kubelet is not None:
        fake.kubelet.stop()
    fake.stop()


@pytest.fixture
def api(server: FakeApiServer, tmp_path: Path) -> client.ApiClient:
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    yield api_client
    api_client.close()


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def batch(api: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(api)


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
def kubelet(server: FakeApiServer) -> SimulatedKubelet:
    """A running kubelet with two 4-cpu nodes; node-gpu also has 2 GPUs."""
    simulated = SimulatedKubelet(server, tick_seconds=0.02, restart_backoff_seconds=0.2)
    simulated.add_node("node-a", cpu="4", memory="8Gi")
    simulated.add_node("node-gpu", cpu="4", memory="8Gi", gpus=2, labels={"accelerator": "nvidia"})
    simulated.start()
    yield simulated
    simulated.stop()
    assert simulated.errors == []


def raw(server: FakeApiServer, token: str | None = TOKEN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=10)


def status_body(error: ApiException) -> dict[str, Any]:
    return json.loads(error.body)


def pod_body(
    name: str, labels: dict[str, str] | None = None, command: list[str] | None = None, **spec: Any
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "busybox:1.36"}
    if command is not None:
        container["command"] = command
    for key in ("resources", "env"):
        if key in spec:
            container[key] = spec.pop(key)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [container], "restartPolicy": spec.pop("restartPolicy", "Never"), **spec},
    }


def job_body(name: str, script: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", script]}],
                }
            },
            **spec,
        },
    }


def deployment_body(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "web", "image": "nginx:1.27", "resources": {"requests": {"cpu": "100m"}}}]
                },
            },
        },
    }


def wait_for(condition: Callable[[], Any], timeout_seconds: float = 10.0) -> Any:
    """Poll `condition` until it returns something truthy (for tests without a kubelet)."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"condition still false after {timeout_seconds} s")


def poll(kubelet: SimulatedKubelet, read: Callable[[], T], predicate: Callable[[T], Any]) -> T:
    """Return the first object from `read()` that satisfies `predicate`, letting the kubelet work."""

    def check() -> T | None:
        obj = read()
        return obj if predicate(obj) else None

    return kubelet.run_until(check)


def condition_status(obj: Any, condition_type: str) -> str | None:
    for condition in obj.status.conditions or []:
        if condition.type == condition_type:
            return condition.status
    return None


# Discovery, version, health, authentication


def test_discovery_documents(core: client.CoreV1Api, api: client.ApiClient) -> None:
    core_resources = {r.name for r in core.get_api_resources().resources}
    assert {
        "namespaces",
        "nodes",
        "nodes/status",
        "pods",
        "pods/status",
        "pods/log",
        "pods/exec",
        "services",
    } <= core_resources

    groups = {g.name: g for g in client.ApisApi(api).get_api_versions().groups}
    assert groups["batch"].preferred_version.group_version == "batch/v1"
    assert groups["apps"].preferred_version.group_version == "apps/v1"

    batch_resources = {r.name for r in client.BatchV1Api(api).get_api_resources().resources}
    assert {"jobs", "jobs/status"} <= batch_resources
    apps_resources = {r.name: r for r in client.AppsV1Api(api).get_api_resources().resources}
    assert apps_resources["deployments"].namespaced is True
    assert "deployments/scale" in apps_resources
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]


def test_version_and_health(server: FakeApiServer, api: client.ApiClient) -> None:
    version = client.VersionApi(api).get_code()
    assert (version.major, version.minor) == ("1", "31")
    with raw(server, token=None) as http:
        assert http.get("/healthz").text == "ok"
        assert http.get("/readyz").status_code == 200


def test_missing_token_gets_401(server: FakeApiServer, tmp_path: Path) -> None:
    configuration = client.Configuration()
    configuration.host = server.url
    with client.ApiClient(configuration) as anonymous, pytest.raises(ApiException) as raised:
        client.CoreV1Api(anonymous).list_namespace()
    assert raised.value.status == 401
    assert status_body(raised.value)["reason"] == "Unauthorized"


# CRUD, conflicts, metadata


def _crud_cases() -> list[Any]:
    """(kind, api class, body, create/read/replace/patch/delete/list method suffix, namespaced)."""
    namespace = {"metadata": {"name": "team-a"}}
    node = {"metadata": {"name": "node-x"}, "spec": {}, "status": {"capacity": {"cpu": "2"}}}
    service = {"metadata": {"name": "svc"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    return [
        pytest.param(client.CoreV1Api, "namespace", namespace, False, id="namespace"),
        pytest.param(client.CoreV1Api, "node", node, False, id="node"),
        pytest.param(client.CoreV1Api, "namespaced_pod", pod_body("pod-x"), True, id="pod"),
        pytest.param(client.CoreV1Api, "namespaced_service", service, True, id="service"),
        pytest.param(client.BatchV1Api, "namespaced_job", job_body("job-x", "true"), True, id="job"),
        pytest.param(client.AppsV1Api, "namespaced_deployment", deployment_body("dep-x", 1), True, id="deployment"),
    ]


@pytest.mark.parametrize("api_class, suffix, body, namespaced", _crud_cases())
def test_crud_each_kind(
    api: client.ApiClient, api_class: type, suffix: str, body: dict[str, Any], namespaced: bool
) -> None:
    resource_api = api_class(api)
    name = body["metadata"]["name"]
    scope = (NAMESPACE,) if namespaced else ()

    created = getattr(resource_api, f"create_{suffix}")(*scope, body)
    assert created.metadata.uid
    assert created.metadata.creation_timestamp is not None
    assert int(created.metadata.resource_version) > 0

    read = getattr(resource_api, f"read_{suffix}")(name, *scope)
    assert read.metadata.uid == created.metadata.uid

    listed = getattr(resource_api, f"list_{suffix}")(*scope)
    assert name in {item.metadata.name for item in listed.items}
    assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)

    read.metadata.labels = {**(read.metadata.labels or {}), "stage": "replaced"}
    replaced = getattr(resource_api, f"replace_{suffix}")(name, *scope, read)
    assert replaced.metadata.labels["stage"] == "replaced"
    assert int(replaced.metadata.resource_version) > int(read.metadata.resource_version)

    patched = getattr(resource_api, f"patch_{suffix}")(name, *scope, {"metadata": {"labels": {"stage": "patched"}}})
    assert patched.metadata.labels["stage"] == "patched"

    getattr(resource_api, f"delete_{suffix}")(name, *scope)
    with pytest.raises(ApiException) as raised:
        getattr(resource_api, f"read_{suffix}")(name, *scope)
    assert raised.value.status == 404


def test_duplicate_create_is_409_already_exists(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NAMESPACE, pod_body("twice"))
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_pod(NAMESPACE, pod_body("twice"))
    body = status_body(raised.value)
    assert raised.value.status == 409
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == 'pods "twice" already exists'


def test_stale_update_is_409_conflict(core: client.CoreV1Api) -> None:
    original = core.create_namespaced_pod(NAMESPACE, pod_body("contested"))
    core.patch_namespaced_pod("contested", NAMESPACE, {"metadata": {"labels": {"writer": "first"}}})
    original.metadata.labels = {"writer": "second"}
    with pytest.raises(ApiException) as raised:
        core.replace_namespaced_pod("contested", NAMESPACE, original)
    body = status_body(raised.value)
    assert raised.value.status == 409
    assert body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]


def test_missing_object_is_404_status(batch: client.BatchV1Api) -> None:
    with pytest.raises(ApiException) as raised:
        batch.read_namespaced_job("nope", NAMESPACE)
    body = status_body(raised.value)
    assert body["kind"] == "Status"
    assert body["code"] == 404
    assert body["reason"] == "NotFound"
    assert body["message"] == 'jobs.batch "nope" not found'
    assert body["details"] == {"name": "nope", "kind": "jobs", "group": "batch"}


def test_create_in_missing_namespace_is_404(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_pod("no-such-namespace", pod_body("orphan"))
    assert raised.value.status == 404
    assert status_body(raised.value)["message"] == 'namespaces "no-such-namespace" not found'


def test_invalid_job_is_422(batch: client.BatchV1Api) -> None:
    body = job_body("bad-policy", "true")
    body["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(ApiException) as raised:
        batch.create_namespaced_job(NAMESPACE, body)
    status = status_body(raised.value)
    assert raised.value.status == 422
    assert status["reason"] == "Invalid"
    assert status["details"]["causes"][0]["field"] == "spec.template.spec.restartPolicy"


def test_generation_bumps_on_spec_change_only(apps: client.AppsV1Api) -> None:
    created = apps.create_namespaced_deployment(NAMESPACE, deployment_body("gen", 1))
    assert created.metadata.generation == 1

    labelled = apps.patch_namespaced_deployment("gen", NAMESPACE, {"metadata": {"labels": {"team": "x"}}})
    assert labelled.metadata.generation == 1

    scaled = apps.patch_namespaced_deployment("gen", NAMESPACE, {"spec": {"replicas": 3}})
    assert scaled.metadata.generation == 2

    status_written = apps.patch_namespaced_deployment_status("gen", NAMESPACE, {"status": {"replicas": 7}})
    assert status_written.metadata.generation == 2
    assert status_written.status.replicas == 7


def test_status_subresource_separates_spec_and_status(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NAMESPACE, pod_body("split"))
    pod = core.read_namespaced_pod("split", NAMESPACE)
    pod.status.phase = "Running"
    pod.metadata.labels = {"ignored": "by-status-update"}
    after_status = core.replace_namespaced_pod_status("split", NAMESPACE, pod)
    assert after_status.status.phase == "Running"
    assert not (after_status.metadata.labels or {}).get("ignored")

    after_status.status.phase = "Failed"
    after_status.metadata.labels = {"kept": "yes"}
    after_main = core.replace_namespaced_pod("split", NAMESPACE, after_status)
    assert after_main.status.phase == "Running"
    assert after_main.metadata.labels == {"kept": "yes"}


def test_node_status_subresource(core: client.CoreV1Api) -> None:
    core.create_node({"metadata": {"name": "bare"}})
    core.patch_node_status("bare", {"status": {"allocatable": {"cpu": "8"}}})
    assert core.read_node_status("bare").status.allocatable == {"cpu": "8"}


# Patches


def test_strategic_merge_patch_merges_containers_by_name(apps: client.AppsV1Api) -> None:
    body = deployment_body("smp", 1)
    body["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "envoy:1"})
    apps.create_namespaced_deployment(NAMESPACE, body)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}}
    patched = apps.patch_namespaced_deployment("smp", NAMESPACE, patch)
    images = {c.name: c.image for c in patched.spec.template.spec.containers}
    assert images == {"web": "nginx:1.28", "sidecar": "envoy:1"}


def test_json_patch(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NAMESPACE, pod_body("jp", labels={"a": "1"}))
    patched = core.patch_namespaced_pod(
        "jp",
        NAMESPACE,
        [
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "remove", "path": "/metadata/labels/a"},
        ],
    )
    assert patched.metadata.labels == {"b": "2"}


def test_merge_patch_replaces_lists(server: FakeApiServer, apps: client.AppsV1Api) -> None:
    body = deployment_body("mp", 1)
    body["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "envoy:1"})
    apps.create_namespaced_deployment(NAMESPACE, body)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}}
    with raw(server) as http:
        response = http.patch(
            f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/mp",
            content=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
        )
    assert response.status_code == 200
    assert [c["name"] for c in response.json()["spec"]["template"]["spec"]["containers"]] == ["web"]


def test_apply_patch_is_415(server: FakeApiServer) -> None:
    with raw(server) as http:
        response = http.patch(
            f"/api/v1/namespaces/{NAMESPACE}",
            content="metadata: {}",
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
    assert response.status_code == 415
    assert response.json()["reason"] == "UnsupportedMediaType"


# Selectors and lists


LABELLED_PODS = {
    "web-a": {"app": "web", "tier": "a", "gpu": "yes"},
    "web-b": {"app": "web", "tier": "b"},
    "db-c": {"app": "db", "tier": "c"},
}


@pytest.mark.parametrize(
    "selector, expected",
    [
        ("app=web", {"web-a", "web-b"}),
        ("app==db", {"db-c"}),
        ("app!=web", {"db-c"}),
        ("tier in (a, c)", {"web-a", "db-c"}),
        ("tier notin (a)", {"web-b", "db-c"}),
        ("gpu", {"web-a"}),
        ("!gpu", {"web-b", "db-c"}),
        ("app=web,tier!=a", {"web-b"}),
    ],
)
def test_label_selectors(core: client.CoreV1Api, selector: str, expected: set[str]) -> None:
    for name, labels in LABELLED_PODS.items():
        core.create_namespaced_pod(NAMESPACE, pod_body(name, labels))
    found = {pod.metadata.name for pod in core.list_namespaced_pod(NAMESPACE, label_selector=selector).items}
    assert found == expected


@pytest.mark.parametrize(
    "selector, expected",
    [
        ("metadata.name=web-a", {"web-a"}),
        ("metadata.namespace=team-b", {"db-c"}),
        ("status.phase=Running", {"web-b"}),
        ("status.phase!=Running", {"web-a", "db-c"}),
        ("spec.nodeName=node-1", {"web-a"}),
        ("spec.nodeName=", {"web-b", "db-c"}),
    ],
)
def test_field_selectors(core: client.CoreV1Api, selector: str, expected: set[str]) -> None:
    core.create_namespace({"metadata": {"name": "team-b"}})
    core.create_namespaced_pod(NAMESPACE, pod_body("web-a", nodeName="node-1"))
    core.create_namespaced_pod(NAMESPACE, pod_body("web-b"))
    core.create_namespaced_pod("team-b", pod_body("db-c"))
    core.patch_namespaced_pod_status("web-b", NAMESPACE, {"status": {"phase": "Running"}})
    found = {pod.metadata.name for pod in core.list_pod_for_all_namespaces(field_selector=selector).items}
    assert found == expected


@pytest.mark.parametrize("field, value", [("label_selector", "app in (web"), ("field_selector", "spec.image=nginx")])
def test_invalid_selector_is_400(core: client.CoreV1Api, field: str, value: str) -> None:
    with pytest.raises(ApiException) as raised:
        core.list_namespaced_pod(NAMESPACE, **{field: value})
    assert raised.value.status == 400
    assert status_body(raised.value)["reason"] == "BadRequest"


def test_list_pages_with_limit_and_continue(core: client.CoreV1Api) -> None:
    for index in range(5):
        core.create_namespaced_pod(NAMESPACE, pod_body(f"page-{index}"))
    first = core.list_namespaced_pod(NAMESPACE, limit=2)
    core.create_namespaced_pod(NAMESPACE, pod_body("page-late"))
    second = core.list_namespaced_pod(NAMESPACE, limit=10, _continue=first.metadata._continue)
    assert [p.metadata.name for p in first.items] == ["page-0", "page-1"]
    assert first.metadata.remaining_item_count == 3
    # The continued list is a consistent snapshot taken at the first page's resource version.
    assert [p.metadata.name for p in second.items] == ["page-2", "page-3", "page-4"]
    assert second.metadata.resource_version == first.metadata.resource_version


# Watch


def test_watch_replays_from_resource_version(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NAMESPACE, pod_body("before"))
    start = core.list_namespaced_pod(NAMESPACE).metadata.resource_version
    core.create_namespaced_pod(NAMESPACE, pod_body("after"))
    core.patch_namespaced_pod("after", NAMESPACE, {"metadata": {"labels": {"seen": "yes"}}})
    core.delete_namespaced_pod("after", NAMESPACE)

    events = [
        (event["type"], event["object"].metadata.name)
        for event in watch.Watch().stream(
            core.list_namespaced_pod, NAMESPACE, resource_version=start, timeout_seconds=1
        )
    ]
    assert events == [("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "after")]


def test_watch_without_version_starts_with_current_objects(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NAMESPACE, pod_body("existing"))
    events = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(core.list_namespaced_pod, NAMESPACE, timeout_seconds=1)
    ]
    assert events == [("ADDED", "existing")]


def test_watch_delivers_live_events(core: client.CoreV1Api) -> None:
    start = core.list_namespaced_pod(NAMESPACE).metadata.resource_version
    watcher = watch.Watch()
    seen: list[tuple[str, str]] = []

    def consume() -> None:
        for event in watcher.stream(core.list_namespaced_pod, NAMESPACE, resource_version=start, timeout_seconds=5):
            seen.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                watcher.stop()

    consumer = threading.Thread(target=consume)
    consumer.start()
    core.create_namespaced_pod(NAMESPACE, pod_body("live"))
    core.delete_namespaced_pod("live", NAMESPACE)
    consumer.join(10)
    assert not consumer.is_alive()
    assert seen == [("ADDED", "live"), ("DELETED", "live")]


def test_watch_selector_change_sends_added_and_deleted(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NAMESPACE, pod_body("mover", labels={"team": "red"}))
    start = core.list_namespaced_pod(NAMESPACE).metadata.resource_version
    core.patch_namespaced_pod("mover", NAMESPACE, {"metadata": {"labels": {"team": "blue"}}})
    core.patch_namespaced_pod("mover", NAMESPACE, {"metadata": {"labels": {"team": "red"}}})
    events = [
        e["type"]
        for e in watch.Watch().stream(
            core.list_namespaced_pod, NAMESPACE, label_selector="team=blue", resource_version=start, timeout_seconds=1
        )
    ]
    assert events == ["ADDED", "DELETED"]


def test_watch_expired_version_raises_410(server: FakeApiServer, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NAMESPACE, pod_body("old"))
    old_version = core.list_namespaced_pod(NAMESPACE).metadata.resource_version
    core.create_namespaced_pod(NAMESPACE, pod_body("new"))
    server.compact()
    with pytest.raises(ApiException) as raised:
        for _ in watch.Watch().stream(core.list_namespaced_pod, NAMESPACE, resource_version=old_version):
            pass
    assert raised.value.status == 410


@pytest.mark.parametrize("watch_flag", ["true", "1"])
def test_watch_expired_version_is_error_event(server: FakeApiServer, watch_flag: str) -> None:
    server.compact()
    with raw(server) as http:
        response = http.get(
            f"/api/v1/namespaces/{NAMESPACE}/pods", params={"watch": watch_flag, "resourceVersion": "1"}
        )
    event = json.loads(response.text.splitlines()[0])
    assert response.status_code == 200
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410
    assert event["object"]["reason"] == "Expired"


def test_history_window_expires_old_versions(core: client.CoreV1Api, tmp_path: Path) -> None:
    small = FakeApiServer(history_size=3).start()
    try:
        small_core = client.CoreV1Api(config.new_client_from_config(str(small.write_kubeconfig(tmp_path / "small"))))
        start = small_core.list_namespaced_pod(NAMESPACE).metadata.resource_version
        for index in range(4):
            small_core.create_namespaced_pod(NAMESPACE, pod_body(f"burst-{index}"))
        with pytest.raises(ApiException) as raised:
            list(
                watch.Watch().stream(
                    small_core.list_namespaced_pod, NAMESPACE, resource_version=start, timeout_seconds=1
                )
            )
        assert raised.value.status == 410
    finally:
        small.stop()


def test_watch_timeout_seconds_ends_stream(core: client.CoreV1Api) -> None:
    start = core.list_namespaced_pod(NAMESPACE).metadata.resource_version
    events = list(watch.Watch().stream(core.list_namespaced_pod, NAMESPACE, resource_version=start, timeout_seconds=1))
    assert events == []


def test_watch_bookmarks_advance_resource_version(core: client.CoreV1Api) -> None:
    start = core.list_namespaced_pod(NAMESPACE).metadata.resource_version
    core.create_namespace({"metadata": {"name": "unrelated"}})
    events = list(
        watch.Watch().stream(
            core.list_namespaced_pod, NAMESPACE, resource_version=start, allow_watch_bookmarks=True, timeout_seconds=1
        )
    )
    bookmarks = [event["raw_object"] for event in events if event["type"] == "BOOKMARK"]
    assert bookmarks
    assert all(event["type"] == "BOOKMARK" for event in events)
    # The bookmark covers the namespace write, which this pod watch never sees as an event.
    assert int(bookmarks[-1]["metadata"]["resourceVersion"]) > int(start)


def test_watch_ends_when_server_stops(server: FakeApiServer, core: client.CoreV1Api) -> None:
    start = core.list_namespaced_pod(NAMESPACE).metadata.resource_version
    finished = threading.Event()

    def consume() -> None:
        try:
            for _ in watch.Watch().stream(
                core.list_namespaced_pod, NAMESPACE, resource_version=start, timeout_seconds=30
            ):
                pass
        except (urllib3.exceptions.HTTPError, ApiException):
            pass
        finally:
            finished.set()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    wait_for(lambda: server.open_stream_count)
    server.stop()
    assert finished.wait(10)


# Server availability


def test_stopped_server_refuses_and_restart_keeps_objects(server: FakeApiServer, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NAMESPACE, pod_body("durable"))
    server.stop()
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        core.list_namespaced_pod(NAMESPACE, _request_timeout=2)

    server.start()
    assert core.read_namespaced_pod("durable", NAMESPACE).metadata.name == "durable"


# Kubelet: jobs, deployments, scheduling, failures


def test_indexed_job_runs_to_complete(
    core: client.CoreV1Api, batch: client.BatchV1Api, kubelet: SimulatedKubelet
) -> None:
    body = job_body(
        "indexed", "echo index $JOB_COMPLETION_INDEX", completions=3, parallelism=2, completionMode="Indexed"
    )
    batch.create_namespaced_job(NAMESPACE, body)

    job = poll(
        kubelet,
        lambda: batch.read_namespaced_job("indexed", NAMESPACE),
        lambda j: condition_status(j, "Complete") == "True",
    )
    assert job.status.succeeded == 3
    assert job.status.completed_indexes == "0-2"
    assert job.status.completion_time is not None

    pods = core.list_namespaced_pod(NAMESPACE, label_selector="batch.kubernetes.io/job-name=indexed").items
    indexes = sorted(pod.metadata.annotations[JOB_COMPLETION_INDEX_ANNOTATION] for pod in pods)
    assert indexes == ["0", "1", "2"]
    for pod in pods:
        index = pod.metadata.annotations[JOB_COMPLETION_INDEX_ANNOTATION]
        assert pod.status.phase == "Succeeded"
        assert pod.metadata.owner_references[0].kind == "Job"
        assert core.read_namespaced_pod_log(pod.metadata.name, NAMESPACE) == f"index {index}\n"


def test_job_exceeding_backoff_limit_fails(batch: client.BatchV1Api, kubelet: SimulatedKubelet) -> None:
    batch.create_namespaced_job(NAMESPACE, job_body("doomed", "echo trying; exit 2", backoffLimit=1))
    job = poll(
        kubelet,
        lambda: batch.read_namespaced_job("doomed", NAMESPACE),
        lambda j: condition_status(j, "Failed") == "True",
    )
    failed = next(c for c in job.status.conditions if c.type == "Failed")
    assert failed.reason == "BackoffLimitExceeded"
    # backoffLimit 1 allows one retry, so the job fails on its second failed pod.
    assert job.status.failed == 2


def test_deployment_pods_run_and_scale(
    core: client.CoreV1Api, apps: client.AppsV1Api, kubelet: SimulatedKubelet
) -> None:
    apps.create_namespaced_deployment(NAMESPACE, deployment_body("web", 3))
    deployment = poll(
        kubelet, lambda: apps.read_namespaced_deployment("web", NAMESPACE), lambda d: d.status.available_replicas == 3
    )
    assert deployment.status.ready_replicas == 3
    assert deployment.status.replicas == 3
    assert condition_status(deployment, "Available") == "True"

    pods = core.list_namespaced_pod(NAMESPACE, label_selector="app=web").items
    assert {pod.status.phase for pod in pods} == {"Running"}
    assert all(pod.spec.node_name in ("node-a", "node-gpu") for pod in pods)

    apps.patch_namespaced_deployment_scale("web", NAMESPACE, {"spec": {"replicas": 1}})
    kubelet.run_until(lambda: len(core.list_namespaced_pod(NAMESPACE, label_selector="app=web").items) == 1)
    assert apps.read_namespaced_deployment_scale("web", NAMESPACE).spec.replicas == 1


@pytest.mark.parametrize(
    "resources, node_change, expected_message",
    [
        # 8 cpu > 4 allocatable cpu on both nodes.
        pytest.param({"requests": {"cpu": "8"}}, None, "0/2 nodes are available: 2 Insufficient cpu.", id="cpu"),
        # 3 GPUs > 2 on node-gpu; node-a has none.
        pytest.param(
            {"limits": {"nvidia.com/gpu": "3"}},
            None,
            "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.",
            id="gpu",
        ),
        pytest.param({}, "cordon", "0/2 nodes are available: 2 node(s) were unschedulable.", id="cordoned"),
        pytest.param(
            {}, "taint", "0/2 nodes are available: 2 node(s) had untolerated taint {dedicated: ml}.", id="tainted"
        ),
    ],
)
def test_unschedulable_pod_reason(
    core: client.CoreV1Api,
    kubelet: SimulatedKubelet,
    resources: dict[str, Any],
    node_change: str | None,
    expected_message: str,
) -> None:
    for node in ("node-a", "node-gpu"):
        if node_change == "cordon":
            core.patch_node(node, {"spec": {"unschedulable": True}})
        elif node_change == "taint":
            core.patch_node(node, {"spec": {"taints": [{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}]}})
    core.create_namespaced_pod(NAMESPACE, pod_body("stuck", resources=resources))

    pod = poll(
        kubelet,
        lambda: core.read_namespaced_pod("stuck", NAMESPACE),
        lambda p: condition_status(p, "PodScheduled") == "False",
    )
    scheduled = next(c for c in pod.status.conditions if c.type == "PodScheduled")
    assert pod.status.phase == "Pending"
    assert scheduled.reason == "Unschedulable"
    assert scheduled.message == expected_message


def test_gpu_pod_lands_on_gpu_node(core: client.CoreV1Api, kubelet: SimulatedKubelet) -> None:
    core.create_namespaced_pod(
        NAMESPACE, pod_body("trainer", resources={"limits": {"nvidia.com/gpu": "2"}}, command=["sleep", "60"])
    )
    pod = poll(kubelet, lambda: core.read_namespaced_pod("trainer", NAMESPACE), lambda p: p.status.phase == "Running")
    assert pod.spec.node_name == "node-gpu"
    assert condition_status(pod, "Ready") == "True"


def test_unpullable_image_backs_off(core: client.CoreV1Api, kubelet: SimulatedKubelet) -> None:
    body = pod_body("no-image")
    body["spec"]["containers"][0]["image"] = f"{UNPULLABLE_REGISTRY}/app:1"
    core.create_namespaced_pod(NAMESPACE, body)

    def waiting_reason() -> str | None:
        statuses = core.read_namespaced_pod("no-image", NAMESPACE).status.container_statuses or []
        reason = statuses[0].state.waiting.reason if statuses and statuses[0].state.waiting else None
        return reason if reason == "ImagePullBackOff" else None

    assert kubelet.run_until(waiting_reason) == "ImagePullBackOff"
    assert core.read_namespaced_pod("no-image", NAMESPACE).status.phase == "Pending"
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_pod_log("no-image", NAMESPACE)
    assert raised.value.status == 400
    assert "is waiting to start: trying and failing to pull image" in status_body(raised.value)["message"]


def test_lost_node_fails_its_pods(core: client.CoreV1Api, kubelet: SimulatedKubelet) -> None:
    core.create_namespaced_pod(
        NAMESPACE, pod_body("stranded", command=["sleep", "infinity"], nodeSelector={"accelerator": "nvidia"})
    )
    kubelet.run_until(lambda: core.read_namespaced_pod("stranded", NAMESPACE).status.phase == "Running")

    kubelet.lose_node("node-gpu")
    pod = poll(kubelet, lambda: core.read_namespaced_pod("stranded", NAMESPACE), lambda p: p.status.phase == "Failed")
    assert pod.status.reason == "NodeLost"
    node = core.read_node("node-gpu")
    assert condition_status(node, "Ready") == "Unknown"
    assert {taint.key for taint in node.spec.taints} == {"node.kubernetes.io/unreachable"}

    core.create_namespaced_pod(NAMESPACE, pod_body("latecomer", nodeSelector={"accelerator": "nvidia"}))
    late = poll(
        kubelet,
        lambda: core.read_namespaced_pod("latecomer", NAMESPACE),
        lambda p: condition_status(p, "PodScheduled") == "False",
    )
    assert "untolerated taint {node.kubernetes.io/unreachable: }" in late.status.conditions[0].message


def test_crash_looping_container_restarts(core: client.CoreV1Api, kubelet: SimulatedKubelet) -> None:
    core.create_namespaced_pod(
        NAMESPACE, pod_body("flaky", command=["sh", "-c", "echo attempt; exit 1"], restartPolicy="Always")
    )
    pod = poll(
        kubelet,
        lambda: core.read_namespaced_pod("flaky", NAMESPACE),
        lambda p: p.status.container_statuses and p.status.container_statuses[0].restart_count >= 1,
    )
    assert pod.status.phase == "Running"
    assert core.read_namespaced_pod_log("flaky", NAMESPACE, previous=True) == "attempt\n"


def test_manual_clock_controls_run_time(server: FakeApiServer, core: client.CoreV1Api) -> None:
    clock = ManualClock()
    stepped = SimulatedKubelet(server, clock=clock)
    stepped.add_node("node-1")
    core.create_namespaced_pod(
        NAMESPACE, pod_body("timed", command=["sh", "-c", "echo start; sleep 10; echo done; exit 4"])
    )

    stepped.step()
    assert core.read_namespaced_pod("timed", NAMESPACE).status.phase == "Running"
    assert core.read_namespaced_pod_log("timed", NAMESPACE) == "start\n"

    clock.advance(9)
    stepped.step()
    assert core.read_namespaced_pod("timed", NAMESPACE).status.phase == "Running"

    clock.advance(1)
    stepped.step()
    pod = core.read_namespaced_pod("timed", NAMESPACE)
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 4
    assert core.read_namespaced_pod_log("timed", NAMESPACE) == "start\ndone\n"


# Logs and exec


def test_log_query_parameters(core: client.CoreV1Api, kubelet: SimulatedKubelet) -> None:
    body = pod_body("chatty", command=["sh", "-c", "echo one; echo two; echo three"])
    body["spec"]["containers"].append({"name": "side", "image": "busybox:1.36", "command": ["echo", "from side"]})
    core.create_namespaced_pod(NAMESPACE, body)
    kubelet.run_until(lambda: core.read_namespaced_pod("chatty", NAMESPACE).status.phase == "Succeeded")

    assert core.read_namespaced_pod_log("chatty", NAMESPACE, container="main") == "one\ntwo\nthree\n"
    assert core.read_namespaced_pod_log("chatty", NAMESPACE, container="main", tail_lines=2) == "two\nthree\n"
    assert core.read_namespaced_pod_log("chatty", NAMESPACE, container="side") == "from side\n"
    stamped = core.read_namespaced_pod_log("chatty", NAMESPACE, container="main", timestamps=True).splitlines()
    assert stamped[0].endswith("Z one")
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_pod_log("chatty", NAMESPACE)
    assert (
        status_body(raised.value)["message"]
        == "a container name must be specified for pod chatty, choose one of: [main side]"
    )


def test_log_follow_streams_until_exit(core: client.CoreV1Api, kubelet: SimulatedKubelet) -> None:
    core.create_namespaced_pod(
        NAMESPACE, pod_body("ticker", command=["sh", "-c", "echo a; sleep 0.3; echo b; sleep 0.3; echo c"])
    )
    kubelet.run_until(lambda: core.read_namespaced_pod("ticker", NAMESPACE).status.phase == "Running")
    lines = list(watch.Watch().stream(core.read_namespaced_pod_log, "ticker", NAMESPACE, follow=True))
    assert lines == ["a", "b", "c"]


def test_exec_returns_output_and_exit_code(core: client.CoreV1Api, kubelet: SimulatedKubelet) -> None:
    core.create_namespaced_pod(
        NAMESPACE, pod_body("shell", command=["sleep", "infinity"], env=[{"name": "GREETING", "value": "hello"}])
    )
    kubelet.run_until(lambda: core.read_namespaced_pod("shell", NAMESPACE).status.phase == "Running")

    output = stream(
        core.connect_get_namespaced_pod_exec,
        "shell",
        NAMESPACE,
        command=["sh", "-c", "echo $GREETING from $HOSTNAME"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
    assert output == "hello from shell\n"

    session = stream(
        core.connect_get_namespaced_pod_exec,
        "shell",
        NAMESPACE,
        command=["sh", "-c", "echo oops >&2; exit 3"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    session.run_forever(timeout=5)
    assert session.returncode == 3
    assert session.read_stderr() == "oops\n"


# Deletion


@pytest.mark.parametrize(
    "policy, pods_remain",
    [
        pytest.param("Background", False, id="background"),
        pytest.param("Foreground", False, id="foreground"),
        pytest.param("Orphan", True, id="orphan"),
        pytest.param(None, True, id="default-orphans-job-pods"),
    ],
)
def test_job_delete_propagation(
    core: client.CoreV1Api, batch: client.BatchV1Api, kubelet: SimulatedKubelet, policy: str | None, pods_remain: bool
) -> None:
    batch.create_namespaced_job(NAMESPACE, job_body("doomed-job", "sleep 3600", parallelism=2, completions=2))
    selector = "batch.kubernetes.io/job-name=doomed-job"
    kubelet.run_until(
        lambda: (
            len(
                [
                    p
                    for p in core.list_namespaced_pod(NAMESPACE, label_selector=selector).items
                    if p.status.phase == "Running"
                ]
            )
            == 2
        )
    )

    options = {"propagation_policy": policy} if policy else {}
    batch.delete_namespaced_job("doomed-job", NAMESPACE, **options)
    kubelet.run_until(lambda: not batch.list_namespaced_job(NAMESPACE).items)

    if pods_remain:
        pods = core.list_namespaced_pod(NAMESPACE, label_selector=selector).items
        assert len(pods) == 2
        assert all(not pod.metadata.owner_references for pod in pods)
    else:
        kubelet.run_until(lambda: not core.list_namespaced_pod(NAMESPACE, label_selector=selector).items)


def test_deployment_background_delete_removes_pods(
    core: client.CoreV1Api, apps: client.AppsV1Api, kubelet: SimulatedKubelet
) -> None:
    apps.create_namespaced_deployment(NAMESPACE, deployment_body("gone", 2))
    kubelet.run_until(lambda: len(core.list_namespaced_pod(NAMESPACE, label_selector="app=gone").items) == 2)
    apps.delete_namespaced_deployment("gone", NAMESPACE)
    kubelet.run_until(lambda: not core.list_namespaced_pod(NAMESPACE, label_selector="app=gone").items)
    assert apps.list_namespaced_replica_set(NAMESPACE).items == []


def test_running_pod_deletion_is_graceful(core: client.CoreV1Api, kubelet: SimulatedKubelet) -> None:
    core.create_namespaced_pod(NAMESPACE, pod_body("graceful", command=["sleep", "infinity"]))
    kubelet.run_until(lambda: core.read_namespaced_pod("graceful", NAMESPACE).status.phase == "Running")
    kubelet.stop()
    terminating = core.delete_namespaced_pod("graceful", NAMESPACE)
    assert terminating.metadata.deletion_timestamp is not None
    assert core.read_namespaced_pod("graceful", NAMESPACE).metadata.deletion_timestamp is not None

    kubelet.step()
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_pod("graceful", NAMESPACE)
    assert raised.value.status == 404


def test_namespace_delete_removes_contents(core: client.CoreV1Api, batch: client.BatchV1Api) -> None:
    core.create_namespace({"metadata": {"name": "scratch"}})
    core.create_namespaced_pod("scratch", pod_body("temp"))
    batch.create_namespaced_job("scratch", job_body("temp-job", "true"))
    core.delete_namespace("scratch")
    with pytest.raises(ApiException) as raised:
        core.read_namespace("scratch")
    assert raised.value.status == 404
    assert core.list_pod_for_all_namespaces(field_selector="metadata.namespace=scratch").items == []
