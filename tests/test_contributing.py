"""CONTRIBUTING.md followed literally: its files written out, built, installed into a fresh
virtualenv with SkyShift, tested, listed, and seen to change a placement."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from packaging_helpers import REPO_ROOT, build_wheels, create_venv

pytestmark = pytest.mark.slow

_FILE_BLOCK = re.compile(r"<!-- file: (?P<path>[^ ]+) -->\n```[a-z]*\n(?P<body>.*?)\n```", re.DOTALL)


def walkthrough_files() -> dict[str, str]:
    text = (REPO_ROOT / "CONTRIBUTING.md").read_text()
    return {match["path"]: match["body"] + "\n" for match in _FILE_BLOCK.finditer(text)}


def test_walkthrough_has_every_file():
    assert sorted(walkthrough_files()) == [
        "skyshift-scheduler-cost/pyproject.toml",
        "skyshift-scheduler-cost/skyshift_scheduler_cost/__init__.py",
        "skyshift-scheduler-cost/skyshift_scheduler_cost/cost.py",
        "skyshift-scheduler-cost/tests/test_cost.py",
        "try_cost.py",
    ]


def test_walkthrough_plugin_changes_placement(tmp_path: Path, wheelhouse: Path, core_wheel: Path):
    for relative, body in walkthrough_files().items():
        target = tmp_path / "work" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
    project = tmp_path / "work" / "skyshift-scheduler-cost"
    spread = REPO_ROOT / "plugins" / "scheduler_spread"
    wheels = build_wheels({project: (), spread: ("tests",)}, tmp_path / "build", tmp_path / "dist")

    venv = create_venv(tmp_path / "venv")
    venv.pip("install", "--no-index", "--find-links", wheelhouse, core_wheel, wheels[spread], wheels[project])
    venv.pip("install", "pytest")

    tests = venv.run([venv.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", project / "tests"])
    assert "4 passed" in tests.stdout

    listing = json.loads(venv.run([venv.script("skyshift"), "plugins", "list", "--json"]).stdout)
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

    placements = venv.run([venv.python, tmp_path / "work" / "try_cost.py"]).stdout.splitlines()
    assert placements == ["default {'alpha': 1}", "cheap {'beta': 1}"]
