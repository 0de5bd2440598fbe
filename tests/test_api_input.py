"""The API server against careless input: submitted status, out-of-range integers, field selectors,
resource versions, content types and body types. Each error is a Status body that names the value."""

from __future__ import annotations

import base64
import json
import re
import threading

import httpx
import pytest

import skyshift_core.store.etcd as etcd_store
from skyshift_core.objects import kinds
from skyshift_core.store.etcd import MAX_REVISION
from manifests_minimal import MINIMAL

JOBS = "/api/v1/namespaces/default/jobs"
MERGE = {"content-type": "application/merge-patch+json"}
TOO_BIG = str(MAX_REVISION + 1)  # 9223372036854775808, one past int64.
INT64_RANGE = f"from 0 to {MAX_REVISION}"


def collection_path(kind: str, namespace: str = "default") -> str:
    model = kinds()[kind]
    if model.namespaced:
        return f"/api/v1/namespaces/{namespace}/{model.plural}"
    return f"/api/v1/{model.plural}"


def make_job(api: httpx.Client, name: str, namespace: str = "default", labels: dict | None = None) -> dict:
    body = {"kind": "Job", "metadata": {"name": name, "labels": labels or {}}, "spec": {"run": "true"}}
    response = api.post(collection_path("Job", namespace), json=body)
    assert response.status_code == 201, response.text
    return response.json()


def set_phase(api: httpx.Client, name: str, phase: str) -> dict:
    response = api.patch(f"{JOBS}/{name}/status", json={"status": {"phase": phase}}, headers=MERGE)
    assert response.status_code == 200, response.text
    return response.json()


def assert_status(response: httpx.Response, code: int, reason: str) -> str:
    """Check that `response` is a Status body with `code` and `reason`; return its message."""
    assert response.status_code == code, response.text
    body = response.json()
    assert body["kind"] == "Status"
    assert body["code"] == code
    assert body["reason"] == reason
    return body["message"]


def names(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["metadata"]["name"] for item in response.json()["items"]}


def current_revision(api: httpx.Client) -> int:
    return int(api.get(JOBS).json()["metadata"]["resource_version"])


@pytest.fixture
def short_wait(monkeypatch):
    """Make a read with a resource_version newer than etcd's revision give up after 0.2 s, not 3 s.

    The `api_server` fixture runs the server in this process, so the module setting reaches it."""
    monkeypatch.setattr(etcd_store, "RESOURCE_VERSION_WAIT", 0.2)


# ---- status on create -------------------------------------------------------------------------

# A status for every kind that differs from the kind's default; create must drop each.
SUBMITTED_STATUS = {
    "Cluster": {"phase": "READY"},
    "Job": {"phase": "Succeeded", "placement": {"c1": 1}},
    "Service": {"addresses": {"c1": ["10.0.0.1"]}},
    "Endpoints": {"note": "set by hand"},
    "Link": {"phase": "ACTIVE"},
    "FilterPolicy": {"note": "set by hand"},
    "Namespace": {"phase": "Terminating"},
    "Role": {"note": "set by hand"},
    "User": {"note": "set by hand"},
    "Event": {"note": "set by hand"},
}


def default_status(kind: str) -> dict:
    value = kinds()[kind].model_fields["status"].get_default(call_default_factory=True)
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def test_every_kind_with_status_is_covered():
    assert set(SUBMITTED_STATUS) == {kind for kind, model in kinds().items() if "status" in model.model_fields}


@pytest.mark.parametrize("kind", sorted(SUBMITTED_STATUS))
def test_create_drops_submitted_status(api, kind):
    manifest = {**MINIMAL[kind], "status": SUBMITTED_STATUS[kind]}
    name = manifest["metadata"]["name"]

    created = api.post(collection_path(kind), json=manifest)

    assert created.status_code == 201, created.text
    assert created.json()["status"] == default_status(kind)
    assert api.get(f"{collection_path(kind)}/{name}").json()["status"] == default_status(kind)


def test_saved_job_recreated_runs_again(api):
    # get -o yaml > f; delete; apply -f f: the saved manifest carries the old status.
    make_job(api, "rerun")
    api.patch(f"{JOBS}/rerun/status", json={"status": {"phase": "Succeeded", "placement": {"c1": 1}}}, headers=MERGE)
    saved = api.get(f"{JOBS}/rerun").json()
    assert saved["status"]["phase"] == "Succeeded"
    assert api.delete(f"{JOBS}/rerun").status_code == 200

    recreated = api.post(JOBS, json=saved)

    assert recreated.status_code == 201, recreated.text
    assert recreated.json()["status"]["phase"] == "Pending"
    assert recreated.json()["status"]["placement"] == {}
    assert recreated.json()["metadata"]["uid"] != saved["metadata"]["uid"]


def test_yaml_create_drops_submitted_status(api):
    manifest = "kind: Job\nmetadata: {name: from-yaml}\nspec: {run: 'true'}\nstatus: {phase: Failed}\n"

    created = api.post(JOBS, content=manifest, headers={"content-type": "application/yaml"})

    assert created.status_code == 201, created.text
    assert created.json()["status"]["phase"] == "Pending"


def test_status_written_after_create_is_kept(api):
    make_job(api, "later")

    written = set_phase(api, "later", "Running")

    assert written["status"]["phase"] == "Running"
    assert api.get(f"{JOBS}/later").json()["status"]["phase"] == "Running"


# ---- integer query parameters -----------------------------------------------------------------

# Each case: the path with its query, then parts the message must contain (parameter, value, range).
OUT_OF_RANGE = [
    pytest.param(f"{JOBS}?limit={TOO_BIG}", ["'limit'", TOO_BIG, INT64_RANGE], id="limit-too-big"),
    pytest.param(f"{JOBS}?limit=-1", ["'limit'", "'-1'", INT64_RANGE], id="limit-negative"),
    pytest.param(f"{JOBS}?limit=ten", ["'limit'", "'ten'", INT64_RANGE], id="limit-not-a-number"),
    pytest.param(f"{JOBS}?resourceVersion={TOO_BIG}", ["resourceVersion", TOO_BIG, INT64_RANGE], id="list-rv"),
    pytest.param(f"{JOBS}/x?resource_version={TOO_BIG}", ["resource_version", TOO_BIG, INT64_RANGE], id="get-rv"),
    pytest.param(
        f"{JOBS}?watch=true&resource_version={TOO_BIG}", ["resource_version", TOO_BIG, INT64_RANGE], id="watch-rv"
    ),
    pytest.param(
        f"{JOBS}?watch=true&timeoutSeconds={TOO_BIG}", ["'timeoutSeconds'", TOO_BIG, "from 1 to 3600"], id="watch-timeout"
    ),
]


@pytest.mark.parametrize(("path", "parts"), OUT_OF_RANGE)
def test_out_of_range_query_integer_is_400(api, path, parts):
    message = assert_status(api.get(path), 400, "BadRequest")

    for part in parts:
        assert part in message


def test_largest_limit_is_accepted(api):
    make_job(api, "only")

    assert names(api.get(JOBS, params={"limit": str(MAX_REVISION)})) == {"only"}


def continue_token(start: bytes, revision) -> str:
    payload = json.dumps({"start": base64.b64encode(start).decode(), "rv": revision}).encode()
    return base64.urlsafe_b64encode(payload).decode()


@pytest.mark.parametrize("revision", [MAX_REVISION + 1, -1, 0, "12"], ids=["too-big", "negative", "zero", "string"])
def test_continue_token_bad_revision_is_400(api, revision):
    make_job(api, "a")
    make_job(api, "b")
    real = api.get(JOBS, params={"limit": "1"}).json()["metadata"]["continue"]
    start = base64.b64decode(json.loads(base64.urlsafe_b64decode(real))["start"])

    response = api.get(JOBS, params={"limit": "1", "continue": continue_token(start, revision)})

    message = assert_status(response, 400, "BadRequest")
    assert message == "invalid continue token: pass the token from the previous list response unchanged"


def test_continue_token_future_revision_is_400(api):
    # etcd reports a future revision like a compacted one; the token is invalid, not expired.
    make_job(api, "a")
    make_job(api, "b")
    real = api.get(JOBS, params={"limit": "1"}).json()["metadata"]["continue"]
    start = base64.b64decode(json.loads(base64.urlsafe_b64decode(real))["start"])
    future = current_revision(api) + 1000

    response = api.get(JOBS, params={"limit": "1", "continue": continue_token(start, future)})

    message = assert_status(response, 400, "BadRequest")
    assert message.startswith(f"invalid continue token: it refers to revision {future}, but etcd is at revision ")
    assert message.endswith("; pass the token from the previous list response unchanged")


# Each case: the method, the query, the body (a merge patch for PATCH), then the name that the message uses.
PRECONDITIONS_OUT_OF_RANGE = [
    pytest.param("PUT", {}, {"metadata": {"name": "pre", "resource_version": TOO_BIG}}, "metadata.resource_version", id="put-body"),
    pytest.param("PUT", {"resourceVersion": TOO_BIG}, {"metadata": {"name": "pre"}}, "query parameter resourceVersion", id="put-query"),
    pytest.param("PATCH", {}, {"metadata": {"resource_version": TOO_BIG}}, "metadata.resource_version", id="patch-body"),
    pytest.param("PATCH", {"resource_version": TOO_BIG}, {"spec": {"replicas": 2}}, "query parameter resource_version", id="patch-query"),
    pytest.param("DELETE", {"resource_version": TOO_BIG}, None, "query parameter resource_version", id="delete-query"),
    pytest.param("DELETE", {}, {"preconditions": {"resourceVersion": TOO_BIG}}, "preconditions.resourceVersion", id="delete-body"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "params", "body", "what"), PRECONDITIONS_OUT_OF_RANGE)
def test_precondition_out_of_range_is_400(api, method, params, body, what):
    make_job(api, "pre")
    if method == "PUT":
        body = {"kind": "Job", "spec": {"run": "true"}, **body}
    headers = MERGE if method == "PATCH" else {}
    content = json.dumps(body).encode() if body is not None else None

    response = api.request(method, f"{JOBS}/pre", params=params, content=content, headers=headers)

    message = assert_status(response, 400, "BadRequest")
    assert message == f"invalid {what} '{TOO_BIG}': expected an integer {INT64_RANGE}"
    assert api.get(f"{JOBS}/pre").status_code == 200


def test_logs_tail_out_of_range_is_400(api):
    make_job(api, "logged")

    message = assert_status(api.get(f"{JOBS}/logged/logs", params={"tail": TOO_BIG}), 400, "BadRequest")

    assert message == f"invalid value '{TOO_BIG}' for query parameter 'tail': expected an integer from {-MAX_REVISION - 1} to {MAX_REVISION}"


# ---- field selectors --------------------------------------------------------------------------


@pytest.fixture
def three_jobs(api):
    api.post("/api/v1/namespaces", json={"kind": "Namespace", "metadata": {"name": "dev"}})
    make_job(api, "web", labels={"app": "web"})
    make_job(api, "db", labels={"app": "db"})
    make_job(api, "web", namespace="dev", labels={"app": "web"})


# Each case: the path, the fieldSelector, then the (namespace, name) pairs listed.
FIELD_SELECTIONS = [
    pytest.param(JOBS, "metadata.name=web", {("default", "web")}, id="name-equals"),
    pytest.param(JOBS, "metadata.name==web", {("default", "web")}, id="name-double-equals"),
    pytest.param(JOBS, "metadata.name!=web", {("default", "db")}, id="name-not-equals"),
    pytest.param("/api/v1/jobs", "metadata.name=web", {("default", "web"), ("dev", "web")}, id="all-namespaces"),
    pytest.param("/api/v1/jobs", "metadata.namespace=dev", {("dev", "web")}, id="namespace"),
    pytest.param("/api/v1/jobs", "metadata.name=web,metadata.namespace!=dev", {("default", "web")}, id="two-clauses"),
    pytest.param(JOBS, " metadata.name = db ", {("default", "db")}, id="spaces"),
    pytest.param(JOBS, "metadata.name=nothing", set(), id="no-match"),
    pytest.param(JOBS, "", {("default", "web"), ("default", "db")}, id="empty"),
]


@pytest.mark.parametrize(("path", "selector", "expected"), FIELD_SELECTIONS)
def test_field_selector_filters_list(api, three_jobs, path, selector, expected):
    response = api.get(path, params={"fieldSelector": selector})

    assert response.status_code == 200, response.text
    assert {(item["metadata"]["namespace"], item["metadata"]["name"]) for item in response.json()["items"]} == expected


def test_field_selector_snake_case_spelling(api, three_jobs):
    assert names(api.get(JOBS, params={"field_selector": "metadata.name=db"})) == {"db"}


def test_field_selector_with_label_selector(api, three_jobs):
    response = api.get("/api/v1/jobs", params={"fieldSelector": "metadata.namespace=default", "labelSelector": "app=web"})

    assert names(response) == {"web"}


def test_field_selector_on_cluster_scoped_kind(api):
    response = api.get("/api/v1/namespaces", params={"fieldSelector": "metadata.name=default"})

    assert names(response) == {"default"}


def test_field_selector_status_phase(api, three_jobs):
    set_phase(api, "db", "Running")

    assert names(api.get(JOBS, params={"fieldSelector": "status.phase=Running"})) == {"db"}
    assert names(api.get(JOBS, params={"fieldSelector": "status.phase!=Running"})) == {"web"}


def test_field_selector_with_limit_pages(api, three_jobs):
    first = api.get("/api/v1/jobs", params={"fieldSelector": "metadata.name=web", "limit": "1"}).json()
    second = api.get("/api/v1/jobs", params={"fieldSelector": "metadata.name=web", "limit": "1", "continue": first["metadata"]["continue"]}).json()

    pages = [(item["metadata"]["namespace"], item["metadata"]["name"]) for item in first["items"] + second["items"]]
    assert pages == [("default", "web"), ("dev", "web")]
    assert "continue" not in second["metadata"]


# Each case: the path, the fieldSelector, then the expected message.
FIELD_SELECTOR_ERRORS = [
    pytest.param(
        JOBS,
        "spec.run=true",
        "field label not supported: spec.run; supported fields: metadata.name, metadata.namespace, status.phase (on jobs)",
        id="unsupported-field",
    ),
    pytest.param(
        "/api/v1/services",
        "status.phase=Running",
        "field label not supported: status.phase; supported fields: metadata.name, metadata.namespace (on services)",
        id="no-phase",
    ),
    pytest.param(
        JOBS,
        "metadata.name",
        "invalid field selector clause 'metadata.name': expected 'field=value', 'field==value' or 'field!=value', "
        "with '\\' before a ',' or '=' inside a value (on jobs)",
        id="no-operator",
    ),
    pytest.param(
        JOBS,
        "metadata.name in (a,b)",
        "invalid field selector clause 'metadata.name in (a': expected 'field=value', 'field==value' or "
        "'field!=value', with '\\' before a ',' or '=' inside a value (on jobs)",
        id="set-based",
    ),
    pytest.param(
        JOBS,
        "metadata.name=a,",
        "invalid field selector 'metadata.name=a,': empty clause; separate clauses with one comma (on jobs)",
        id="trailing-comma",
    ),
]


@pytest.mark.parametrize(("path", "selector", "message"), FIELD_SELECTOR_ERRORS)
def test_bad_field_selector_is_400(api, path, selector, message):
    response = api.get(path, params={"fieldSelector": selector})

    assert assert_status(response, 400, "BadRequest") == message


def test_bad_field_selector_on_watch_is_400(api):
    response = api.get(JOBS, params={"watch": "true", "fieldSelector": "spec.image=x"})

    assert assert_status(response, 400, "BadRequest").startswith("field label not supported: spec.image;")


def watch_events(api: httpx.Client, params: dict, count: int, trigger) -> list[tuple[str, str, str]]:
    """Open a watch, call `trigger`, and return (type, name, phase) of the first `count` non-bookmark events."""
    events: list[tuple[str, str, str]] = []
    with api.stream("GET", JOBS, params={"watch": "true", "timeoutSeconds": "20", **params}) as response:
        assert response.status_code == 200
        trigger()
        for line in response.iter_lines():
            if not line:
                continue
            event = json.loads(line)
            if event["type"] == "BOOKMARK":
                continue
            obj = event["object"]
            events.append((event["type"], obj["metadata"]["name"], obj.get("status", {}).get("phase", "")))
            if len(events) == count:
                break
    return events


def test_watch_field_selector_by_name(api):
    start = current_revision(api)

    def create() -> None:
        make_job(api, "other")
        make_job(api, "wanted")

    events = watch_events(api, {"fieldSelector": "metadata.name=wanted", "resourceVersion": str(start)}, 1, create)

    assert events == [("ADDED", "wanted", "Pending")]


def test_watch_field_selector_follows_phase(api):
    # An object that starts matching is ADDED, and one that stops matching is DELETED, as with labels.
    make_job(api, "phased")
    start = current_revision(api)

    def move() -> None:
        set_phase(api, "phased", "Running")
        set_phase(api, "phased", "Succeeded")

    events = watch_events(api, {"fieldSelector": "status.phase=Running", "resourceVersion": str(start)}, 2, move)

    assert events == [("ADDED", "phased", "Running"), ("DELETED", "phased", "Succeeded")]


def test_watch_field_selector_initial_list(api):
    make_job(api, "first")
    make_job(api, "second")

    events = watch_events(api, {"fieldSelector": "metadata.name!=first"}, 1, lambda: None)

    assert events == [("ADDED", "second", "Pending")]


# ---- resourceVersion on get, list and watch ---------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", TOO_BIG])
@pytest.mark.parametrize("path", [JOBS, f"{JOBS}/x"], ids=["list", "get"])
def test_invalid_resource_version_is_400(api, path, value):
    message = assert_status(api.get(path, params={"resourceVersion": value}), 400, "BadRequest")

    assert message == f"invalid query parameter resourceVersion {value!r}: expected an integer {INT64_RANGE}"


@pytest.mark.parametrize("version", ["0", "1", "current"])
def test_list_not_older_than_current(api, version):
    make_job(api, "seen")
    current = current_revision(api)
    requested = str(current) if version == "current" else version

    response = api.get(JOBS, params={"resourceVersion": requested})

    assert names(response) == {"seen"}
    assert int(response.json()["metadata"]["resource_version"]) >= current


def test_get_not_older_than_current(api):
    created = make_job(api, "seen")
    updated = api.patch(f"{JOBS}/seen", json={"spec": {"replicas": 2}}, headers=MERGE).json()

    response = api.get(f"{JOBS}/seen", params={"resourceVersion": created["metadata"]["resource_version"]})

    assert response.status_code == 200, response.text
    assert response.json()["metadata"]["resource_version"] == updated["metadata"]["resource_version"]


@pytest.mark.parametrize("path", [JOBS, f"{JOBS}/x", f"{JOBS}?watch=true"], ids=["list", "get", "watch"])
def test_too_large_resource_version_is_504(api, short_wait, path):
    current = current_revision(api)
    requested = current + 1000

    response = api.get(path, params={"resourceVersion": str(requested)})

    message = assert_status(response, 504, "Timeout")
    found = re.fullmatch(rf"Too large resource version: {requested}, current: (\d+); (.+)", message)
    assert found is not None, message
    assert current <= int(found.group(1)) < requested
    assert found.group(2) == (
        "use a resource_version returned by this API server, or leave resource_version out to read the latest state"
    )
    details = response.json()["details"]
    assert details["causes"] == [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]
    assert details["retry_after_seconds"] == 1
    assert response.headers["retry-after"] == "1"


def test_list_waits_for_next_revision(api, monkeypatch):
    # A generous wait: the list must return once the create below moves etcd past the version.
    monkeypatch.setattr(etcd_store, "RESOURCE_VERSION_WAIT", 30.0)
    requested = current_revision(api) + 1
    result: dict = {}

    def list_jobs() -> None:
        result["response"] = api.get(JOBS, params={"resourceVersion": str(requested)})

    lister = threading.Thread(target=list_jobs)
    lister.start()
    make_job(api, "arrives")
    lister.join(timeout=60)

    response = result["response"]
    assert response.status_code == 200, response.text
    assert int(response.json()["metadata"]["resource_version"]) >= requested


def test_resource_version_with_continue_is_400(api):
    make_job(api, "a")
    make_job(api, "b")
    page = api.get(JOBS, params={"limit": "1"}).json()

    response = api.get(JOBS, params={"limit": "1", "continue": page["metadata"]["continue"], "resourceVersion": "1"})

    message = assert_status(response, 400, "BadRequest")
    assert message.startswith("resource_version 1 cannot be combined with continue")


def test_zero_version_with_continue_accepted(api):
    make_job(api, "a")
    make_job(api, "b")
    page = api.get(JOBS, params={"limit": "1"}).json()

    response = api.get(JOBS, params={"limit": "1", "continue": page["metadata"]["continue"], "resourceVersion": "0"})

    assert names(response) == {"b"}


# ---- content types ----------------------------------------------------------------------------

UNSUPPORTED_TYPES = ["text/plain", "application/x-www-form-urlencoded", "application/xml"]


@pytest.mark.parametrize("media", UNSUPPORTED_TYPES)
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_unsupported_body_type_is_415(api, method, media):
    make_job(api, "typed")
    path = JOBS if method == "POST" else f"{JOBS}/typed"
    body = json.dumps({"kind": "Job", "metadata": {"name": "typed"}, "spec": {"run": "true"}})

    response = api.request(method, path, content=body, headers={"content-type": media})

    message = assert_status(response, 415, "UnsupportedMediaType")
    assert message == (
        f"unsupported Content-Type '{media}' for an object body: send the object as application/json or "
        "application/yaml (also application/x-yaml, text/yaml, text/x-yaml); set the Content-Type header, "
        "for example with curl: -H 'Content-Type: application/json'"
    )


@pytest.mark.parametrize("headers", [{}, {"content-type": "application/json; charset=utf-8"}], ids=["missing", "charset"])
def test_json_body_without_exact_type_is_read(api, headers):
    body = json.dumps({"kind": "Job", "metadata": {"name": "plain"}, "spec": {"run": "true"}})

    response = api.post(JOBS, content=body, headers=headers)

    assert response.status_code == 201, response.text


@pytest.mark.parametrize("media", UNSUPPORTED_TYPES)
def test_unsupported_patch_type_is_415(api, media):
    make_job(api, "patched")

    response = api.patch(f"{JOBS}/patched", content=b'{"spec": {"replicas": 2}}', headers={"content-type": media})

    message = assert_status(response, 415, "UnsupportedMediaType")
    assert message.startswith(f"unsupported patch Content-Type '{media}': use application/merge-patch+json or application/json")
    for accepted in ("application/strategic-merge-patch+json", "application/json-patch+json", "application/yaml"):
        assert accepted in message
    assert api.get(f"{JOBS}/patched").json()["spec"]["replicas"] == 1


def test_patch_as_application_json_is_merge_patch(api):
    make_job(api, "merged")

    response = api.patch(f"{JOBS}/merged", content=b'{"spec": {"replicas": 2}}', headers={"content-type": "application/json"})

    assert response.status_code == 200, response.text
    assert response.json()["spec"]["replicas"] == 2


# ---- body kinds and body types ----------------------------------------------------------------


def test_put_kind_mismatch_is_400(api):
    make_job(api, "kinded")
    body = {"kind": "Service", "metadata": {"name": "kinded"}, "spec": {}}

    message = assert_status(api.put(f"{JOBS}/kinded", json=body), 400, "BadRequest")

    assert message == (
        "kind 'Service' does not match the request path, which is for Job; "
        "send the object to the path of its kind, or set kind to 'Job'"
    )


def test_create_kind_not_string_is_400(api):
    body = {"kind": 5, "metadata": {"name": "numbered"}, "spec": {"run": "true"}}

    message = assert_status(api.post(JOBS, json=body), 400, "BadRequest")

    assert message == "kind must be the string 'Job' for this request path, got a number"


def test_patch_changing_kind_is_400(api):
    make_job(api, "kept")

    response = api.patch(f"{JOBS}/kept", json={"kind": "Service"}, headers=MERGE)

    assert assert_status(response, 400, "BadRequest").startswith("kind 'Service' does not match the request path")


# Each case: the body, then the JSON type the message names.
BODY_TYPES = [
    pytest.param(b"null", "null", id="null"),
    pytest.param(b"[1, 2]", "a list", id="list"),
    pytest.param(b'"job"', "a string", id="string"),
    pytest.param(b"7", "a number", id="number"),
    pytest.param(b"true", "a boolean", id="boolean"),
]


@pytest.mark.parametrize(("body", "type_name"), BODY_TYPES)
def test_create_body_type_in_json_terms(api, body, type_name):
    response = api.post(JOBS, content=body, headers={"content-type": "application/json"})

    message = assert_status(response, 400, "BadRequest")
    assert message == f"request body must be an object with kind, metadata and spec, got {type_name}"


def test_yaml_list_body_in_json_terms(api):
    response = api.post(JOBS, content=b"- kind: Job\n", headers={"content-type": "application/yaml"})

    assert assert_status(response, 400, "BadRequest").endswith("got a list")


@pytest.mark.parametrize(("body", "type_name"), BODY_TYPES[:3])
def test_merge_patch_type_in_json_terms(api, body, type_name):
    make_job(api, "merged")

    message = assert_status(api.patch(f"{JOBS}/merged", content=body, headers=MERGE), 400, "BadRequest")

    assert message == f'a merge patch must be an object, like {{"spec": {{"replicas": 2}}}}, got {type_name}'


def test_json_patch_type_in_json_terms(api):
    make_job(api, "listed")

    response = api.patch(f"{JOBS}/listed", json={"op": "add"}, headers={"content-type": "application/json-patch+json"})

    assert assert_status(response, 400, "BadRequest").endswith("got an object")


def test_patch_to_non_object_is_named(api):
    make_job(api, "rooted")
    operations = [{"op": "replace", "path": "", "value": "gone"}]

    response = api.patch(f"{JOBS}/rooted", json=operations, headers={"content-type": "application/json-patch+json"})

    assert assert_status(response, 422, "Invalid") == "the patch turns the object into a string; a patch must leave an object"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(b"[]", 'delete options must be an object like {"preconditions": {"resource_version": "42"}}, got a list', id="list"),
        pytest.param(b'{"preconditions": "42"}', 'preconditions must be an object like {"resource_version": "42"}, got a string', id="preconditions-string"),
    ],
)  # fmt: skip
def test_delete_options_type_in_json_terms(api, options, message):
    make_job(api, "doomed")

    response = api.request("DELETE", f"{JOBS}/doomed", content=options)

    assert assert_status(response, 400, "BadRequest") == message
    assert api.get(f"{JOBS}/doomed").status_code == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("parameter", ["dryRun", "dry_run"])
def test_dry_run_answers_and_changes_nothing(api, method: str, parameter: str):
    job = make_job(api, f"dry-{method.lower()}-{parameter.lower().replace('_', '')}")
    name = job["metadata"]["name"]
    requests = {
        "POST": (JOBS, {"kind": "Job", "metadata": {"name": name + "-new"}, "spec": {"run": "true"}}, {}, 201),
        "PUT": (f"{JOBS}/{name}", {**job, "spec": {**job["spec"], "run": "false"}}, {}, 200),
        "PATCH": (f"{JOBS}/{name}", {"spec": {"run": "false"}}, MERGE, 200),
    }
    path, body, headers, code = requests[method]
    revision = current_revision(api)

    response = api.request(method, path, params={parameter: "All"}, json=body, headers=headers)

    assert response.status_code == code, response.text
    answered = response.json()
    if method == "POST":
        assert answered["metadata"]["name"] == name + "-new"
        assert answered["metadata"]["uid"] and answered["metadata"]["resource_version"] is None
    else:
        assert answered["spec"]["run"] == "false"
        assert answered["metadata"]["generation"] == 2
        assert answered["metadata"]["resource_version"] == job["metadata"]["resource_version"]
    assert api.get(f"{JOBS}/{name}").json() == job
    assert api.get(f"{JOBS}/{name}-new").status_code == 404
    assert current_revision(api) == revision


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        pytest.param({"metadata": {"name": "taken"}}, 409, "Job 'default/taken' already exists", id="exists"),
        pytest.param(
            {"metadata": {"name": "big"}, "spec": {"run": "true", "replicas": 10000}},
            422,
            "spec.replicas: 10000 is more than 5000",
            id="admission",
        ),
    ],
)
def test_dry_run_create_runs_the_checks(api, body, code, fragment):
    make_job(api, "taken")

    response = api.post(JOBS, params={"dryRun": "All"}, json={"kind": "Job", "spec": {"run": "true"}, **body})

    assert response.status_code == code, response.text
    assert fragment in response.json()["message"]
    assert api.get(f"{JOBS}/big").status_code == 404


def test_dry_run_create_in_missing_namespace_names_it(api):
    body = {"kind": "Job", "metadata": {"name": "lost"}, "spec": {"run": "true"}}

    response = api.post("/api/v1/namespaces/nowhere/jobs", params={"dryRun": "All"}, json=body)

    assert response.status_code == 404, response.text
    assert response.json()["details"] == {"kind": "namespaces", "name": "nowhere"}
    assert response.json()["message"].startswith("namespace 'nowhere' not found")


def test_dry_run_of_delete_rejected_and_nothing_changed(api):
    job = make_job(api, "dry-delete")

    response = api.delete(f"{JOBS}/dry-delete", params={"dryRun": "All"})

    message = assert_status(response, 400, "BadRequest")
    assert message.startswith("query parameter dryRun='All' is not supported for delete")
    assert api.get(f"{JOBS}/dry-delete").json() == job


def test_unknown_dry_run_value_rejected(api):
    body = {"kind": "Job", "metadata": {"name": "dry-bogus"}, "spec": {"run": "true"}}

    response = api.post(JOBS, params={"dryRun": "server"}, json=body)

    assert assert_status(response, 400, "BadRequest") == (
        "invalid query parameter dryRun='server': the only dry run is dryRun=All"
    )
    assert api.get(f"{JOBS}/dry-bogus").status_code == 404


def test_annotations_over_limit_rejected(api):
    annotations = {f"note-{index}": "x" * 60_000 for index in range(5)}
    body = {"kind": "Job", "metadata": {"name": "fat", "annotations": annotations}, "spec": {"run": "true"}}

    response = api.post(JOBS, json=body)

    message = assert_status(response, 422, "Invalid")
    assert "metadata.annotations: annotations take 300030 bytes; the limit is 262144 (256 KiB" in message
    assert api.get(f"{JOBS}/fat").status_code == 404


def test_object_too_large_for_etcd_is_413(api):
    body = {"kind": "Job", "metadata": {"name": "huge"}, "spec": {"run": "echo " + "x" * 2_000_000}}

    response = api.post(JOBS, json=body)

    message = assert_status(response, 413, "RequestEntityTooLarge")
    assert "the object is too large for etcd" in message
    assert api.get(f"{JOBS}/huge").status_code == 404


@pytest.mark.parametrize(
    ("kind", "value", "suggestion"),
    [("Job", "Runing", "Running"), ("Job", "running", "Running"), ("Cluster", "Ready", "READY")],
)
def test_unknown_phase_in_field_selector_rejected(api, kind: str, value: str, suggestion: str):
    response = api.get(collection_path(kind), params={"fieldSelector": f"status.phase={value}"})

    message = assert_status(response, 400, "BadRequest")
    assert f"unknown status.phase {value!r} for {kinds()[kind].plural} (did you mean {suggestion!r}?)" in message


def test_patch_of_status_gets_warning_header(api):
    make_job(api, "status-patch")

    response = api.patch(f"{JOBS}/status-patch", json={"status": {"phase": "Succeeded"}}, headers=MERGE)

    assert response.status_code == 200, response.text
    assert response.json()["status"]["phase"] == "Pending"
    (warning,) = response.headers.get_list("warning")
    assert warning.startswith('299 - "the patch changes status, which only the controllers write')


def test_patch_of_spec_gets_no_warning_header(api):
    make_job(api, "spec-patch")

    response = api.patch(f"{JOBS}/spec-patch", json={"spec": {"replicas": 2}}, headers=MERGE)

    assert response.status_code == 200, response.text
    assert response.headers.get_list("warning") == []


# ---- bodies that could be stored but not read back ---------------------------------------------


def nested(depth: int) -> dict:
    """A mapping `depth` objects deep: {"a": {"a": ... 1}}."""
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def deep_job(name: str, backend_depth: int) -> dict:
    # The Job itself, spec and backend add three levels to the nested value.
    return {"kind": "Job", "metadata": {"name": name}, "spec": {"run": "true", "backend": {"x": nested(backend_depth)}}}


def test_deepest_allowed_body_is_stored_and_read_back(api):
    response = api.post(JOBS, json=deep_job("deep-ok", 96))

    assert response.status_code == 201, response.text
    assert api.get(f"{JOBS}/deep-ok").status_code == 200
    assert "deep-ok" in names(api.get(JOBS))
    assert api.delete(f"{JOBS}/deep-ok").status_code == 200


@pytest.mark.parametrize("depth", [198, 500, 5000], ids=["pydantic-parse-limit", "serialize-limit", "json-recursion"])
def test_too_deep_body_is_400_and_not_stored(api, depth):
    # Built as text: json.dumps itself cannot encode 5,000 levels.
    body = '{"kind":"Job","metadata":{"name":"deep"},"spec":{"run":"true","backend":{"x":' + '{"a":' * depth + "1"
    body += "}" * depth + "}}}"

    response = api.post(JOBS, content=body, headers={"content-type": "application/json"})

    message = assert_status(response, 400, "BadRequest")
    assert "nests" in message
    assert "the limit is 100" in message
    assert api.get(f"{JOBS}/deep").status_code == 404
    assert api.get(JOBS).status_code == 200


def test_too_deep_message_names_where(api):
    response = api.post(JOBS, json=deep_job("deep", 150))

    message = assert_status(response, 400, "BadRequest")
    assert message == (
        "request body nests objects and lists more than 100 levels deep, at spec.backend.x.a.a.a... "
        "(the limit is 100): flatten the value, or store it as a string"
    )


def test_patch_that_deepens_object_too_far_is_422(api):
    make_job(api, "deepened")
    patch = {"spec": {"backend": {"x": nested(60)}}}
    assert api.patch(f"{JOBS}/deepened", json=patch, headers=MERGE).status_code == 200
    path = "/spec/backend/x" + "/a" * 59

    response = api.patch(
        f"{JOBS}/deepened",
        json=[{"op": "replace", "path": path, "value": nested(60)}],
        headers={"content-type": "application/json-patch+json"},
    )

    message = assert_status(response, 422, "Invalid")
    assert message.startswith("the patched object nests objects and lists more than 100 levels deep")
    assert api.get(f"{JOBS}/deepened").status_code == 200


@pytest.mark.parametrize(
    "where", ["spec.run", "metadata.labels", "spec.envs key"], ids=["value", "label-value", "mapping-key"]
)
def test_lone_surrogate_is_400(api, where):
    body = {
        "spec.run": '{"kind":"Job","metadata":{"name":"surr"},"spec":{"run":"echo \\ud800"}}',
        "metadata.labels": '{"kind":"Job","metadata":{"name":"surr","labels":{"a":"\\udfff"}},"spec":{"run":"x"}}',
        "spec.envs key": '{"kind":"Job","metadata":{"name":"surr"},"spec":{"run":"x","envs":{"\\ud83d":"1"}}}',
    }[where]

    response = api.post(JOBS, content=body, headers={"content-type": "application/json"})

    message = assert_status(response, 400, "BadRequest")
    assert "that is not valid Unicode: it contains the lone surrogate \\u" in message
    assert api.get(f"{JOBS}/surr").status_code == 404


def test_surrogate_pair_is_text(api):
    body = '{"kind":"Job","metadata":{"name":"emoji"},"spec":{"run":"echo \\ud83d\\ude80"}}'

    response = api.post(JOBS, content=body, headers={"content-type": "application/json"})

    assert response.status_code == 201, response.text
    assert api.get(f"{JOBS}/emoji").json()["spec"]["run"] == "echo \U0001F680"


def test_repeated_member_is_400(api):
    body = '{"kind":"Job","metadata":{"name":"twice"},"spec":{"run":"a","replicas":1,"replicas":2}}'

    response = api.post(JOBS, content=body, headers={"content-type": "application/json"})

    message = assert_status(response, 400, "BadRequest")
    assert "the member 'replicas' appears twice in one object; keep one of them" in message
    assert api.get(f"{JOBS}/twice").status_code == 404


def test_repeated_member_in_patch_is_400(api):
    make_job(api, "patched-twice")

    response = api.patch(
        f"{JOBS}/patched-twice", content=b'{"spec":{"replicas":2,"replicas":3}}', headers=MERGE
    )

    assert "appears twice" in assert_status(response, 400, "BadRequest")
    assert api.get(f"{JOBS}/patched-twice").json()["spec"]["replicas"] == 1


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_body_over_limit_is_413(api, method):
    make_job(api, "target")
    body = b'{"kind":"Job","metadata":{"name":"target"},"spec":{"run":"' + b"x" * (3 * 1024 * 1024) + b'"}}'
    path, headers = (JOBS, {"content-type": "application/json"}) if method == "POST" else (f"{JOBS}/target", MERGE)

    response = api.request(method, path, content=body, headers=headers)

    message = assert_status(response, 413, "RequestEntityTooLarge")
    assert f"request body is {len(body)} bytes; the limit is 3145728 bytes (3 MiB)" in message


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        pytest.param(
            b'{"kind":"Job","metadata":{"name":"inf"},"spec":{"run":"x","resources":{"cpus":Infinity}}}',
            "application/json",
            "Infinity is not a JSON number",
            id="json-infinity",
        ),
        pytest.param(
            b'{"kind":"Job","metadata":{"name":"inf"},"spec":{"run":"x","resources":{"cpus":NaN}}}',
            "application/json",
            "NaN is not a JSON number",
            id="json-nan",
        ),
        pytest.param(
            b'{"kind":"Job","metadata":{"name":"inf"},"spec":{"run":"x","resources":{"memory":1e400}}}',
            "application/json",
            "has the number inf at spec.resources.memory; numbers must be finite",
            id="json-overflow",
        ),
        pytest.param(
            b"kind: Job\nmetadata: {name: inf}\nspec: {run: x, resources: {cpus: .inf}}\n",
            "application/yaml",
            "has the number inf at spec.resources.cpus",
            id="yaml-inf",
        ),
        pytest.param(
            b'{"kind":"Job","metadata":{"name":"inf"},"spec":{"run":"x","replicas":1' + b"0" * 5000 + b"}}",
            "application/json",
            "has 5001 digits; integers here fit in 64 bits (19 digits)",
            id="long-integer",
        ),
    ],
)
def test_number_that_cannot_be_stored_is_400(api, body, content_type, fragment):
    response = api.post(JOBS, content=body, headers={"content-type": content_type})

    assert fragment in assert_status(response, 400, "BadRequest")
    assert api.get(f"{JOBS}/inf").status_code == 404
    assert api.get(JOBS).status_code == 200


def test_infinite_number_in_patch_is_400(api):
    make_job(api, "finite")

    response = api.patch(f"{JOBS}/finite", content=b'{"spec":{"resources":{"memory":Infinity}}}', headers=MERGE)

    assert "Infinity is not a JSON number" in assert_status(response, 400, "BadRequest")
    assert api.get(f"{JOBS}/finite").status_code == 200


def test_yaml_alias_bomb_is_400_at_once(api):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]" for level in range(1, 9)]

    response = api.post(JOBS, content="\n".join(lines).encode(), headers={"content-type": "application/yaml"})

    assert "aliases expand to more than 100,000 values" in assert_status(response, 400, "BadRequest")


def test_client_that_hangs_up_is_not_an_error(api_server, admin_token, caplog):
    import socket
    import time
    from urllib.parse import urlsplit

    address = urlsplit(api_server)
    request = (
        f"POST {JOBS} HTTP/1.1\r\nHost: {address.netloc}\r\nAuthorization: Bearer {admin_token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"kind\":"
    )
    with caplog.at_level("INFO", logger="skyshift_core.api.app"):
        with socket.create_connection((address.hostname, address.port)) as connection:
            connection.sendall(request.encode())
            time.sleep(0.3)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any("disconnected" in r.getMessage() for r in caplog.records):
            time.sleep(0.05)

    messages = [record.getMessage() for record in caplog.records if record.name == "skyshift_core.api.app"]
    assert f"POST {JOBS}: the client disconnected before sending its whole request" in messages
    assert not [record for record in caplog.records if record.levelname == "ERROR"]
