"""The local control plane's state directory: a clear error when it cannot be used, and a lock so
that runs of `skyshift up` and `down` on it take turns."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from skyshift_core.cli.main import app
from skyshift_core.errors import ControlPlaneError
from skyshift_core.local.controlplane import LocalControlPlane


def test_state_dir_under_a_file_named(tmp_path: Path):
    (tmp_path / "plain-file").write_text("not a directory\n")
    plane = LocalControlPlane(tmp_path / "plain-file" / "state")

    with pytest.raises(ControlPlaneError) as raised:
        plane.prepare_state_dir()

    assert raised.value.message.startswith(f"cannot use the state directory {tmp_path / 'plain-file' / 'state'}: ")
    assert "Not a directory" in raised.value.message
    assert raised.value.message.endswith("choose a directory you may write with --state-dir or SKYSHIFT_STATE_DIR")


def test_state_dir_that_is_a_file_named(tmp_path: Path):
    (tmp_path / "plain-file").write_text("not a directory\n")

    with pytest.raises(ControlPlaneError) as raised:
        LocalControlPlane(tmp_path / "plain-file").prepare_state_dir()

    assert raised.value.message.startswith(
        f"cannot use the state directory {tmp_path / 'plain-file'}: it is a file, not a directory; "
    )


def test_up_names_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "plain-file").write_text("not a directory\n")
    monkeypatch.setenv("SKYSHIFT_CONFIG", str(tmp_path / "client.yaml"))

    result = CliRunner().invoke(app, ["up", "--state-dir", str(tmp_path / "plain-file" / "state")])

    assert result.exit_code == 1
    assert "cannot use the state directory" in result.output
    assert "client config" not in result.output
    assert "Traceback" not in result.output


def test_second_run_waits_for_the_first(tmp_path: Path):
    plane = LocalControlPlane(tmp_path / "state")
    plane.prepare_state_dir()
    waited = threading.Event()
    entered = threading.Event()

    def second_run() -> None:
        with LocalControlPlane(tmp_path / "state").exclusive(on_wait=waited.set):
            entered.set()

    with plane.exclusive():
        other = threading.Thread(target=second_run)
        other.start()
        assert waited.wait(timeout=10)
        # The first run still holds the lock, so the second has not entered.
        assert not entered.wait(timeout=0.2)
    other.join(timeout=10)

    assert entered.is_set()


def test_down_of_a_missing_state_dir_creates_nothing(tmp_path: Path):
    plane = LocalControlPlane(tmp_path / "never-used")

    assert plane.down() == []
    assert not (tmp_path / "never-used").exists()
