"""`skyshift delete` of objects with finalizers: it waits until they are gone, as kubectl does."""

from __future__ import annotations

import threading
import time

from cli_helpers import cli, client, runner  # noqa: F401

from skyshift_core.client import SkyShiftClient
from skyshift_core.errors import NotFoundError

HOLD = "example.com/hold"


def held_cluster(client: SkyShiftClient, name: str) -> None:
    client.create({"kind": "Cluster", "metadata": {"name": name, "finalizers": [HOLD]}, "spec": {"manager": "slurm"}})


def exists(client: SkyShiftClient, name: str) -> bool:
    try:
        client.get("Cluster", name)
    except NotFoundError:
        return False
    return True


def test_no_wait_leaves_cluster_terminating(cli, client: SkyShiftClient):
    held_cluster(client, "held")

    result = cli("delete", "cluster", "held", "--no-wait")
    listed = cli("get", "clusters")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ['cluster.skyshift "held" deleted']
    assert exists(client, "held")
    row = next(line.split() for line in listed.stdout.splitlines() if line.startswith("held"))
    assert row[2] == "Terminating"


def test_wait_returns_once_finalizer_removed(cli, client: SkyShiftClient):
    held_cluster(client, "released")

    def release() -> None:
        time.sleep(1.0)
        client.patch("Cluster", "released", {"metadata": {"finalizers": None}})

    releaser = threading.Thread(target=release)
    releaser.start()
    result = cli("delete", "cluster", "released")
    releaser.join()

    assert result.exit_code == 0, result.output
    assert f"finalizers {HOLD} are pending" in result.stderr
    assert not exists(client, "released")


def test_wait_times_out(cli, client: SkyShiftClient):
    held_cluster(client, "stuck")

    result = cli("delete", "cluster", "stuck", "--timeout", "1")

    assert result.exit_code == 1
    assert "timed out after 1 s waiting for cluster.skyshift/stuck to be removed" in result.stderr
    assert exists(client, "stuck")


def test_wait_shows_why_removal_is_stuck(cli, client: SkyShiftClient):
    # As the skylets controller reports a Cluster whose work could not be stopped.
    held_cluster(client, "failing")
    condition = {"type": "Ready", "status": "False", "reason": "CleanupFailed", "message": "stopping its work failed"}
    client.patch("Cluster", "failing", {"status": {"phase": "ERROR", "conditions": [condition]}}, subresource="status")

    result = cli("delete", "cluster", "failing", "--timeout", "1")

    assert result.exit_code == 1
    assert result.stderr.count("  Ready=False CleanupFailed: stopping its work failed\n") == 1
