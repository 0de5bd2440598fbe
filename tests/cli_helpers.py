"""Fixtures and helpers shared by the tests/test_cli_*.py modules: a CliRunner, the CLI as the
administrator against the test's API server, and a client for checking what the CLI did."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from skyshift_core.cli.main import app
from skyshift_core.client import SkyShiftClient


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def cli(runner: CliRunner, api_server: str, admin_token: str):
    """Run `skyshift --server API --token ADMIN_TOKEN ARGS...` and return the click Result."""

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, ["--server", api_server, "--token", admin_token, *args], input=input)

    return invoke


@pytest.fixture
def client(api_server: str, admin_token: str):
    with SkyShiftClient(api_server, token=admin_token) as instance:
        yield instance


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point HOME at an empty directory and clear the CLI's variables; return that HOME."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("SKYSHIFT_CONFIG", "SKYSHIFT_SERVER", "SKYSHIFT_TOKEN", "SKYSHIFT_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    return home


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path
