"""Import layers: import-linter checks the contracts of .importlinter against the work tree.

import-linter needs every listed package to be importable, so each test checks a copy of .importlinter
that lists only the plugin packages present, with each plugin's directory on PYTHONPATH.
"""

from __future__ import annotations

import configparser
import io
import shutil
import sys
from pathlib import Path

import pytest
from packaging_helpers import REPO_ROOT, clean_environment, run

TEMPLATE = REPO_ROOT / ".importlinter"
CORE_PACKAGE = "skyshift_core"
# Options of .importlinter that list packages; the copy keeps only the packages that are present.
PACKAGE_LIST_OPTIONS = ("root_packages", "source_modules", "forbidden_modules", "modules")


def repo_plugin_packages() -> dict[str, Path]:
    """Each plugin import package in the repository, mapped to the directory that contains it."""
    return {
        package.name: package.parent
        for package in sorted((REPO_ROOT / "plugins").glob("*/skyshift_*"))
        if (package / "__init__.py").is_file()
    }


def template_plugin_packages() -> list[str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(TEMPLATE)
    return [name for name in parser["importlinter"]["root_packages"].split() if name != CORE_PACKAGE]


def render_contracts(present: set[str]) -> str:
    """The text of .importlinter with every package list cut down to the core and the `present` plugins."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(TEMPLATE)
    for section in parser.sections():
        for option in PACKAGE_LIST_OPTIONS:
            if option in parser[section]:
                listed = [
                    name
                    for name in parser[section][option].split()
                    if name.split(".")[0] == CORE_PACKAGE or name in present
                ]
                parser[section][option] = "\n" + "\n".join(listed)

    # A contract with nothing to check is left out, so that the report does not count it as kept.
    for section in parser.sections():
        contract = parser[section]
        forbidden = contract.get("type") == "forbidden"
        nothing_forbidden = forbidden and not contract["forbidden_modules"].split()
        nothing_checked = forbidden and not contract["source_modules"].split()
        one_independent = contract.get("type") == "independence" and len(contract["modules"].split()) < 2
        if nothing_forbidden or nothing_checked or one_independent:
            parser.remove_section(section)

    text = io.StringIO()
    parser.write(text)
    return text.getvalue()


def lint_imports(config_text: str, work_dir: Path, package_dirs: list[Path]):
    """Run lint-imports on `config_text`; `package_dirs` go first on PYTHONPATH, then the plugins, then the core."""
    config = work_dir / "importlinter.ini"
    config.write_text(config_text)
    executable = Path(sys.executable).parent / "lint-imports"
    command = str(executable) if executable.exists() else shutil.which("lint-imports")
    assert command, "lint-imports is not installed; install the test extra: pip install -e '.[test]'"

    # The work tree comes last but before site-packages, so the source is linted, not an installed copy.
    paths = [*package_dirs, *sorted(set(repo_plugin_packages().values())), REPO_ROOT]
    return run(
        [command, str(config), "--no-cache", "--no-logo"], cwd=work_dir, env=clean_environment(paths), check=False
    )


def write_package(root: Path, name: str, source: str = "") -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / "__init__.py").write_text(source)


def test_repo_keeps_import_layers(tmp_path):
    config = render_contracts(set(repo_plugin_packages()))

    result = lint_imports(config, tmp_path, [])

    assert result.returncode == 0, result.stdout + result.stderr


def test_every_repo_plugin_in_template():
    listed = set(template_plugin_packages())

    missing = sorted(set(repo_plugin_packages()) - listed)

    assert missing == [], f"add these plugin packages to every package list in .importlinter: {missing}"


def test_core_importing_plugin_reported(tmp_path):
    # A copy of the core with one module that imports a plugin, placed ahead of the real core.
    plugin = template_plugin_packages()[0]
    packages = tmp_path / "packages"
    shutil.copytree(REPO_ROOT / CORE_PACKAGE, packages / CORE_PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    (packages / CORE_PACKAGE / "layer_probe.py").write_text(f"import {plugin}\n")
    write_package(packages, plugin)

    config = render_contracts(set(repo_plugin_packages()) | {plugin})
    result = lint_imports(config, tmp_path, [packages])

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{CORE_PACKAGE}.layer_probe -> {plugin}" in result.stdout
    assert "The core never imports a plugin BROKEN" in result.stdout


def test_plugin_importing_plugin_reported(tmp_path):
    importer, imported = template_plugin_packages()[:2]
    packages = tmp_path / "packages"
    write_package(packages, importer, f"import {imported}\n")
    write_package(packages, imported)

    config = render_contracts(set(repo_plugin_packages()) | {importer, imported})
    result = lint_imports(config, tmp_path, [packages])

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{importer} -> {imported}" in result.stdout
    assert "Plugins never import each other BROKEN" in result.stdout


def test_plugin_importing_core_internals_reported(tmp_path):
    plugin = template_plugin_packages()[0]
    packages = tmp_path / "packages"
    write_package(packages, plugin, "from skyshift_core.store import Store\n")

    config = render_contracts(set(repo_plugin_packages()) | {plugin})
    result = lint_imports(config, tmp_path, [packages])

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{plugin} -> skyshift_core.store" in result.stdout
    assert "Plugins import only the core's plugin API BROKEN" in result.stdout


@pytest.mark.parametrize(
    ("present", "expected_contracts"),
    [
        pytest.param(set(), [], id="no-plugins"),
        pytest.param({"skyshift_slurm"}, ["core-never-imports-plugins", "plugins-use-public-api"], id="one-plugin"),
        pytest.param(
            {"skyshift_slurm", "skyshift_k8s"},
            ["core-never-imports-plugins", "plugins-independent", "plugins-use-public-api"],
            id="two-plugins",
        ),
    ],
)
def test_render_drops_empty_contracts(present, expected_contracts):
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(render_contracts(present))

    contracts = [
        section.split(":")[-1] for section in parser.sections() if section.startswith("importlinter:contract:")
    ]

    assert contracts == expected_contracts
    expected_roots = [CORE_PACKAGE, *sorted(present, key=template_plugin_packages().index)]
    assert parser["importlinter"]["root_packages"].split() == expected_roots
