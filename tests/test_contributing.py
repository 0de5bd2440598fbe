"""CONTRIBUTING.md followed literally: its files written out, and the shell commands of its
sections run as written in a fresh virtualenv with SkyShift, so the plugin is built, installed,
tested, listed, enabled with `skyshift up` and seen to change a placement."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging_helpers import REPO_ROOT, Venv, build_wheels, clean_environment, create_venv

from skyshift_core.local.processes import free_port, is_alive, stop_process

pytestmark = pytest.mark.slow

_FILE_BLOCK = re.compile(r"<!-- file: (?P<path>[^ ]+) -->\n```[a-z]*\n(?P<body>.*?)\n```", re.DOTALL)
# A fenced block; those without a language hold the guide's shell commands.
_FENCED_BLOCK = re.compile(r"^```(?P<language>[a-z]*)\n(?P<body>.*?)\n```$", re.DOTALL | re.MULTILINE)
BUILD_SECTION = "Build, install, see it"
ENABLE_SECTION = "Enable it in a scheduler profile"


def walkthrough_files() -> dict[str, str]:
    text = (REPO_ROOT / "CONTRIBUTING.md").read_text()
    return {match["path"]: match["body"] + "\n" for match in _FILE_BLOCK.finditer(text)}


def section_commands(heading: str) -> list[list[str]]:
    """Return the commands of the first shell block under `## heading` in CONTRIBUTING.md, split as a shell would."""
    text = (REPO_ROOT / "CONTRIBUTING.md").read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    blocks = _FENCED_BLOCK.finditer(text[start : end if end != -1 else None])
    block = next((block for block in blocks if not block["language"]), None)
    assert block is not None, f"no shell block under '## {heading}' in CONTRIBUTING.md"
    return [shlex.split(line) for line in block["body"].splitlines() if line.strip()]


@dataclass
class Walkthrough:
    """The guide's files in `work`, and a virtualenv with SkyShift, spread and pytest installed."""

    work: Path
    venv: Venv
    outputs: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)

    def run(self, command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run a documented command from `work` with the virtualenv's programs, as a user with it activated would."""
        program = shutil.which(command[0], path=str(self.venv.path / "bin"))
        assert program is not None, f"{command[0]!r} from CONTRIBUTING.md is not a program of the virtualenv"
        environment = clean_environment()
        environment["PATH"] = f"{self.venv.path / 'bin'}{os.pathsep}{environment.get('PATH', '')}"
        environment["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        for variable in ("SKYSHIFT_SERVER", "SKYSHIFT_TOKEN", "SKYSHIFT_CONFIG", "SKYSHIFT_STATE_DIR"):
            environment.pop(variable, None)
        environment.update(env or {})
        result = subprocess.run(
            [program, *command[1:]], cwd=self.work, env=environment, capture_output=True, text=True, timeout=600,
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"{shlex.join(command)} failed:\n{result.stdout}\n{result.stderr}"
        return result


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, core_wheel: Path) -> Walkthrough:
    """The guide followed up to its enable section: files written, the build section's commands run."""
    root = tmp_path_factory.mktemp("contributing")
    work = root / "work"
    for relative, body in walkthrough_files().items():
        target = work / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)

    # The guide starts from an installed SkyShift with its spread plugin, as scripts/setup.sh leaves it.
    spread = REPO_ROOT / "plugins" / "scheduler_spread"
    wheels = build_wheels({spread: ("tests",)}, root / "build", root / "dist")
    venv = create_venv(root / "venv")
    venv.pip("install", "--no-index", "--find-links", wheelhouse, core_wheel, wheels[spread])
    venv.pip("install", "pytest")

    walkthrough = Walkthrough(work, venv)
    for command in section_commands(BUILD_SECTION):
        walkthrough.outputs[shlex.join(command)] = walkthrough.run(command)
    return walkthrough


def test_walkthrough_has_every_file():
    assert sorted(walkthrough_files()) == [
        "cm.yaml",
        "skyshift-scheduler-cost/pyproject.toml",
        "skyshift-scheduler-cost/skyshift_scheduler_cost/__init__.py",
        "skyshift-scheduler-cost/skyshift_scheduler_cost/cost.py",
        "skyshift-scheduler-cost/tests/test_cost.py",
        "try_cost.py",
    ]


def test_build_section_commands():
    commands = [shlex.join(command) for command in section_commands(BUILD_SECTION)]

    assert commands == [
        "pip wheel --no-deps ./skyshift-scheduler-cost -w dist/",
        "pip install dist/skyshift_scheduler_cost-0.1.0-py3-none-any.whl",
        "python -m pytest skyshift-scheduler-cost/tests",
        "skyshift plugins list",
    ]


def test_walkthrough_builds_and_lists_plugin(walkthrough: Walkthrough):
    assert (walkthrough.work / "dist" / "skyshift_scheduler_cost-0.1.0-py3-none-any.whl").is_file()
    tests = walkthrough.outputs["python -m pytest skyshift-scheduler-cost/tests"]
    assert "4 passed" in tests.stdout
    table = walkthrough.outputs["skyshift plugins list"].stdout
    (row,) = [line.split() for line in table.splitlines() if line.split()[:1] == ["cost"]]
    assert "skyshift.scheduler_plugins" in row
    assert "loaded" in row

    listing = json.loads(walkthrough.run(["skyshift", "plugins", "list", "--json"]).stdout)
    cost = [item for item in listing["items"] if item["name"] == "cost"]
    assert cost == [
        {
            "name": "cost",
            "group": "skyshift.scheduler_plugins",
            "distribution": "skyshift-scheduler-cost",
            "version": "0.1.0",
            "provides": "score: prefer clusters with a lower cost label",
            "status": "loaded",
            "error": None,
        }
    ]


def test_walkthrough_plugin_changes_placement(walkthrough: Walkthrough):
    placements = walkthrough.run(["python", "try_cost.py"]).stdout.splitlines()

    assert placements == ["default {'alpha': 1}", "cheap {'beta': 1}"]


@pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed: apt-get install -y etcd-server")
def test_walkthrough_up_enables_profile(walkthrough: Walkthrough, tmp_path: Path):
    # The guide's commands use the default state directory and port; this run gets its own of each.
    state_dir = tmp_path / "state"
    env = {"SKYSHIFT_STATE_DIR": str(state_dir)}
    commands = section_commands(ENABLE_SECTION)
    assert [command[:2] for command in commands] == [["skyshift", "up"], ["skyshift", "status"]]
    try:
        up = walkthrough.run(commands[0] + ["--port", str(free_port())], env=env)
        status = walkthrough.run(commands[1], env=env)
    finally:
        walkthrough.run(["skyshift", "down"], env=env)
        state_file = state_dir / "state.json"
        processes = json.loads(state_file.read_text())["processes"] if state_file.exists() else {}
        for record in processes.values():
            if is_alive(record["pid"]):
                stop_process(record["pid"])

    config = walkthrough.work / "cm.yaml"
    assert f"The controller manager runs with the config {config}" in up.stdout
    (row,) = [line.split() for line in status.stdout.splitlines() if line.startswith("controller-manager")]
    assert row[2] == "ready"
    assert row[-1] == str(config)
    log = (state_dir / "logs" / "controller-manager.log").read_text()
    assert "Scheduler profiles: cheap, default" in log
