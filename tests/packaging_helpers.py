"""Build wheels and install them into throwaway virtualenvs, for the packaging and plugin tests.

Builds run on copies of the projects, so the work tree never gets `build/` or `*.egg-info` directories,
and every command runs outside the work tree with a cleaned environment, so nothing can be imported
from the source tree by accident.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DISTS = REPO_ROOT / "tests" / "fixtures" / "plugin_dists"

# Build outputs, caches and version control data, never copied into a build.
_BUILD_LEFTOVERS = (".git", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache", ".venv")
# Top-level directories of the repository that are not part of the core distribution.
CORE_EXCLUDES = ("tests", "plugins", "scripts", "docs", ".ci")

# Variables that would let a child Python see packages from outside its virtualenv.
_LEAKING_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")


def run(command: Sequence[str | os.PathLike], *, cwd: Path, env: dict[str, str] | None = None, check: bool = True):
    """Run a command and capture its output; on failure, raise with the command and both output streams."""
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"command failed with exit code {result.returncode}: {' '.join(map(str, command))}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result


def clean_environment(extra_paths: Iterable[Path] = ()) -> dict[str, str]:
    """os.environ without the variables that leak outside packages, plus PYTHONPATH=`extra_paths` if given."""
    env = {key: value for key, value in os.environ.items() if key not in _LEAKING_VARIABLES}
    # The user site directory (~/.local) would add packages the virtualenv does not have.
    env["PYTHONNOUSERSITE"] = "1"
    paths = [str(path) for path in extra_paths]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def distribution_name(project: Path) -> str:
    with open(project / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["project"]["name"]


def copy_project(project: Path, destination: Path, exclude: Iterable[str] = ()) -> Path:
    """Copy a project for building, without build leftovers and without the top-level names in `exclude`."""
    leftovers = shutil.ignore_patterns(*_BUILD_LEFTOVERS)
    top_level_excludes = set(exclude)

    def ignore(directory: str, names: list[str]) -> set[str]:
        ignored = set(leftovers(directory, names))
        if Path(directory) == project:
            ignored |= top_level_excludes & set(names)
        return ignored

    shutil.copytree(project, destination, ignore=ignore)
    return destination


def build_wheels(projects: dict[Path, Iterable[str]], scratch: Path, wheel_dir: Path) -> dict[Path, Path]:
    """Build one wheel per project with pip, in a single pip run; return each project's wheel.

    `projects` maps a project directory to the top-level names to leave out of its copy.
    """
    wheel_dir.mkdir(parents=True, exist_ok=True)
    copies = []
    for index, (project, exclude) in enumerate(projects.items()):
        copies.append(copy_project(project, scratch / f"{index}-{project.name}", exclude))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", wheel_dir, *copies], cwd=scratch)

    wheels = {}
    for project in projects:
        # Wheel file names spell the distribution name with underscores (PEP 427).
        prefix = distribution_name(project).replace("-", "_").replace(".", "_") + "-"
        matches = [wheel for wheel in wheel_dir.glob("*.whl") if wheel.name.lower().startswith(prefix.lower())]
        if len(matches) != 1:
            raise RuntimeError(f"expected one wheel named {prefix}*.whl in {wheel_dir}, found {matches}")
        wheels[project] = matches[0]
    return wheels


def fill_wheelhouse(requirement: Path, wheelhouse: Path) -> None:
    """Put the wheels of `requirement` and of all its dependencies into `wheelhouse`.

    Dependencies come from pip's cache or the package index, so later installs can use --no-index.
    """
    run([sys.executable, "-m", "pip", "wheel", "--wheel-dir", wheelhouse, requirement], cwd=wheelhouse)


@dataclass(frozen=True)
class Venv:
    """A virtualenv created by the tests, without access to the system's or the runner's site-packages."""

    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def script(self, name: str) -> Path:
        return self.path / "bin" / name

    def run(self, command: Sequence[str | os.PathLike], *, extra_paths: Iterable[Path] = (), check: bool = True):
        """Run a command with this virtualenv's bin directory first on PATH, from outside the work tree."""
        env = clean_environment(extra_paths)
        env["PATH"] = f"{self.path / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return run(command, cwd=self.path, env=env, check=check)

    def python_run(self, *arguments: str, extra_paths: Iterable[Path] = (), check: bool = True):
        return self.run([self.python, *arguments], extra_paths=extra_paths, check=check)

    def pip(self, *arguments: str | os.PathLike, check: bool = True):
        return self.run([self.python, "-m", "pip", "--disable-pip-version-check", *arguments], check=check)

    def site_packages(self) -> Path:
        result = self.python_run("-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
        return Path(result.stdout.strip())


def create_venv(path: Path) -> Venv:
    """Create a fresh virtualenv (with pip, without system site-packages) from the running interpreter."""
    run([sys.executable, "-m", "venv", path], cwd=path.parent, env=clean_environment())
    return Venv(path)
