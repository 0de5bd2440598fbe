"""Packaging: the core and every plugin under plugins/ build as wheels that install and import in a fresh virtualenv."""

from __future__ import annotations

import json
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging_helpers import REPO_ROOT, Venv, build_wheels, distribution_name

# Plugin projects present when the tests are collected; the list is empty until a plugin has a pyproject.toml.
PLUGIN_PROJECTS = sorted(path.parent for path in (REPO_ROOT / "plugins").glob("*/pyproject.toml"))


def import_location(venv: Venv, module: str) -> Path:
    result = venv.python_run("-c", f"import {module}; print({module}.__file__)")
    return Path(result.stdout.strip())


@pytest.mark.slow
def test_core_imports_from_site_packages(core_venv):
    location = import_location(core_venv, "skyshift_core")

    assert location.is_relative_to(core_venv.site_packages())
    assert not location.is_relative_to(REPO_ROOT)


@pytest.mark.slow
def test_core_venv_has_no_system_site_packages(core_venv):
    config = (core_venv.path / "pyvenv.cfg").read_text()

    assert "include-system-site-packages = false" in config


@pytest.mark.slow
def test_core_version_from_metadata(core_venv):
    with open(REPO_ROOT / "pyproject.toml", "rb") as file:
        expected = tomllib.load(file)["project"]["version"]

    result = core_venv.python_run("-c", "import skyshift_core; print(skyshift_core.__version__)")

    assert result.stdout.strip() == expected


@pytest.mark.slow
def test_core_dependencies_consistent(core_venv):
    result = core_venv.pip("check", check=False)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_core_wheel_contents(core_wheel):
    names = zipfile.ZipFile(core_wheel).namelist()

    for module in ["skyshift_core/plugins.py", "skyshift_core/hookspecs.py", "skyshift_core/cli/plugins_cmd.py"]:
        assert module in names
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"skyshift_core", core_wheel.name.split("-py3")[0] + ".dist-info"}


@pytest.mark.slow
@pytest.mark.parametrize("project", PLUGIN_PROJECTS, ids=[project.name for project in PLUGIN_PROJECTS])
def test_plugin_wheel_installs(project, core_venv, wheelhouse, tmp_path):
    wheel = build_wheels({project: ()}, tmp_path / "build", tmp_path / "wheels")[project]
    packages = sorted(
        path.name
        for path in project.iterdir()
        if path.name.startswith("skyshift_") and (path / "__init__.py").is_file()
    )
    assert packages, f"{project} has no skyshift_* import package"

    # The plugin's own dependencies may come from the package index; skyshift comes from the wheelhouse.
    core_venv.pip("install", "--find-links", wheelhouse, wheel)

    for package in packages:
        location = import_location(core_venv, package)
        assert location.is_relative_to(core_venv.site_packages()), f"{package} imported from {location}"
    check = core_venv.pip("check", check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    listing = core_venv.python_run(
        "-c", "import json; from skyshift_core.plugins import plugins_payload; print(json.dumps(plugins_payload()))"
    )
    failed = [
        item
        for item in json.loads(listing.stdout)["items"]
        if item["distribution"] == distribution_name(project) and item["status"] != "loaded"
    ]
    assert failed == []
