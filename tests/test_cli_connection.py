"""How the `skyshift` CLI finds its API server and credentials, and the errors it prints when the
server URL, the client config or the login does not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import cli, isolated_env, runner, write  # noqa: F401
from typer.testing import CliRunner

from skyshift_core.cli.config import ClientConfig, choose_server, resolve_connection
from skyshift_core.cli.main import app
from skyshift_core.client import DEFAULT_SERVER
from skyshift_core.local.processes import free_port

URL_FORM = "expected http://HOST:PORT or https://HOST:PORT"


# ---- invalid server URLs --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        pytest.param("http://127.0.0.1:notaport", "the port 'notaport' is not a number from 1 to 65535", id="word"),
        pytest.param("http://127.0.0.1:$PORT", "the port '$PORT' is not a number from 1 to 65535", id="shell-variable"),
        pytest.param("http://127.0.0.1:70000", "the port '70000' is not a number from 1 to 65535", id="port-range"),
        pytest.param("http://[::1:56313", "the host has an unbalanced '[' or ']'", id="ipv6-bracket"),
        pytest.param("127.0.0.1:50051", "the scheme is missing", id="no-scheme"),
        pytest.param("ftp://127.0.0.1:21", "the scheme 'ftp' is not http or https", id="ftp"),
        pytest.param("http://:50051", "the host is missing", id="no-host"),
        pytest.param("http://127.0.0.1:1?x=1", "the URL must not have a query", id="query"),
    ],
)
def test_server_flag_invalid_url(isolated_env: Path, url: str, problem: str):
    result = CliRunner().invoke(app, ["--server", url, "get", "jobs"])

    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: invalid server URL {url!r} (from --server): {problem}")
    assert result.stderr.rstrip().endswith(URL_FORM)
    assert "Traceback" not in result.output


def test_command_server_flag_invalid_url(isolated_env: Path):
    result = CliRunner().invoke(app, ["get", "jobs", "--server", "http://127.0.0.1:notaport"])

    assert result.exit_code == 1
    assert "invalid server URL 'http://127.0.0.1:notaport' (from --server)" in result.stderr


def test_server_env_invalid_url(isolated_env: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SKYSHIFT_SERVER", "http://127.0.0.1:notaport")

    result = CliRunner().invoke(app, ["get", "jobs"])

    assert result.exit_code == 1
    assert "invalid server URL 'http://127.0.0.1:notaport' (from SKYSHIFT_SERVER)" in result.stderr


def test_config_invalid_url(isolated_env: Path, monkeypatch: pytest.MonkeyPatch):
    config = ClientConfig(isolated_env / "config.yaml")
    config.set_context("local", "http://127.0.0.1:notaport")
    config.save()
    monkeypatch.setenv("SKYSHIFT_CONFIG", str(config.path))

    result = CliRunner().invoke(app, ["get", "jobs"])

    assert result.exit_code == 1
    assert f"invalid server URL 'http://127.0.0.1:notaport' (from context 'local' in {config.path})" in result.stderr


def test_valid_url_forms_accepted(isolated_env: Path):
    for url in ("http://127.0.0.1:50051", "https://[::1]:8443", "https://skyshift.example.org/prefix/", "http://host"):
        assert choose_server(url).url == url


# ---- empty values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--server", ""], "Error: --server is empty: pass a URL such as", id="global-server"),
        pytest.param(["--token", ""], "Error: --token is empty: pass a value", id="token"),
        pytest.param(["--certificate-authority", " "], "Error: --certificate-authority is empty", id="ca-file"),
    ],
)
def test_empty_global_option_rejected(isolated_env: Path, args: list[str], message: str):
    result = CliRunner().invoke(app, [*args, "get", "jobs"])

    assert result.exit_code == 1
    assert result.stderr.startswith(message)


def test_empty_command_server_rejected(isolated_env: Path):
    result = CliRunner().invoke(app, ["get", "jobs", "--server", ""])

    assert result.exit_code == 1
    assert "--server is empty" in result.stderr


# ---- the client config ----------------------------------------------------------------------


def test_missing_explicit_config_named(isolated_env: Path, monkeypatch: pytest.MonkeyPatch):
    path = isolated_env / "state" / "config.yaml"
    monkeypatch.setenv("SKYSHIFT_CONFIG", str(path))

    result = CliRunner().invoke(app, ["get", "jobs"])

    assert result.exit_code == 1
    assert f"the client config {path}, named by $SKYSHIFT_CONFIG, does not exist" in result.stderr
    assert f"'skyshift up --state-dir {path.parent}'" in result.stderr
    assert "'skyshift --server URL login --username NAME'" in result.stderr


def test_missing_explicit_config_other_name(isolated_env: Path, monkeypatch: pytest.MonkeyPatch):
    # skyshift up only ever writes config.yaml, so it is not offered for another file name.
    monkeypatch.setenv("SKYSHIFT_CONFIG", str(isolated_env / "team.yml"))

    result = CliRunner().invoke(app, ["get", "jobs"])

    assert result.exit_code == 1
    assert "does not exist" in result.stderr
    assert "skyshift up" not in result.stderr


def test_missing_explicit_config_with_server_flag(cli, isolated_env: Path, monkeypatch: pytest.MonkeyPatch):
    # The server is known without the config, so the command works and a later login can create it.
    monkeypatch.setenv("SKYSHIFT_CONFIG", str(isolated_env / "config.yaml"))

    result = cli("get", "jobs")

    assert result.exit_code == 0, result.output


def test_default_server_source_names_config(isolated_env: Path):
    choice = choose_server(None)

    assert choice.url == DEFAULT_SERVER
    expected = isolated_env / ".skyshift" / "config.yaml"
    assert choice.source == f"the default, because there is no client config at {expected}"


def test_unreachable_names_server_source(isolated_env: Path, monkeypatch: pytest.MonkeyPatch):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("SKYSHIFT_SERVER", url)

    result = CliRunner().invoke(app, ["get", "jobs"])

    assert result.exit_code == 1
    assert f"Error: cannot reach the SkyShift API server at {url}" in result.stderr
    assert result.stderr.rstrip().endswith("(server URL from SKYSHIFT_SERVER)")


def test_help_names_environment_variables():
    result = CliRunner().invoke(app, ["--help"])

    assert result.exit_code == 0
    assert "SKYSHIFT_CONFIG" in result.stdout
    assert "SKYSHIFT_SERVER" in result.stdout


# ---- 401 without a matching login -----------------------------------------------------------


def _saved_login(home: Path, monkeypatch: pytest.MonkeyPatch, server: str, token: str, current: bool = True) -> Path:
    config = ClientConfig(home / "config.yaml")
    config.set_context("local", server, user="admin", token=token)
    if not current:
        config.set_context("other", "http://127.0.0.1:1", user="admin")
    config.save()
    monkeypatch.setenv("SKYSHIFT_CONFIG", str(config.path))
    return config.path


def test_unauthorized_lists_saved_servers(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, api_server: str, admin_token: str
):
    path = _saved_login(isolated_env, monkeypatch, api_server, admin_token)
    other = api_server.replace("127.0.0.1", "localhost")

    result = CliRunner().invoke(app, ["--server", other, "get", "jobs"])

    assert result.exit_code == 1
    assert "authentication required" in result.stderr
    assert f"no saved login in {path} matches {other} (it has tokens for: {api_server}, and a token goes" in result.stderr
    assert f"log in with: skyshift login --server {other} --username NAME, or pass --token" in result.stderr
    assert admin_token not in result.output


def test_unauthorized_suggests_matching_context(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, api_server: str, admin_token: str
):
    _saved_login(isolated_env, monkeypatch, api_server, admin_token, current=False)

    result = CliRunner().invoke(app, ["--server", api_server, "get", "jobs"])

    assert result.exit_code == 1
    assert "context 'local'" in result.stderr
    assert "switch to it with: skyshift config use-context local" in result.stderr


def test_unauthorized_without_config(isolated_env: Path, api_server: str):
    result = CliRunner().invoke(app, ["--server", api_server, "get", "jobs"])

    expected = isolated_env / ".skyshift" / "config.yaml"
    assert result.exit_code == 1
    assert f"no token was sent because there is no client config at {expected}" in result.stderr


def test_unauthorized_with_token_names_its_source(isolated_env: Path, api_server: str):
    result = CliRunner().invoke(app, ["--server", api_server, "--token", "sks_admin.00.wrong", "get", "jobs"])

    assert result.exit_code == 1
    assert "no token was sent" not in result.stderr
    assert "(the token was given with --token)" in result.stderr


def test_unauthorized_with_token_from_context_names_client_config(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, api_server: str
):
    path = _saved_login(isolated_env, monkeypatch, api_server, "sks_admin.00.revoked")

    result = CliRunner().invoke(app, ["--server", api_server, "get", "jobs"])

    assert result.exit_code == 1
    assert f"(client configuration: {path}; set SKYSHIFT_CONFIG or --token to use another)" in result.stderr


def test_unauthorized_with_token_from_environment_names_it(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, api_server: str
):
    monkeypatch.setenv("SKYSHIFT_TOKEN", "sks_admin.00.wrong")

    result = CliRunner().invoke(app, ["--server", api_server, "get", "jobs"])

    assert result.exit_code == 1
    assert "(the token came from $SKYSHIFT_TOKEN; unset it or pass --token to use another)" in result.stderr
    assert "client configuration" not in result.stderr


# ---- https against a plain-HTTP server ------------------------------------------------------


def test_https_to_plain_server_suggests_http(isolated_env: Path, api_server: str, admin_token: str):
    plain = api_server
    tls = plain.replace("http://", "https://")

    result = CliRunner().invoke(app, ["--server", tls, "--token", admin_token, "get", "jobs"])

    assert result.exit_code == 1
    assert f"the server at {tls} does not speak TLS" in result.stderr
    assert f"try {plain} instead" in result.stderr
    assert "skyshift up" not in result.stderr


# ---- the CA file of a context ---------------------------------------------------------------


def test_set_context_stores_absolute_ca(isolated_env: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(isolated_env)
    config = ClientConfig(isolated_env / "config.yaml")

    config.set_context("tls", "https://127.0.0.1:50051", certificate_authority="pki/ca.pem")
    config.save()

    stored = ClientConfig.load(config.path).get("tls").certificate_authority
    assert stored == str(isolated_env / "pki" / "ca.pem")


def test_relative_context_ca_from_config_dir(isolated_env: Path, monkeypatch: pytest.MonkeyPatch):
    # A hand-written relative path is relative to the config file's directory, as in a kubeconfig.
    state = isolated_env / "state"
    state.mkdir()
    text = (
        "current_context: tls\n"
        "contexts:\n"
        "  - {name: tls, server: 'https://127.0.0.1:50051', certificate_authority: ca.pem}\n"
    )
    path = write(state, "config.yaml", text)
    monkeypatch.setenv("SKYSHIFT_CONFIG", str(path))
    monkeypatch.chdir(isolated_env)

    connection = resolve_connection()

    assert connection.ca_file == str(state / "ca.pem")
    assert connection.ca_source == f"context 'tls' in {path}"


def test_missing_context_ca_names_context(isolated_env: Path, monkeypatch: pytest.MonkeyPatch):
    config = ClientConfig(isolated_env / "config.yaml")
    missing = isolated_env / "moved" / "ca.pem"
    config.set_context("tls", "https://127.0.0.1:50051", token="sks_a.00.x", certificate_authority=str(missing))
    config.save()
    monkeypatch.setenv("SKYSHIFT_CONFIG", str(config.path))

    result = CliRunner().invoke(app, ["get", "jobs"])

    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot load the CA file '{missing}'")
    assert f"the certificate_authority of context 'tls' in {config.path}" in result.stderr
    assert "No such file or directory" in result.stderr
    assert "pass --certificate-authority FILE" in result.stderr


def test_missing_env_ca_names_variable(isolated_env: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SKYSHIFT_CA_FILE", "nowhere/ca.pem")
    monkeypatch.chdir(isolated_env)

    result = CliRunner().invoke(app, ["--server", "https://127.0.0.1:50051", "get", "jobs"])

    assert result.exit_code == 1
    assert f"cannot load the CA file '{isolated_env / 'nowhere' / 'ca.pem'}' (from $SKYSHIFT_CA_FILE)" in result.stderr
