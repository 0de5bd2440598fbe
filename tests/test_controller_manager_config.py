"""The controller manager's config file: what loading it rejects, and check_config, which also builds
the scheduler profiles with the installed plugins (as `skyshift up` does before it starts anything)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from skyshift_core.controllers.manager import ControllerManagerConfig, check_config
from skyshift_core.local.processes import free_port


@pytest.mark.parametrize(
    "content, message",
    [
        ("scheduler: {profiles: [\n", "invalid YAML in controller manager config {path}"),
        ("- scheduler\n", "controller manager config {path} must be a mapping"),
        ("schedulers: {}\n", "unknown section(s) schedulers in {path}; valid: controllers, scheduler"),
        ("scheduler:\n  profile: []\n", "unknown setting(s) profile in section scheduler of {path}; valid: profiles"),
        ("skylet:\n  poll: 2\n", "unknown setting(s) poll in section skylet of {path}; valid: poll_interval"),
        ("leader_election: 15\n", "invalid section leader_election in {path}: expected a mapping of settings"),
        ("scheduler:\n  profiles: {name: default}\n", "invalid scheduler.profiles in {path}: expected a list"),
        ("controllers: scheduler\n", "invalid controllers 'scheduler' in {path}: expected a list of names"),
    ],
    ids=[
        "invalid-yaml", "not-mapping", "unknown-section", "unknown-scheduler-setting", "unknown-skylet-setting",
        "section-not-mapping", "profiles-not-list", "controllers-not-list",
    ],
)  # fmt: skip
def test_config_load_invalid(tmp_path: Path, content: str, message: str):
    path = tmp_path / "cm.yaml"
    path.write_text(content)

    with pytest.raises(ValueError) as raised:
        ControllerManagerConfig.load(path)

    assert message.format(path=path) in str(raised.value)


def test_config_load_missing_file(tmp_path: Path):
    path = tmp_path / "missing.yaml"

    with pytest.raises(ValueError, match="cannot read controller manager config .*missing.yaml"):
        ControllerManagerConfig.load(path)


def test_check_config_builds_profiles(tmp_path: Path):
    path = tmp_path / "cm.yaml"
    path.write_text(
        "scheduler:\n  profiles:\n    - {name: default, divide: spread, filters: [placement]}\n    - {name: packed, divide: binpack}\n"
    )

    config = check_config(path)

    assert [profile["name"] for profile in config.profiles] == ["default", "packed"]


@pytest.mark.parametrize(
    "profiles, message",
    [
        ("[{name: default, divide: spred}]", "No scheduler plugin named 'spred'"),
        ("[{name: default, divide: spread, args: {spread: {max_skew: 0}}}]", "invalid arguments for scheduler plugin 'spread'"),
        ("[{name: default, divide: spread, disabled_filters: [spread]}]", "'spread', which is not a built-in filter"),
    ],
    ids=["unknown-plugin", "invalid-args", "disable-unknown-filter"],
)  # fmt: skip
def test_check_config_invalid_profiles(tmp_path: Path, profiles: str, message: str):
    path = tmp_path / "cm.yaml"
    path.write_text(f"scheduler:\n  profiles: {profiles}\n")

    with pytest.raises(ValueError) as raised:
        check_config(path)

    assert f"invalid scheduler profiles in {path}: " in str(raised.value)
    assert message in str(raised.value)


def test_controller_manager_command_names_config(tmp_path: Path):
    path = tmp_path / "cm.yaml"
    path.write_text("scheduler:\n  profiles: [{name: default, divide: spred}]\n")

    # The profiles are checked before the API server is contacted, so nothing needs to listen there.
    result = subprocess.run(
        [
            sys.executable, "-m", "skyshift_core.cli.main", "controller-manager",
            "--server", f"http://127.0.0.1:{free_port()}", "--config", str(path),
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert result.returncode == 1
    assert f"Error: invalid scheduler profiles in {path}: No scheduler plugin named 'spred'" in result.stderr
    assert "Traceback" not in result.stderr
