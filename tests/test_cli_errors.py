"""How `skyshift` reports errors: one not-found wording, ordinary errors (exit 1) for the state of
objects, --lifetime limits in the option's own terms, and what a partly failed apply changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from auth_helpers import create_user, set_password
from cli_helpers import cli, client, runner, write  # noqa: F401

from skyshift_core.auth.service import AuthSettings
from skyshift_core.cli.auth import format_duration
from skyshift_core.client import SkyShiftClient
from skyshift_core.errors import NotFoundError

THREE_JOBS = """\
kind: Job
metadata: {name: first}
---
kind: Job
metadata: {name: second, namespace: missing-ns}
---
kind: Job
metadata: {name: third}
"""


# ---- not found ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["get", "job", "nope"], 'job "nope" not found in namespace "default"', id="get"),
        pytest.param(["describe", "job", "nope"], 'job "nope" not found in namespace "default"', id="describe"),
        pytest.param(["delete", "job", "nope"], 'job "nope" not found in namespace "default"', id="delete"),
        pytest.param(["logs", "nope"], 'job "nope" not found in namespace "default"', id="logs"),
        pytest.param(["explain", "job", "nope"], 'job "nope" not found in namespace "default"', id="explain"),
        pytest.param(["explain", "job/nope", "-n", "dev"], 'job "nope" not found in namespace "dev"', id="explain-ns"),
        pytest.param(["get", "ns", "nope"], 'namespace "nope" not found', id="cluster-scoped"),
        pytest.param(["user", "delete", "nope"], 'user "nope" not found', id="user-delete"),
        pytest.param(["role", "bind", "nope", "alice"], 'role "nope" not found', id="role-bind"),
    ],
)
def test_not_found_one_wording(cli, args: list[str], message: str):
    result = cli(*args)

    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {message}"


# ---- state errors are ordinary errors, usage mistakes keep exit 2 ---------------------------


def test_logs_unplaced_job_exit_1(cli, client: SkyShiftClient):
    client.create({"kind": "Job", "metadata": {"name": "waiting"}})

    result = cli("logs", "waiting")

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Job default/waiting is not placed on any cluster yet")
    assert "Usage:" not in result.output


def test_explain_invalid_output_is_usage_error(cli):
    result = cli("explain", "job", "a", "-o", "xml")

    # The usage box wraps long messages; join its lines before looking for the message.
    text = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2
    assert "invalid output format 'xml': expected one of yaml, json" in text


def test_explain_field_path_points_to_manifest_reference(cli):
    result = cli("explain", "job.spec.resources")

    text = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2
    assert "'job.spec.resources' is not a Job: skyshift explain shows why a Job was placed" in text
    assert "docs/manifests.md" in text


# ---- --lifetime -----------------------------------------------------------------------------


@pytest.fixture
def root_user(api) -> str:
    create_user(api, "root", ("admin",))
    set_password(api, "root", "root password")
    return "root"


def test_login_lifetime_above_server_maximum(
    runner, api_server: str, root_user: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from skyshift_core.cli.main import app

    monkeypatch.setenv("SKYSHIFT_CONFIG", str(tmp_path / "config.yaml"))
    maximum = format_duration(AuthSettings.max_token_lifetime_seconds)

    result = runner.invoke(
        app,
        ["--server", api_server, "login", "-u", root_user, "--password-stdin", "--lifetime", "40d"],
        input="root password\n",
    )

    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: invalid --lifetime '40d': the server's maximum is {maximum}; pass --lifetime {maximum} or less"
    )
    assert not (tmp_path / "config.yaml").exists()


def test_invite_lifetime_above_server_maximum(cli):
    maximum = format_duration(AuthSettings.max_invite_lifetime_seconds)

    result = cli("invite", "create", "--role", "viewer", "--lifetime", "1000h")

    assert result.exit_code == 1
    assert f"invalid --lifetime '1000h': the server's maximum is {maximum}" in result.stderr


def test_invite_lifetime_below_server_minimum(cli):
    result = cli("invite", "create", "--role", "viewer", "--lifetime", "2s")

    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: invalid --lifetime '2s': an invite lasts at least 1m, time for its user to register; "
        "pass --lifetime 1m or more"
    )


def test_lifetime_unparsable_names_option(cli):
    result = cli("token", "create", "--lifetime", "5w")

    assert result.exit_code == 1
    assert "invalid --lifetime '5w': expected a positive number with s, m, h or d" in result.stderr


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(30 * 86400, "30d"), (36 * 3600, "36h"), (90 * 60, "90m"), (3601, "3601s"), (45, "45s")],
)
def test_format_duration_largest_unit(seconds: int, text: str):
    assert format_duration(seconds) == text


# ---- apply with several documents -----------------------------------------------------------


def test_apply_invalid_document_nothing_applied(cli, client: SkyShiftClient, tmp_path: Path):
    path = write(tmp_path, "jobs.yaml", THREE_JOBS.replace("name: third}", "name: third}\nspec: {replicas: 0}"))

    result = cli("apply", "-f", str(path))

    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"Error: {path}, document 3: invalid Job: spec.replicas:")
    assert lines[-1] == "Error: nothing was applied because 1 of 3 documents is invalid; fix and run again"
    with pytest.raises(NotFoundError):
        client.get("jobs", "first")


def test_apply_server_refusal_applies_nothing(cli, client: SkyShiftClient, tmp_path: Path):
    path = write(tmp_path, "jobs.yaml", THREE_JOBS)

    result = cli("apply", "-f", str(path))

    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"Error: {path}, document 2 (job.skyshift/second): namespace 'missing-ns' not found" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "Error: nothing was applied because 1 of 3 documents would be rejected; fix and run again"
    )
    with pytest.raises(NotFoundError):
        client.get("jobs", "first")


def test_create_server_failure_summary(cli, client: SkyShiftClient, tmp_path: Path):
    # create, as kubectl create, sends the documents one by one without a check first.
    path = write(tmp_path, "jobs.yaml", THREE_JOBS)

    result = cli("create", "-f", str(path))

    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["job.skyshift/first created", "job.skyshift/third created"]
    assert f"Error: {path}, document 2 (job.skyshift/second): namespace 'missing-ns' not found" in result.stderr
    assert result.stderr.splitlines()[-1] == "Error: 2 of 3 objects created; 1 failed"
    assert client.get("jobs", "third")["metadata"]["name"] == "third"


def test_apply_single_failure_no_summary(cli, tmp_path: Path):
    path = write(tmp_path, "job.yaml", "kind: Job\nmetadata: {name: a, namespace: missing-ns}\n")

    result = cli("apply", "-f", str(path))

    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1


def test_create_invalid_document_nothing_created(cli, tmp_path: Path):
    path = write(tmp_path, "job.yaml", "kind: Job\nmetadata: {name: a}\nspec: {replicas: -1}\n")

    result = cli("create", "-f", str(path))

    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "Error: nothing was created because the document is invalid; fix and run again"
    )


def test_delete_file_invalid_document_nothing_deleted(cli, client: SkyShiftClient, tmp_path: Path):
    client.create({"kind": "Job", "metadata": {"name": "keep"}})
    path = write(tmp_path, "jobs.yaml", "kind: Job\nmetadata: {name: keep}\n---\nkind: Jbo\nmetadata: {name: x}\n")

    result = cli("delete", "-f", str(path))

    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "Error: nothing was deleted because 1 of 2 documents is invalid; fix and run again"
    )
    assert client.get("jobs", "keep")["metadata"]["name"] == "keep"
