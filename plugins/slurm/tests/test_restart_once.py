"""A replica is restarted once per ended attempt, even when a queue read that began before the
restart reports the attempt as ended again (slow reads under load overlap the requeue)."""

from __future__ import annotations

import dataclasses

from skyshift_core.objects import RestartPolicy
from skyshift_slurm import manager as manager_module
from skyshift_slurm.manager import SlurmClusterManager, _Replica
from skyshift_slurm.naming import JobIdentity
from skyshift_slurm.records import JobRecord


class RecordingRequeues:
    """Stands in for the Slurm client's requeue, which the test must not send anywhere."""

    supports_requeue = True

    def __init__(self):
        self.requeued: list[str] = []

    async def requeue(self, task_id: str) -> None:
        self.requeued.append(task_id)


def failed_replica(restart_count: int = 0, ran: tuple[float, float] | None = None) -> _Replica:
    """Return replica 1 as FAILED. `ran` is the attempt's (StartTime, EndTime) when the record has them."""
    identity = JobIdentity("alpha", "work-1", RestartPolicy.ON_FAILURE, 0, (0, 1))
    start, end = ran if ran is not None else (None, None)
    record = JobRecord(
        job_id="101", array_job_id="100", array_task_id=1, name="skyshift.alpha.work-1.OnFailure.0.0-1",
        state="FAILED", exit_status=1, restart_count=restart_count, start_time=start, end_time=end,
    )  # fmt: skip
    return _Replica(identity, record)


def pending_replica(restart_count: int) -> _Replica:
    replica = failed_replica(restart_count)
    return _Replica(replica.identity, dataclasses.replace(replica.record, state="PENDING", exit_status=None))


def make_manager() -> tuple[SlurmClusterManager, RecordingRequeues]:
    manager = SlurmClusterManager("alpha", {"interface": "cli", "restart_backoff_seconds": 0})
    requeues = RecordingRequeues()
    manager.client = requeues  # type: ignore[assignment]
    return manager, requeues


async def test_stale_read_after_requeue_does_not_restart_again():
    manager, requeues = make_manager()

    first = await manager._task(failed_replica(), act=True)
    # A read that began before the requeue still shows the first attempt ended.
    stale = await manager._task(failed_replica(), act=True)

    assert requeues.requeued == ["100_1"]
    assert (first.state, first.reason, first.restarts) == ("Pending", "Restarting", 1)
    assert (stale.state, stale.reason, stale.restarts) == ("Pending", "Restarting", 1)


async def test_next_attempt_that_ends_is_restarted():
    manager, requeues = make_manager()
    await manager._task(failed_replica(restart_count=0), act=True)

    # Slurm shows the requeued task ended again, as its second attempt.
    await manager._task(failed_replica(restart_count=1), act=True)

    assert requeues.requeued == ["100_1", "100_1"]


async def test_restart_taken_as_lost_after_a_while(monkeypatch):
    manager, requeues = make_manager()
    await manager._task(failed_replica(), act=True)
    monkeypatch.setattr(manager_module, "STALE_RESTART_SECONDS", 0.0)

    await manager._task(failed_replica(), act=True)

    assert requeues.requeued == ["100_1", "100_1"]


async def test_raised_count_with_old_end_not_restarted():
    manager, requeues = make_manager()
    first_attempt = (1_700_000_000.0, 1_700_000_005.0)
    await manager._task(failed_replica(0, first_attempt), act=True)

    # Seen with Slurm 22.05.8 under load: right after `scontrol requeue`, squeue may list the task with
    # RestartCnt=1 but still FAILED with the first attempt's times.
    raised = await manager._task(failed_replica(1, first_attempt), act=True)

    assert requeues.requeued == ["100_1"]
    assert (raised.state, raised.reason, raised.restarts) == ("Pending", "Restarting", 1)


async def test_stale_read_after_pending_not_restarted():
    manager, requeues = make_manager()
    first_attempt = (1_700_000_000.0, 1_700_000_005.0)
    await manager._task(failed_replica(0, first_attempt), act=True)
    pending = await manager._task(pending_replica(1), act=True)

    await manager._task(failed_replica(0, first_attempt), act=True)

    assert pending.state == "Pending"
    assert requeues.requeued == ["100_1"]


async def test_second_attempt_restarted():
    manager, requeues = make_manager()
    await manager._task(failed_replica(0, (1_700_000_000.0, 1_700_000_005.0)), act=True)

    second = await manager._task(failed_replica(1, (1_700_000_007.0, 1_700_000_009.0)), act=True)

    assert requeues.requeued == ["100_1", "100_1"]
    assert (second.reason, second.restarts) == ("Restarting", 2)
