"""Transports and log reading on this machine: real subprocesses and real files, no Slurm needed."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from skyshift_slurm.logs import list_command, parse_line, replica_files, tail_command
from skyshift_slurm.transport import LocalTransport, SshTransport

from skyshift_core.cluster_manager import ClusterManagerError


async def test_local_command_gets_slurm_conf_but_not_secrets(monkeypatch, tmp_path):
    monkeypatch.setenv("SKYSHIFT_TEST_SECRET", "hunter2")
    slurm_conf = tmp_path / "site-a.conf"
    slurm_conf.write_text("ClusterName=site-a\n")
    transport = LocalTransport(str(slurm_conf))

    result = await transport.run(["env"], timeout=10)

    assert f"SLURM_CONF={slurm_conf}" in result.output.splitlines()
    assert "hunter2" not in result.output


async def test_local_missing_slurm_conf_is_named(tmp_path):
    missing = tmp_path / "nope" / "slurm.conf"

    with pytest.raises(ClusterManagerError) as raised:
        await LocalTransport(str(missing)).run(["scontrol", "ping"], timeout=5)

    assert f"slurm_conf '{missing}' is not a file on this machine" in str(raised.value)
    assert "fix spec.config.slurm_conf" in str(raised.value)


async def test_local_command_timeout_kills_process(tmp_path):
    transport = LocalTransport(None)
    pid_file = tmp_path / "pid"

    with pytest.raises(ClusterManagerError, match="timed out after 0.3 s"):
        await transport.run(["sh", "-c", f"echo $$ > {pid_file}; exec sleep 30"], timeout=0.3)

    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists() or "State:\tZ" in Path(f"/proc/{pid}/status").read_text()


async def test_local_missing_program_is_reported():
    with pytest.raises(ClusterManagerError, match="not found; install Slurm's client commands"):
        await LocalTransport(None).run(["skyshift-no-such-program"], timeout=5)


def test_ssh_checks_host_keys_strictly():
    transport = SshTransport("login1", port=2222, user="alice", identity_file="/keys/id", known_hosts="/etc/kh")

    argv, _ = transport.wrap(["squeue", "--me"], {"SLURM_TIME_FORMAT": "%s"})
    options = " ".join(argv)

    assert "StrictHostKeyChecking=yes" in options
    assert "UserKnownHostsFile=/etc/kh" in options
    assert "BatchMode=yes" in options
    assert argv[-2:] == ["login1", "env SLURM_TIME_FORMAT=%s squeue --me"]


def test_ssh_remote_command_quoted_with_slurm_conf():
    transport = SshTransport("login1", slurm_conf="/etc/slurm/my cluster.conf")

    argv, _ = transport.wrap(["sbatch", "--comment=SkyShift Job default/a"], None)

    assert argv[-1] == "env 'SLURM_CONF=/etc/slurm/my cluster.conf' sbatch '--comment=SkyShift Job default/a'"


# ---- logs ---------------------------------------------------------------------------------


async def test_tail_reads_each_replica_in_order(tmp_path):
    (tmp_path / "replica-0.out").write_text("a\n\n  b\nlast without newline")
    (tmp_path / "replica-4.out").write_text("x\ny\nz\n")
    files = {0: str(tmp_path / "replica-0.out"), 4: str(tmp_path / "replica-4.out"), 9: str(tmp_path / "missing.out")}

    everything = await LocalTransport(None).run(tail_command(files, None, False), timeout=10)
    last_two = await LocalTransport(None).run(tail_command(files, 2, False), timeout=10)

    assert [parse_line(line) for line in everything.output.splitlines()] == [
        (0, "a"), (0, ""), (0, "  b"), (0, "last without newline"), (4, "x"), (4, "y"), (4, "z"),
    ]  # fmt: skip
    assert [parse_line(line) for line in last_two.output.splitlines()] == [
        (0, "  b"),
        (0, "last without newline"),
        (4, "y"),
        (4, "z"),
    ]


async def test_tail_follow_reads_late_files(tmp_path):
    transport = LocalTransport(None)
    files = {1: str(tmp_path / "replica-1.out"), 2: str(tmp_path / "replica-2.out")}
    (tmp_path / "replica-1.out").write_text("early\n")
    process = await transport.open_stream(tail_command(files, None, True))
    received = []

    async def read() -> None:
        assert process.stdout is not None
        while raw := await process.stdout.readline():
            received.append(parse_line(raw.decode().rstrip("\n")))

    reader = asyncio.ensure_future(read())
    await asyncio.to_thread((tmp_path / "replica-2.out").write_text, "appeared later\n")
    deadline = time.monotonic() + 20
    while len(received) < 2:
        assert time.monotonic() < deadline, f"followed lines did not arrive: {received}"
        await asyncio.sleep(0.1)
    await transport.close_stream(process)
    await asyncio.wait_for(reader, 10)

    assert sorted(received) == [(1, "early"), (2, "appeared later")]
    assert process.returncode is not None
    assert _tails_of(tmp_path) == []


def _tails_of(directory: Path) -> list[int]:
    """PIDs of processes whose command line names `directory`: tails that outlived the stream."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "status").read_text()
        except OSError:
            continue
        if str(directory) in command and "State:\tZ" not in state and int(entry.name) != os.getpid():
            pids.append(int(entry.name))
    return pids


def test_line_without_prefix_ignored():
    assert parse_line("3\tok") == (3, "ok")
    assert parse_line("3\ta\tb") == (3, "a\tb")
    assert parse_line("no prefix") is None
    assert parse_line("x\ty") is None


async def test_replica_files_listed(tmp_path):
    for name in ("replica-3.out", "replica-10.out", "slurm-12_0.out", "attempts-3"):
        (tmp_path / name).write_text("")

    listing = await LocalTransport(None).run(list_command(str(tmp_path)), timeout=10)
    missing = await LocalTransport(None).run(list_command(str(tmp_path / "missing")), timeout=10)

    assert replica_files(listing.output) == [3, 10]
    assert replica_files(missing.output) == []
