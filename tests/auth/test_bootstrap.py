"""Bootstrapping: built-in Roles created once and never rewritten, the first administrator, and the
controller manager's least-privilege identity; `skyshift bootstrap` and `skyshift up` write the
credentials with mode 0600."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from auth_helpers import MERGE, bearer

from skyshift_core.api.app import ApiSettings
from skyshift_core.api.server import ServerThread
from skyshift_core.auth.bootstrap import bootstrap, ensure_builtin_roles
from skyshift_core.auth.rbac import CONTROLLER_MANAGER_RULES, CONTROLLER_MANAGER_USER
from skyshift_core.local.processes import free_port, is_alive, stop_process


def skyshift(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "skyshift_core.cli.main", *args],
        capture_output=True, text=True, env=env, input=input, timeout=120, check=False,
    )  # fmt: skip


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


async def test_builtin_roles_created_once(store):
    first = await ensure_builtin_roles(store)
    second = await ensure_builtin_roles(store)

    assert first == ["admin", "editor", "viewer"]
    assert second == []


def test_builtin_roles_never_rewritten(api, etcd_server, etcd_root):
    narrowed = {"spec": {"rules": [{"verbs": ["get"], "resources": ["jobs"]}]}}
    assert api.patch("/api/v1/roles/viewer", json=narrowed, headers=MERGE).status_code == 200
    assert api.delete("/api/v1/roles/editor").status_code == 200

    # A restarted API server (a new one on the same etcd prefix) leaves both changes alone.
    settings = ApiSettings(etcd_endpoints=[etcd_server.endpoint], etcd_root=etcd_root)
    restarted = ServerThread(settings, free_port()).start()
    try:
        with httpx.Client(base_url=restarted.url, headers=api.headers) as client:
            viewer = client.get("/api/v1/roles/viewer").json()
            editor = client.get("/api/v1/roles/editor")
    finally:
        restarted.stop()

    assert viewer["spec"]["rules"] == [{"verbs": ["get"], "resources": ["jobs"], "namespaces": ["*"]}]
    assert editor.status_code == 404


async def test_bootstrap_creates_admin_and_controller_manager(store, api_server, anonymous_api, client_as):
    result = await bootstrap(store)
    again = await bootstrap(
        store, admin_token=result.admin_token, controller_manager_token=result.controller_manager_token
    )

    assert result.admin_password is not None
    login = anonymous_api.post("/api/v1/login", json={"username": "admin", "password": result.admin_password})
    assert login.status_code == 200
    assert again.admin_password is None
    assert (again.admin_token, again.controller_manager_token) == (result.admin_token, result.controller_manager_token)
    manager = client_as(result.controller_manager_token).get("/api/v1/whoami").json()
    assert manager["user"] == CONTROLLER_MANAGER_USER
    assert manager["roles"] == [CONTROLLER_MANAGER_USER]
    assert manager["token"]["expires_at"] is None


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("GET", "/api/v1/jobs", True),
        ("GET", "/api/v1/clusters", True),
        ("GET", "/api/v1/filterpolicies", True),
        ("GET", "/api/v1/leases/controller-manager", True),
        ("POST", "/api/v1/namespaces/default/jobs", False),
        ("DELETE", "/api/v1/namespaces/default/jobs/any", False),
        ("POST", "/api/v1/clusters", False),
        ("GET", "/api/v1/users", False),
        ("GET", "/api/v1/roles", False),
        ("GET", "/api/v1/namespaces/default/services", True),
        ("DELETE", "/api/v1/namespaces/default/services/any", False),
        ("GET", "/api/v1/namespaces/default/endpoints", False),
        ("GET", "/metrics", False),
    ],
)
def test_controller_manager_least_rights(controller_manager_token, client_as, method: str, path: str, allowed: bool):
    response = client_as(controller_manager_token).request(method, path)

    if allowed:
        assert response.status_code in (200, 404), response.text
    else:
        assert response.status_code == 403, response.text


async def test_bootstrap_restores_controller_manager_rules(store, api):
    await bootstrap(store)
    narrowed = {"spec": {"rules": [{"verbs": ["get"], "resources": ["jobs"]}]}}
    assert api.patch(f"/api/v1/roles/{CONTROLLER_MANAGER_USER}", json=narrowed, headers=MERGE).status_code == 200

    await bootstrap(store)

    role = api.get(f"/api/v1/roles/{CONTROLLER_MANAGER_USER}").json()
    assert role["spec"]["rules"] == [rule.model_dump(mode="json") for rule in CONTROLLER_MANAGER_RULES]
    assert role["spec"]["users"] == [CONTROLLER_MANAGER_USER]


def test_bootstrap_command_writes_private_files(etcd_server, etcd_root, api_server, tmp_path: Path):
    output = tmp_path / "credentials"

    result = skyshift(
        "bootstrap", "--etcd", etcd_server.endpoint, "--etcd-prefix", etcd_root, "--output-dir", str(output),
        "--server", api_server,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Created user admin" in result.stdout
    assert f"--token-file {output / 'controller-manager.token'}" in result.stdout
    for name in ("admin.password", "controller-manager.token", "config.yaml"):
        assert mode(output / name) == 0o600, name
    env = {**os.environ, "SKYSHIFT_CONFIG": str(output / "config.yaml")}
    env.pop("SKYSHIFT_SERVER", None)
    env.pop("SKYSHIFT_TOKEN", None)
    whoami = skyshift("whoami", "-o", "json", env=env)
    assert whoami.returncode == 0, whoami.stderr
    assert json.loads(whoami.stdout)["user"] == "admin"
    token = (output / "controller-manager.token").read_text().strip()
    identity = httpx.get(f"{api_server}/api/v1/whoami", headers=bearer(token)).json()
    assert identity["user"] == CONTROLLER_MANAGER_USER


def test_bootstrap_prints_controller_manager_command(etcd_server, etcd_root, api_server, tmp_path: Path):
    output = tmp_path / "credentials"
    ca = tmp_path / "ca.pem"
    ca.write_text("not read by bootstrap\n")

    result = skyshift(
        "bootstrap", "--etcd", etcd_server.endpoint, "--etcd-prefix", etcd_root, "--output-dir", str(output),
        "--server", api_server, "--certificate-authority", str(ca),
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    expected = (
        f"skyshift controller-manager --server {api_server} --token-file {output / 'controller-manager.token'} "
        f"--certificate-authority {ca}"
    )
    assert expected in result.stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed: apt-get install -y etcd-server")
def test_up_writes_credentials_and_login_works(tmp_path: Path):
    state_dir = tmp_path / "state"
    env = {**os.environ, "SKYSHIFT_CONFIG": str(state_dir / "config.yaml")}
    env.pop("SKYSHIFT_SERVER", None)
    env.pop("SKYSHIFT_TOKEN", None)
    try:
        up = skyshift("up", "--state-dir", str(state_dir), "--port", str(free_port()), env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"its password is in {state_dir / 'admin.password'}" in up.stdout
        assert "skyshift login --username admin" in up.stdout
        for name in ("admin.password", "controller-manager.token", "config.yaml"):
            assert mode(state_dir / name) == 0o600, name
        assert mode(state_dir / "logs" / "audit.log") == 0o600

        whoami = skyshift("whoami", "-o", "json", env=env)
        assert json.loads(whoami.stdout)["roles"] == ["admin"]
        password = (state_dir / "admin.password").read_text()
        login = skyshift("login", "--username", "admin", "--password-stdin", env=env, input=password)
        assert login.returncode == 0, login.stderr
        assert mode(state_dir / "config.yaml") == 0o600
        applied = skyshift("create", "namespace", "after-login", env=env)
        assert applied.returncode == 0, applied.stderr

        # Running up again keeps the password and the controller manager's token.
        token = (state_dir / "controller-manager.token").read_text()
        again = skyshift("up", "--state-dir", str(state_dir), env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "Created user admin" not in again.stdout
        assert (state_dir / "controller-manager.token").read_text() == token
        audit = (state_dir / "logs" / "audit.log").read_text()
        assert '"user":"skyshift-controller-manager"' in audit
    finally:
        pids = (
            json.loads((state_dir / "state.json").read_text())["processes"]
            if (state_dir / "state.json").exists()
            else {}
        )
        skyshift("down", "--state-dir", str(state_dir), env=env)
        for record in pids.values():
            if is_alive(record["pid"]):
                stop_process(record["pid"])
