"""The etcd that `skyshift up` and the tests start: another process may take a port chosen for
it before etcd binds it, and etcd then starts on other free ports."""

from __future__ import annotations

import socket

import pytest

from skyshift_core.local import etcd as etcd_module
from skyshift_core.local.etcd import EtcdProcess


def bound_socket() -> socket.socket:
    """A socket bound to a free loopback port and not listening, so connections to that port fail."""
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    return blocker


def test_etcd_retries_when_chosen_port_taken(tmp_path, monkeypatch: pytest.MonkeyPatch):
    blocker = bound_socket()
    port = blocker.getsockname()[1]
    real_free_port = etcd_module.free_port
    handed_out = iter([port])
    monkeypatch.setattr(etcd_module, "free_port", lambda: next(handed_out, None) or real_free_port())

    etcd = EtcdProcess(data_dir=tmp_path / "data").start()
    try:
        assert etcd.is_running()
        assert etcd.client_port != port
        assert "address already in use" in etcd.log_path.read_text()
    finally:
        etcd.stop()
        blocker.close()


def test_etcd_given_port_taken_fails(tmp_path):
    blocker = bound_socket()
    port = blocker.getsockname()[1]
    try:
        expected = rf"(?s)etcd on 127.0.0.1:{port} exited before it listened; .*address already in use"
        with pytest.raises(RuntimeError, match=expected):
            EtcdProcess(data_dir=tmp_path / "data", client_port=port).start()
    finally:
        blocker.close()


def test_etcd_data_dir_private(tmp_path):
    # etcd recommends 0700 and warns at every start about a wider mode; the data contains password hashes.
    (tmp_path / "data").mkdir(mode=0o755)

    etcd = EtcdProcess(data_dir=tmp_path / "data").start()
    try:
        assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
        assert "permission" not in etcd.log_path.read_text()
    finally:
        etcd.stop()
