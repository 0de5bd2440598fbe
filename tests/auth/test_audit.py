"""The audit log: who did what, when, and the outcome, for mutating and denied requests."""

from __future__ import annotations

import json
from datetime import datetime

from auth_helpers import create_user


def entries(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_mutating_request_recorded(api, audit_log_path):
    api.post("/api/v1/namespaces/default/jobs", json={"kind": "Job", "metadata": {"name": "audited"}})

    (entry,) = [item for item in entries(audit_log_path) if item["path"] == "/api/v1/namespaces/default/jobs"]

    assert entry["user"] == "admin"
    assert entry["method"] == "POST"
    assert (entry["verb"], entry["resource"], entry["namespace"], entry["name"]) == (
        "create",
        "jobs",
        "default",
        "audited",
    )
    assert (entry["code"], entry["outcome"]) == (201, "allowed")
    assert entry["source"] == "127.0.0.1"
    assert datetime.fromisoformat(entry["time"]).tzinfo is not None


def test_dry_run_marked(api, audit_log_path):
    body = {"kind": "Job", "metadata": {"name": "rehearsed"}}
    response = api.post("/api/v1/namespaces/default/jobs", params={"dryRun": "All"}, json=body)
    assert response.status_code == 201

    (entry,) = [item for item in entries(audit_log_path) if item["path"] == "/api/v1/namespaces/default/jobs"]

    assert entry["dry_run"] is True
    assert (entry["verb"], entry["name"], entry["code"]) == ("create", "rehearsed", 201)


def test_real_write_not_marked_dry_run(api, audit_log_path):
    api.post("/api/v1/namespaces/default/jobs", json={"kind": "Job", "metadata": {"name": "real"}})

    (entry,) = [item for item in entries(audit_log_path) if item["path"] == "/api/v1/namespaces/default/jobs"]

    assert "dry_run" not in entry


def test_reads_not_recorded(api, audit_log_path):
    api.get("/api/v1/namespaces/default/jobs")

    assert not [item for item in entries(audit_log_path) if item["method"] == "GET"]


def test_denied_read_recorded(api, client_as, audit_log_path):
    client_as(create_user(api, "nora")).get("/api/v1/clusters")

    (entry,) = [item for item in entries(audit_log_path) if item["path"] == "/api/v1/clusters"]

    assert (entry["user"], entry["verb"], entry["resource"]) == ("nora", "list", "clusters")
    assert (entry["code"], entry["outcome"]) == (403, "denied")
    assert "may not list clusters" in entry["reason"]


def test_unauthenticated_request_recorded(anonymous_api, audit_log_path):
    anonymous_api.delete("/api/v1/clusters/c1")

    (entry,) = [item for item in entries(audit_log_path) if item["path"] == "/api/v1/clusters/c1"]

    assert entry["user"] is None
    assert (entry["code"], entry["outcome"]) == (401, "unauthenticated")


def test_failed_login_recorded_without_password(anonymous_api, audit_log_path):
    anonymous_api.post("/api/v1/login", json={"username": "admin", "password": "s3cret guess"})

    (entry,) = [item for item in entries(audit_log_path) if item["path"] == "/api/v1/login"]

    assert (entry["user"], entry["outcome"]) == ("admin", "unauthenticated")
    assert "s3cret guess" not in audit_log_path.read_text()


def test_failed_write_recorded(api, audit_log_path):
    api.delete("/api/v1/namespaces/default/jobs/missing")

    (entry,) = [item for item in entries(audit_log_path) if item["path"].endswith("/jobs/missing")]

    assert (entry["verb"], entry["code"], entry["outcome"]) == ("delete", 404, "failed")


def test_audit_log_mode_0600(api, audit_log_path):
    api.post("/api/v1/namespaces", json={"kind": "Namespace", "metadata": {"name": "audited"}})

    assert audit_log_path.stat().st_mode & 0o777 == 0o600


def test_lease_routine_left_out(api, audit_log_path):
    """Renewals and refused acquisitions would flood the log; leadership changes are kept."""
    base = "/api/v1/leases/audit-test"
    acquired = api.post(f"{base}/acquire", json={"holder": "one", "ttl_seconds": 30})
    renewed = api.post(f"{base}/renew", json={"holder": "one"})
    refused = api.post(f"{base}/acquire", json={"holder": "two", "ttl_seconds": 30})
    lost = api.post(f"{base}/renew", json={"holder": "two"})
    released = api.post(f"{base}/release", json={"holder": "one"})

    recorded = [(entry["path"].rsplit("/", 1)[1], entry["code"]) for entry in entries(audit_log_path) if entry["path"].startswith(base)]

    assert (acquired.status_code, renewed.status_code, refused.status_code) == (200, 200, 409)
    assert recorded == [("acquire", 200), ("renew", lost.status_code), ("release", released.status_code)]
