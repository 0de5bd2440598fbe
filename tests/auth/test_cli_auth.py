"""The authentication commands of the `skyshift` CLI against a real API server, with a client config
of their own."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from auth_helpers import create_namespace, create_role, create_user, set_password
from typer.testing import CliRunner

from skyshift_core.cli.auth import parse_duration
from skyshift_core.cli.main import app
from skyshift_core.errors import InvalidError


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.yaml"
    monkeypatch.setenv("SKYSHIFT_CONFIG", str(path))
    monkeypatch.delenv("SKYSHIFT_SERVER", raising=False)
    monkeypatch.delenv("SKYSHIFT_TOKEN", raising=False)
    return path


@pytest.fixture
def cli(api_server: str, config_path: Path):
    """Run `skyshift --server API ARGS...` with the test's client config; credentials come from that config."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, ["--server", api_server, *args], input=input)

    return invoke


@pytest.fixture
def root(api) -> str:
    """An administrator with a password, so the CLI can log in as one."""
    create_user(api, "root", ("admin",))
    set_password(api, "root", "root password")
    return "root"


def contexts(config_path: Path) -> dict[str, dict]:
    return {context["name"]: context for context in yaml.safe_load(config_path.read_text())["contexts"]}


def test_login_stores_token_privately(cli, config_path: Path, root):
    result = cli("login", "--username", root, "--password-stdin", input="root password\n")

    assert result.exit_code == 0, result.output
    assert "Logged in to" in result.output
    assert config_path.stat().st_mode & 0o777 == 0o600
    stored = contexts(config_path)["default"]
    assert stored["user"] == "root"
    assert stored["token"].startswith("sks_root.")
    whoami = cli("whoami")
    assert whoami.exit_code == 0, whoami.output
    assert "User:    root" in whoami.output
    assert "Roles:   admin" in whoami.output


def test_login_wrong_password_fails(cli, config_path: Path, root):
    result = cli("login", "--username", root, "--password-stdin", input="nope nope\n")

    assert result.exit_code == 1
    assert "Error: login failed: wrong user name or password" in result.output
    assert not config_path.exists()


def test_logout_revokes_and_forgets(cli, config_path: Path, root):
    cli("login", "--username", root, "--password-stdin", input="root password\n")
    token = contexts(config_path)["default"]["token"]

    result = cli("logout")

    assert result.exit_code == 0, result.output
    assert "token" not in contexts(config_path)["default"]
    assert cli("--token", token, "whoami").exit_code == 1


def test_commands_without_login_fail_with_hint(cli, config_path: Path):
    result = cli("get", "jobs")

    assert result.exit_code == 1
    assert "authentication required" in result.output
    assert "skyshift login" in result.output


def test_contexts_list_and_switch(cli, config_path: Path, root, api_server: str):
    cli("login", "--username", root, "--password-stdin", "--context", "first", input="root password\n")
    cli("login", "--username", root, "--password-stdin", "--context", "second", input="root password\n")

    listed = cli("config", "get-contexts")
    switched = cli("config", "use-context", "first")
    missing = cli("config", "use-context", "third")

    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split() == ["CURRENT", "NAME", "SERVER", "USER", "NAMESPACE"]
    assert lines[2].split() == ["*", "second", api_server, "root"]
    assert switched.exit_code == 0
    assert yaml.safe_load(config_path.read_text())["current_context"] == "first"
    assert missing.exit_code == 1
    assert "no context named 'third'" in missing.output


def test_token_not_sent_to_other_server(cli, config_path: Path, root, api_server: str):
    cli("login", "--username", root, "--password-stdin", input="root password\n")
    other = api_server.replace("127.0.0.1", "localhost")

    result = CliRunner().invoke(app, ["--server", other, "whoami"])

    assert result.exit_code == 1
    assert "authentication required" in result.output


def test_invite_register_and_user_commands(cli, config_path: Path, root, api_server: str):
    cli("login", "--username", root, "--password-stdin", "--context", "admin", input="root password\n")

    created = cli("invite", "create", "--role", "viewer", "--description", "for sam")
    assert created.exit_code == 0, created.output
    code = created.output.splitlines()[1]
    assert code.startswith("ski_")
    listed = cli("invite", "list")
    assert "Pending" in listed.output
    assert code not in listed.output

    registered = cli(
        "register", "--invite", code, "--username", "sam", "--password-stdin", "--context", "sam",
        input="sam password\n",
    )  # fmt: skip
    assert registered.exit_code == 0, registered.output
    assert "sam" in cli("whoami").output
    assert cli("invite", "list").exit_code == 1  # sam is a viewer

    cli("config", "use-context", "admin")
    users = cli("user", "list")
    assert users.exit_code == 0, users.output
    assert any(line.split()[0] == "sam" and line.split()[-1] == "viewer" for line in users.output.splitlines())
    assert cli("role", "bind", "editor", "sam").output.strip() == "role.skyshift/editor bound to user sam"
    assert cli("role", "bind", "editor", "sam").output.strip() == "role.skyshift/editor was already bound to user sam"
    assert cli("role", "unbind", "viewer", "sam").exit_code == 0

    cli("config", "use-context", "sam")
    whoami = cli("whoami", "-o", "yaml")
    assert yaml.safe_load(whoami.output)["roles"] == ["editor"]
    passwords = "sam password\nnew sam password\n"
    changed = cli("user", "set-password", "sam", "--password-stdin", input=passwords)
    assert changed.exit_code == 0, changed.output

    cli("config", "use-context", "admin")
    assert cli("user", "delete", "sam").output.strip() == "user.skyshift/sam deleted"
    cli("config", "use-context", "sam")
    assert cli("whoami").exit_code == 1


def test_invite_revoke(cli, root):
    cli("login", "--username", root, "--password-stdin", input="root password\n")
    created = cli("invite", "create", "--role", "viewer", "-o", "json")
    invite_id = yaml.safe_load(created.output)["id"]

    revoked = cli("invite", "revoke", invite_id)

    assert revoked.exit_code == 0, revoked.output
    assert invite_id not in cli("invite", "list").output


def test_role_bind_beyond_own_rights_denied(cli, api, config_path: Path):
    create_user(api, "limited", ("viewer",))
    create_role(api, "role-writer", [{"verbs": ["*"], "resources": ["roles"]}], users=["limited"])
    set_password(api, "limited", "limited password")
    cli("login", "--username", "limited", "--password-stdin", input="limited password\n")

    result = cli("role", "bind", "admin", "limited")

    assert result.exit_code == 1
    assert "would grant permissions the user does not hold" in result.output


def test_service_token_commands(cli, root):
    cli("login", "--username", root, "--password-stdin", input="root password\n")

    created = cli("token", "create", "--description", "ci pipeline", "--lifetime", "30d")
    token = created.output.strip()
    listed = cli("token", "list")
    token_id = token.split(".")[1]
    revoked = cli("token", "revoke", token_id)

    assert created.exit_code == 0, created.output
    assert token.startswith("sks_root.")
    assert "ci pipeline" in listed.output
    assert token_id in listed.output
    assert revoked.output.strip() == f"token {token_id} of user root revoked"
    assert cli("--token", token, "whoami").exit_code == 1


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800)])
def test_parse_duration(text: str, seconds: int):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5m", "5w", "1.5h"])
def test_parse_duration_rejects(text: str):
    with pytest.raises(InvalidError):
        parse_duration(text)


def test_rejected_token_names_its_source(cli, config_path: Path):
    result = cli("--token", "sks_admin.0011223344556677.guessed", "get", "jobs")

    assert result.exit_code == 1
    assert "the bearer token is not valid" in result.output
    assert "(the token was given with --token)" in result.output


def test_set_password_reports_service_tokens(cli, api, anonymous_api, root):
    service_token = create_user(api, "sam", ("viewer",))
    set_password(api, "sam", "sam password")
    session = anonymous_api.post("/api/v1/login", json={"username": "sam", "password": "sam password"})
    assert session.status_code == 200, session.text
    cli("login", "--username", root, "--password-stdin", input="root password\n")

    result = cli("user", "set-password", "sam", "--password-stdin", input="new sam password\n")

    assert result.exit_code == 0, result.output
    assert "1 other session token(s) revoked" in result.output
    assert "1 service token(s) remain valid" in result.output
    assert "skyshift token list --user sam" in result.output
    assert "skyshift token revoke ID --user sam" in result.output
    # The policy is unchanged: the service token still works, the session token does not.
    assert cli("--token", service_token, "whoami").exit_code == 0
    assert cli("--token", session.json()["token"], "whoami").exit_code == 1


def test_set_password_without_service_tokens(cli, api, root):
    api.post("/api/v1/users", json={"kind": "User", "metadata": {"name": "tokenless"}})
    cli("login", "--username", root, "--password-stdin", input="root password\n")

    result = cli("user", "set-password", "tokenless", "--password-stdin", input="tokenless password\n")

    assert result.exit_code == 0, result.output
    assert "the user has no valid service tokens" in result.output


def test_describe_without_event_access_still_shows_object(cli, api):
    # Events of a cluster-scoped object may be in any namespace, which this reader may not list.
    response = api.post("/api/v1/clusters", json={"kind": "Cluster", "metadata": {"name": "hpc-a"},
                                                  "spec": {"manager": "nosuchmanager", "config": {}}})  # fmt: skip
    assert response.status_code == 201, response.text
    create_role(api, "cluster-reader", [{"verbs": ["get", "list"], "resources": ["clusters"]}])
    token = create_user(api, "alice", ("cluster-reader",))

    result = cli("--token", token, "describe", "cluster", "hpc-a")

    assert result.exit_code == 0, result.output
    assert "Name:" in result.stdout
    assert "hpc-a" in result.stdout
    assert "Events:  <not shown: " in result.stdout


def test_context_namespace_is_default_of_commands(cli, api, config_path: Path, root):
    create_namespace(api, "team-a")
    for namespace in ("team-a", "default"):
        job = {"kind": "Job", "metadata": {"name": f"in-{namespace}"}, "spec": {"run": "true"}}
        assert api.post(f"/api/v1/namespaces/{namespace}/jobs", json=job).status_code == 201
    assert cli("login", "--username", root, "--password-stdin", input="root password\n").exit_code == 0

    changed = cli("config", "set-context", "--current", "--namespace", "team-a")
    listed = cli("get", "jobs", "-o", "name")
    overridden = cli("get", "jobs", "-n", "default", "-o", "name")
    relogged = cli("login", "--username", root, "--password-stdin", input="root password\n")
    contexts_table = cli("config", "get-contexts")

    assert changed.exit_code == 0, changed.output
    assert changed.stdout == "Context 'default' modified: namespace 'team-a'\n"
    assert listed.stdout == "job.skyshift/in-team-a\n"
    assert overridden.stdout == "job.skyshift/in-default\n"
    assert relogged.exit_code == 0, relogged.output
    assert contexts(config_path)["default"]["namespace"] == "team-a"
    assert contexts_table.stdout.splitlines()[0].split() == ["CURRENT", "NAME", "SERVER", "USER", "NAMESPACE"]
    assert contexts_table.stdout.splitlines()[1].split()[-1] == "team-a"


def test_set_context_rejects_invalid_namespace(cli, config_path: Path, root):
    assert cli("login", "--username", root, "--password-stdin", input="root password\n").exit_code == 0

    result = cli("config", "set-context", "--current", "--namespace", "Team_A")

    assert result.exit_code == 2
    assert "invalid namespace 'Team_A'" in result.output
    assert "namespace" not in contexts(config_path)["default"]


def test_set_context_empty_namespace_removes_it(cli, config_path: Path, root):
    assert cli("login", "--username", root, "--password-stdin", input="root password\n").exit_code == 0
    assert cli("config", "set-context", "default", "--namespace", "team-a").exit_code == 0

    result = cli("config", "set-context", "default", "--namespace", "")

    assert result.stdout == "Context 'default' modified: no namespace (default)\n"
    assert "namespace" not in contexts(config_path)["default"]


def test_get_of_several_kinds_prints_those_allowed(api, cli):
    # As kubectl does: the kinds the user may list are printed, and the denied one is named.
    create_role(api, "job-reader", [{"verbs": ["list"], "resources": ["jobs"]}])
    token = create_user(api, "jo", ("job-reader",))
    api.post("/api/v1/namespaces/default/jobs", json={"kind": "Job", "metadata": {"name": "visible"}})

    result = cli("--token", token, "get", "jobs,clusters")

    assert result.exit_code == 1
    assert "visible" in result.stdout
    assert "Error: user 'jo' may not list clusters" in result.stderr


def test_describe_cluster_shows_events_from_default_namespace(cli, api):
    # The controllers record a Cluster's Events in `default`; reading them needs no access to every namespace.
    response = api.post("/api/v1/clusters", json={"kind": "Cluster", "metadata": {"name": "hpc-b"},
                                                  "spec": {"manager": "nosuchmanager", "config": {}}})  # fmt: skip
    assert response.status_code == 201, response.text
    event = {
        "kind": "Event", "metadata": {"name": "hpc-b-ready"}, "reason": "ClusterReady", "message": "cluster is ready",
        "involved_object": {"kind": "Cluster", "name": "hpc-b", "uid": response.json()["metadata"]["uid"]},
    }  # fmt: skip
    assert api.post("/api/v1/namespaces/default/events", json=event).status_code == 201
    rules = [
        {"verbs": ["get", "list"], "resources": ["clusters"]},
        {"verbs": ["list"], "resources": ["events"], "namespaces": ["default"]},
    ]
    create_role(api, "cluster-and-events-reader", rules)
    token = create_user(api, "bea", ("cluster-and-events-reader",))

    result = cli("--token", token, "describe", "cluster", "hpc-b")

    assert result.exit_code == 0, result.output
    assert "cluster is ready" in result.stdout
    assert "not shown" not in result.stdout


def test_apply_unchanged_needs_no_update_permission(api, cli, tmp_path: Path):
    # As kubectl apply sends nothing for an empty patch, a pipeline that may create but not update
    # can apply the same manifests again.
    create_role(api, "ci", [{"verbs": ["create", "get", "list", "delete"], "resources": ["jobs"]}])
    token = create_user(api, "ci-bot", ("ci",))
    manifest = tmp_path / "job.yaml"
    manifest.write_text("kind: Job\nmetadata: {name: ci-run, labels: {app: ci}}\nspec: {run: 'true', env: [{A: '1'}]}\n")

    first = cli("--token", token, "apply", "-f", str(manifest))
    again = cli("--token", token, "apply", "-f", str(manifest))
    manifest.write_text("kind: Job\nmetadata: {name: ci-run, labels: {app: ci}}\nspec: {run: 'false'}\n")
    changed = cli("--token", token, "apply", "-f", str(manifest))

    assert first.stdout.strip() == "job.skyshift/ci-run created"
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == "job.skyshift/ci-run unchanged"
    assert changed.exit_code == 1
    assert "may not update jobs 'ci-run'" in changed.stderr
