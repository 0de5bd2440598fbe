"""A Role bound to a user in one namespace alone, as a Kubernetes RoleBinding binds a ClusterRole.

Its rules apply in that namespace and to no cluster-scoped kind. Binding it there needs only the
rules as limited to that namespace."""

from __future__ import annotations

import pytest
from auth_helpers import create_namespace, create_role, create_user
from typer.testing import CliRunner

from skyshift_core.auth.rbac import Attributes, limit_rules, rules_allow
from skyshift_core.cli.main import app
from skyshift_core.objects import PolicyRule

JOB = {"kind": "Job", "metadata": {"name": "scoped"}, "spec": {"run": "true"}}


def bind_in(api, role: str, user: str, namespace: str, client=None):
    client = client or api
    current = client.get(f"/api/v1/roles/{role}").json()
    scoped = current["spec"].setdefault("namespace_users", {})
    scoped[namespace] = sorted({*scoped.get(namespace, []), user})
    return client.put(f"/api/v1/roles/{role}", json=current)


@pytest.fixture
def teams(api):
    create_namespace(api, "team-a")
    create_namespace(api, "team-b")


def test_limit_rules_keeps_the_namespace_alone():
    rules = [
        PolicyRule(verbs=["*"], resources=["jobs", "clusters"]),
        PolicyRule(verbs=["get"], resources=["services"], namespaces=["team-b"]),
        PolicyRule(verbs=["get"], resources=["events"], namespaces=["team-a", "team-b"]),
    ]

    limited = limit_rules(rules, "team-a")

    assert [rule.namespaces for rule in limited] == [["team-a"], ["team-a"]]
    assert rules_allow(limited, Attributes("create", "jobs", "team-a"))
    assert not rules_allow(limited, Attributes("create", "jobs", "team-b"))
    assert not rules_allow(limited, Attributes("list", "clusters"))
    assert not rules_allow(limited, Attributes("list", "jobs"))


def test_editor_bound_in_one_namespace(api, client_as, teams):
    token = create_user(api, "alice")
    assert bind_in(api, "editor", "alice", "team-a").status_code == 200
    alice = client_as(token)

    assert alice.post("/api/v1/namespaces/team-a/jobs", json=JOB).status_code == 201
    assert alice.post("/api/v1/namespaces/team-b/jobs", json=JOB).status_code == 403
    # As a RoleBinding grants nothing cluster-scoped, and nothing across all namespaces.
    assert alice.get("/api/v1/clusters").status_code == 403
    assert alice.get("/api/v1/jobs").status_code == 403
    whoami = alice.get("/api/v1/whoami").json()
    assert whoami["roles"] == []
    assert whoami["namespace_roles"] == {"team-a": ["editor"]}


def test_namespace_bind_needs_rules_there(api, client_as, teams):
    # A group lead bound to editor in team-a alone, who may write Roles, may hand out editor in
    # team-a, but neither in team-b nor in every namespace.
    create_role(api, "role-writer", [{"verbs": ["get", "update"], "resources": ["roles"]}])
    lead = client_as(create_user(api, "lead", ("role-writer",)))
    assert bind_in(api, "editor", "lead", "team-a").status_code == 200
    create_user(api, "bob")

    in_own = bind_in(api, "editor", "bob", "team-a", client=lead)
    in_other = bind_in(api, "editor", "bob", "team-b", client=lead)
    everywhere = lead.get("/api/v1/roles/editor").json()
    everywhere["spec"]["users"].append("bob")
    global_bind = lead.put("/api/v1/roles/editor", json=everywhere)

    assert in_own.status_code == 200, in_own.text
    assert in_other.status_code == 403
    assert "may not bind Role 'editor' in namespace 'team-b'" in in_other.json()["message"]
    assert global_bind.status_code == 403


def test_binding_unknown_user_in_namespace_rejected(api, teams):
    response = bind_in(api, "viewer", "nobody-here", "team-a")

    assert response.status_code == 422
    assert response.json()["message"].startswith(
        "invalid spec.namespace_users of Role 'viewer': no user named 'nobody-here'"
    )


def test_deleting_user_removes_namespace_bindings(api, teams):
    create_user(api, "carl")
    assert bind_in(api, "viewer", "carl", "team-a").status_code == 200

    assert api.delete("/api/v1/users/carl").status_code == 200

    assert api.get("/api/v1/roles/viewer").json()["spec"]["namespace_users"] == {}


def test_cli_binds_and_unbinds_in_namespace(api, api_server, admin_token, teams):
    create_user(api, "dora")

    def cli(*args: str):
        return CliRunner().invoke(app, ["--server", api_server, "--token", admin_token, *args])

    bound = cli("role", "bind", "viewer", "dora", "-n", "team-a")
    listed = cli("get", "role", "viewer")
    unbound = cli("role", "unbind", "viewer", "dora", "-n", "team-a")

    assert bound.stdout.strip() == "role.skyshift/viewer bound to user dora in namespace team-a"
    assert "team-a/dora" in listed.stdout
    assert unbound.stdout.strip() == "role.skyshift/viewer unbound from user dora in namespace team-a"
    assert api.get("/api/v1/roles/viewer").json()["spec"]["namespace_users"] == {}
