"""Session fixtures shared by the test modules: the core built as a wheel and installed in a fresh virtualenv."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging_helpers import CORE_EXCLUDES, REPO_ROOT, Venv, build_wheels, create_venv, fill_wheelhouse


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the core's wheel and the wheels of all its dependencies."""
    directory = tmp_path_factory.mktemp("wheelhouse")
    core = build_wheels({REPO_ROOT: CORE_EXCLUDES}, tmp_path_factory.mktemp("core-build"), directory)[REPO_ROOT]
    fill_wheelhouse(core, directory)
    return directory


@pytest.fixture(scope="session")
def core_wheel(wheelhouse: Path) -> Path:
    (wheel,) = wheelhouse.glob("skyshift-*.whl")
    return wheel


@pytest.fixture(scope="session")
def core_venv(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, core_wheel: Path) -> Venv:
    """A fresh virtualenv with the core installed from its wheel, dependencies from the wheelhouse only."""
    venv = create_venv(tmp_path_factory.mktemp("venvs") / "core")
    venv.pip("install", "--no-index", "--find-links", wheelhouse, core_wheel)
    return venv
