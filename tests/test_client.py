"""SkyShiftClient and AsyncSkyShiftClient against a real API server on a real etcd."""

from __future__ import annotations

import json

import pytest

from skyshift_core.client import (
    AsyncSkyShiftClient,
    SkyShiftClient,
    error_from_status,
    parse_watch_line,
)
from skyshift_core.errors import (
    AlreadyExistsError,
    BadRequestError,
    ConflictError,
    GoneError,
    InvalidError,
    NotFoundError,
    RequestTimeoutError,
    ServerUnreachableError,
    SkyShiftError,
    UnavailableError,
    UnsupportedMediaTypeError,
)
from skyshift_core.local.processes import free_port
from skyshift_core.objects import Job


def job(name: str, **spec) -> dict:
    return {
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"image": "ubuntu:22.04", **spec},
    }


@pytest.fixture
def client(api_server: str, admin_token: str):
    with SkyShiftClient(api_server, token=admin_token) as instance:
        yield instance


def test_client_create_get_list(client: SkyShiftClient):
    created = client.create(job("train", replicas=2))
    fetched = client.get("jobs", "train")
    listed = client.list("jb")

    assert created["metadata"]["namespace"] == "default"
    assert fetched["spec"]["replicas"] == 2
    assert fetched["metadata"]["resource_version"] == created["metadata"]["resource_version"]
    assert listed["kind"] == "JobList"
    assert [item["metadata"]["name"] for item in listed["items"]] == ["train"]


def test_client_accepts_object_models(client: SkyShiftClient):
    created = client.create(Job(metadata={"name": "typed"}))

    assert client.get(Job, "typed")["metadata"]["uid"] == created["metadata"]["uid"]


def test_client_update_bumps_generation(client: SkyShiftClient):
    created = client.create(job("train"))
    manifest = job("train", replicas=3)
    manifest["metadata"]["resource_version"] = created["metadata"]["resource_version"]

    updated = client.update(manifest)

    assert updated["spec"]["replicas"] == 3
    assert updated["metadata"]["generation"] == 2


def test_client_update_status_keeps_spec(client: SkyShiftClient):
    created = client.create(job("train", replicas=2))
    created["status"]["phase"] = "Running"
    created["spec"]["replicas"] = 5  # Ignored: the status subresource writes only status.

    updated = client.update_status(created)

    assert updated["status"]["phase"] == "Running"
    assert updated["spec"]["replicas"] == 2


def test_client_merge_patch(client: SkyShiftClient):
    client.create(job("train"))

    patched = client.patch("job", "train", {"metadata": {"labels": {"tier": "gpu"}}, "spec": {"replicas": 4}})

    assert patched["metadata"]["labels"] == {"app": "train", "tier": "gpu"}
    assert patched["spec"]["replicas"] == 4


def test_client_json_patch_on_status(client: SkyShiftClient):
    client.create(job("train"))

    patched = client.patch(
        "job", "train", [{"op": "replace", "path": "/status/phase", "value": "Failed"}],
        patch_type="json", subresource="status",
    )  # fmt: skip

    assert patched["status"]["phase"] == "Failed"


def test_client_delete_returns_last_state(client: SkyShiftClient):
    client.create(job("train"))

    deleted = client.delete("jobs", "train")

    assert deleted["metadata"]["name"] == "train"
    with pytest.raises(NotFoundError):
        client.get("jobs", "train")


def test_client_cluster_scoped_and_namespaced_paths(client: SkyShiftClient):
    client.create({"kind": "Namespace", "metadata": {"name": "dev"}})
    client.create(job("a"), namespace="dev")
    client.create(job("b"))

    in_dev = client.list("jobs", "dev")
    everywhere = client.list("jobs", all_namespaces=True)
    namespaces = client.list("namespaces")

    assert [item["metadata"]["name"] for item in in_dev["items"]] == ["a"]
    assert sorted(item["metadata"]["name"] for item in everywhere["items"]) == ["a", "b"]
    assert {item["metadata"]["name"] for item in namespaces["items"]} == {"default", "dev"}


def test_client_label_selector_string_and_mapping(client: SkyShiftClient):
    client.create(job("web"))
    client.create(job("db"))

    by_string = client.list("jobs", label_selector="app in (web)")
    by_mapping = client.list("jobs", label_selector={"app": "db"})

    assert [item["metadata"]["name"] for item in by_string["items"]] == ["web"]
    assert [item["metadata"]["name"] for item in by_mapping["items"]] == ["db"]


def test_client_field_selector(client: SkyShiftClient):
    client.create(job("web"))
    client.create(job("db"))

    listed = client.list_all("jobs", field_selector="metadata.name!=web")

    assert [item["metadata"]["name"] for item in listed["items"]] == ["db"]


def test_client_watch_field_selector(client: SkyShiftClient):
    start = client.list("jobs")["metadata"]["resource_version"]
    client.create(job("web"))
    client.create(job("db"))

    events = client.watch("jobs", resource_version=start, field_selector="metadata.name=db", timeout_seconds=2)
    names = [(event_type, obj["metadata"]["name"]) for event_type, obj in events]

    assert names == [("ADDED", "db")]


def test_client_pagination_and_list_all(client: SkyShiftClient):
    for name in ("a", "b", "c"):
        client.create(job(name))

    first = client.list("jobs", limit=2)
    rest = client.list("jobs", limit=2, continue_token=first["metadata"]["continue"])
    everything = client.list_all("jobs", page_size=1)

    assert len(first["items"]) == 2
    assert [item["metadata"]["name"] for item in rest["items"]] == ["c"]
    assert "continue" not in rest["metadata"]
    assert [item["metadata"]["name"] for item in everything["items"]] == ["a", "b", "c"]
    assert everything["metadata"]["resource_version"] == first["metadata"]["resource_version"]


def test_client_not_found_carries_server_message(client: SkyShiftClient):
    with pytest.raises(NotFoundError) as raised:
        client.get("jobs", "missing")

    assert raised.value.message == "Job 'default/missing' not found"


def test_client_already_exists(client: SkyShiftClient):
    client.create(job("train"))

    with pytest.raises(AlreadyExistsError):
        client.create(job("train"))


def test_client_stale_resource_version_conflicts(client: SkyShiftClient):
    created = client.create(job("train"))
    client.patch("jobs", "train", {"spec": {"replicas": 2}})
    stale = job("train", replicas=3)
    stale["metadata"]["resource_version"] = created["metadata"]["resource_version"]

    with pytest.raises(ConflictError) as raised:
        client.update(stale)

    assert "was modified" in raised.value.message


def test_client_invalid_manifest_names_field(client: SkyShiftClient):
    with pytest.raises(InvalidError) as raised:
        client.create(job("train", replicas=0))

    assert "spec.replicas" in raised.value.message


def test_client_bad_selector_is_bad_request(client: SkyShiftClient):
    with pytest.raises(BadRequestError):
        client.list("jobs", label_selector="app in (")


def test_client_unknown_kind_suggests(client: SkyShiftClient):
    with pytest.raises(InvalidError) as raised:
        client.list("jobz")

    assert "did you mean 'jobs'" in raised.value.message


def test_client_unreachable_server_message():
    url = f"http://127.0.0.1:{free_port()}"

    with SkyShiftClient(url, timeout=2) as unreachable, pytest.raises(ServerUnreachableError) as raised:
        unreachable.get("jobs", "x")

    assert raised.value.message.startswith(f"cannot reach the SkyShift API server at {url}: ")
    assert raised.value.message.endswith("; start it with 'skyshift up' or pass --server")
    assert isinstance(raised.value, UnavailableError)


def test_client_https_to_plain_server(api_server: str):
    tls_url = api_server.replace("http://", "https://")

    with SkyShiftClient(tls_url, timeout=5) as mismatched, pytest.raises(ServerUnreachableError) as raised:
        mismatched.get("jobs", "x")

    assert raised.value.message.startswith(f"the server at {tls_url} does not speak TLS")
    assert raised.value.message.endswith(f"try {api_server} instead")


async def test_async_client_https_to_plain_server(api_server: str):
    tls_url = api_server.replace("http://", "https://")

    async with AsyncSkyShiftClient(tls_url, timeout=5) as mismatched:
        with pytest.raises(ServerUnreachableError) as requested:
            await mismatched.list("jobs")
        with pytest.raises(ServerUnreachableError) as watched:
            async for _ in mismatched.watch("jobs"):
                pass

    assert requested.value.message.endswith(f"try {api_server} instead")
    assert watched.value.message.endswith(f"try {api_server} instead")


def test_client_is_ready(client: SkyShiftClient):
    assert client.is_ready()
    with SkyShiftClient(f"http://127.0.0.1:{free_port()}") as unreachable:
        assert not unreachable.is_ready()


def test_client_rejects_url_without_scheme():
    with pytest.raises(InvalidError):
        SkyShiftClient("127.0.0.1:50051")


def test_client_watch_replays_changes(client: SkyShiftClient):
    start = client.list("jobs")["metadata"]["resource_version"]
    client.create(job("train"))
    client.patch("jobs", "train", {"spec": {"replicas": 2}})
    client.delete("jobs", "train")

    events = []
    for event_type, obj in client.watch("jobs", resource_version=start):
        events.append((event_type, obj["metadata"]["name"]))
        if len(events) == 3:
            break

    assert events == [("ADDED", "train"), ("MODIFIED", "train"), ("DELETED", "train")]


def test_client_watch_hides_bookmarks_by_default(client: SkyShiftClient):
    # The test server sends a bookmark every second, so a 2 s watch receives at least one.
    start = client.list("jobs")["metadata"]["resource_version"]

    hidden = list(client.watch("jobs", resource_version=start, timeout_seconds=2))
    first_event = next(iter(client.watch("jobs", resource_version=start, timeout_seconds=2, bookmarks=True)))

    assert hidden == []
    assert first_event[0] == "BOOKMARK"
    assert first_event[1]["metadata"]["resource_version"] == start


async def test_client_watch_compacted_version_is_gone(client: SkyShiftClient, store):
    for name in ("a", "b", "c"):
        client.create(job(name))
    latest = int(client.list("jobs")["metadata"]["resource_version"])
    await store.compact(latest)

    with pytest.raises(GoneError):
        next(iter(client.watch("jobs", resource_version="1")))


async def test_async_client_crud_and_watch(api_server: str, admin_token: str):
    async with AsyncSkyShiftClient(api_server, token=admin_token) as client:
        start = (await client.list("jobs"))["metadata"]["resource_version"]
        created = await client.create(job("train"))
        patched = await client.patch("jobs", "train", {"spec": {"replicas": 3}})
        listed = await client.list_all("jobs")
        await client.delete("jobs", "train")
        with pytest.raises(NotFoundError):
            await client.get("jobs", "train")

        events = []
        async for event_type, obj in client.watch("jobs", resource_version=start):
            events.append((event_type, obj["spec"]["replicas"]))
            if len(events) == 3:
                break

    assert created["metadata"]["generation"] == 1
    assert patched["metadata"]["generation"] == 2
    assert [item["metadata"]["name"] for item in listed["items"]] == ["train"]
    assert events == [("ADDED", 1), ("MODIFIED", 3), ("DELETED", 3)]


async def test_async_client_unreachable():
    async with AsyncSkyShiftClient(f"http://127.0.0.1:{free_port()}", timeout=2) as client:
        with pytest.raises(ServerUnreachableError):
            await client.list("jobs")
        assert not await client.is_ready()


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"code": 422, "reason": "Invalid", "message": "m"}, InvalidError),
        ({"code": 400, "reason": "BadRequest", "message": "m"}, BadRequestError),
        ({"code": 404, "reason": "NotFound", "message": "m"}, NotFoundError),
        ({"code": 409, "reason": "AlreadyExists", "message": "m"}, AlreadyExistsError),
        ({"code": 409, "reason": "Conflict", "message": "m"}, ConflictError),
        ({"code": 410, "reason": "Expired", "message": "m"}, GoneError),
        ({"code": 410, "reason": "Gone", "message": "m"}, GoneError),
        ({"code": 503, "reason": "ServiceUnavailable", "message": "m"}, UnavailableError),
        ({"code": 415, "reason": "UnsupportedMediaType", "message": "m"}, UnsupportedMediaTypeError),
        ({"code": 504, "reason": "Timeout", "message": "m"}, RequestTimeoutError),
        # An unknown reason falls back to the HTTP code.
        ({"code": 404, "reason": "SomethingElse", "message": "m"}, NotFoundError),
    ],
    ids=[
        "invalid", "bad-request", "not-found", "exists", "conflict", "expired", "gone", "unavailable",
        "media-type", "timeout", "by-code",
    ],  # fmt: skip
)
def test_error_from_status_maps_reason(status: dict, expected: type[SkyShiftError]):
    error = error_from_status(status)

    assert type(error) is expected
    assert error.message == "m"


def test_error_from_status_keeps_unknown_code():
    error = error_from_status({"code": 502, "reason": "BadGateway", "message": "upstream failed"})

    assert type(error) is SkyShiftError
    assert error.status_code == 502
    assert error.reason == "BadGateway"


def test_watch_error_event_410_raises_gone():
    line = json.dumps(
        {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}}
    )

    with pytest.raises(GoneError) as raised:
        parse_watch_line(line)

    assert raised.value.message == "too old"


def test_watch_line_parsing():
    assert parse_watch_line("") is None
    assert parse_watch_line('{"type": "ADDED", "object": {"a": 1}}') == ("ADDED", {"a": 1})
    with pytest.raises(UnavailableError):
        parse_watch_line("not json")


def test_client_sends_token_and_extra_headers():
    client = SkyShiftClient("http://127.0.0.1:1", token="secret", headers={"X-Fence": "lease/one"})

    assert client.headers["Authorization"] == "Bearer secret"
    assert client.headers["X-Fence"] == "lease/one"
    assert client._http.headers["X-Fence"] == "lease/one"
    client.close()
