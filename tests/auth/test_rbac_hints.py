"""The advice in a 403: which built-in Role would allow the denied request, scoped to its namespace.

The API tests send real requests as users with Roles. The last tests call `forbidden` with Roles
built in memory, because they cover stored Roles that an administrator has changed or deleted.
"""

from __future__ import annotations

import httpx
import pytest
from auth_helpers import create_namespace, create_role

from skyshift_core.auth.rbac import BUILTIN_ROLES, Attributes, forbidden
from skyshift_core.objects import PolicyRule, Role

JOB = {"kind": "Job", "metadata": {"name": "hinted"}, "spec": {"run": "true"}}
CLUSTER = {"kind": "Cluster", "metadata": {"name": "hinted"}, "spec": {"manager": "slurm"}}


def denial(response: httpx.Response) -> str:
    assert response.status_code == 403, response.text
    return response.json()["message"]


@pytest.fixture
def team_a_member(api, user_client) -> httpx.Client:
    """A user whose only Role allows every verb on jobs in namespace team-a."""
    create_namespace(api, "team-a")
    create_namespace(api, "team-b")
    create_role(api, "team-a-jobs", [{"verbs": ["*"], "resources": ["jobs", "jobs/*"], "namespaces": ["team-a"]}])
    return user_client("member", "team-a-jobs")


# ---- through the API ------------------------------------------------------------------------


def test_viewer_write_suggests_editor(user_client):
    message = denial(user_client("vera", "viewer").post("/api/v1/namespaces/default/jobs", json=JOB))

    assert "user 'vera' may not create jobs in namespace 'default'" in message
    # Bound in the request's namespace alone, so that groups stay apart by default.
    expected = "bind the built-in Role editor in namespace 'default' alone (skyshift role bind editor vera -n default)"
    assert expected in message
    assert "role bind viewer" not in message
    assert "which allows it in namespace 'default' alone" in message


def test_no_role_read_suggests_viewer(user_client):
    message = denial(user_client("newcomer").get("/api/v1/namespaces/default/jobs"))

    assert "skyshift role bind viewer newcomer" in message
    assert "role bind editor" not in message
    assert "role bind admin" not in message


def test_editor_cluster_write_suggests_admin(user_client):
    # Clusters are not among the editor's resources, and the user is bound to editor already.
    message = denial(user_client("eddie", "editor").post("/api/v1/clusters", json=CLUSTER))

    assert "no built-in Role short of admin (viewer, editor) allows it" in message
    assert "skyshift role bind admin eddie" in message
    assert "role bind editor" not in message
    assert "{verbs: [create], resources: [clusters], namespaces: ['*']}" in message


@pytest.mark.parametrize(
    ("method", "path", "denied"),
    [
        pytest.param("GET", "/api/v1/roles", "list roles", id="roles"),
        pytest.param("GET", "/api/v1/invites", "list invites", id="invites"),
        pytest.param("GET", "/api/v1/leases/some-lease", "get leases", id="leases"),
    ],
)
def test_editor_admin_only_resources(user_client, method: str, path: str, denied: str):
    message = denial(user_client("eddie", "editor").request(method, path))

    assert f"may not {denied}" in message
    assert "no built-in Role short of admin" in message
    assert "skyshift role bind admin eddie" in message
    assert "role bind editor" not in message


def test_editor_status_write_scoped_to_namespace(api, user_client):
    assert api.post("/api/v1/namespaces/default/jobs", json=JOB).status_code == 201

    message = denial(
        user_client("eddie", "editor").patch(
            "/api/v1/namespaces/default/jobs/hinted/status",
            json={"status": {"phase": "Running"}},
            headers={"content-type": "application/merge-patch+json"},
        )
    )

    assert "no built-in Role short of admin" in message
    assert "{verbs: [patch], resources: [jobs/status], namespaces: [default]}" in message
    assert "which allows it in namespace 'default' alone" in message


def test_one_namespace_role_named(team_a_member: httpx.Client):
    message = denial(team_a_member.post("/api/v1/namespaces/team-b/jobs", json=JOB))

    assert "(Role team-a-jobs allows it only in namespace team-a)" in message
    assert "skyshift role bind editor member" in message
    assert "{verbs: [create], resources: [jobs], namespaces: [team-b]}" in message
    assert "which allows it in namespace 'team-b' alone" in message


def test_list_all_namespaces_suggests_namespace(team_a_member: httpx.Client):
    message = denial(team_a_member.get("/api/v1/jobs"))

    assert "Role team-a-jobs allows it only in namespace team-a" in message
    assert "--namespace team-a" in message
    assert "skyshift role bind viewer member" in message


# ---- stored Roles that differ from the built-in ones --------------------------------------


def builtin(name: str, users: list[str] | None = None, rules: list[PolicyRule] | None = None) -> Role:
    spec = {"rules": rules if rules is not None else BUILTIN_ROLES[name], "users": users or []}
    return Role(metadata={"name": name}, spec=spec)


CREATE_JOB = Attributes("create", "jobs", "team-a")


def test_changed_editor_not_suggested():
    # An administrator took job writes out of editor, so only admin allows them now.
    reduced_editor = builtin("editor", rules=[PolicyRule(verbs=["get"], resources=["jobs"])])
    roles = [builtin("admin"), reduced_editor, builtin("viewer", users=["vera"])]

    message = forbidden("vera", CREATE_JOB, roles).message

    assert "role bind editor" not in message
    assert "skyshift role bind admin vera" in message


def test_deleted_builtin_roles_not_suggested():
    roles = [builtin("viewer", users=["vera"])]

    message = forbidden("vera", CREATE_JOB, roles).message

    assert "no built-in Role that the user lacks allows it" in message
    assert "role bind" not in message
    assert "{verbs: [create], resources: [jobs], namespaces: [team-a]}" in message


def test_changed_admin_not_called_all_powerful():
    narrow_admin = builtin("admin", rules=[PolicyRule(verbs=["*"], resources=["clusters"])])
    roles = [narrow_admin, builtin("editor", users=["eddie"]), builtin("viewer")]

    message = forbidden("eddie", Attributes("delete", "clusters"), roles).message

    assert "skyshift role bind admin eddie" in message
    assert "grants every permission" not in message
