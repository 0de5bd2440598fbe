"""Controller against a real API server and etcd: sync before work, outcomes, conditions, mapped informers, logs."""

from __future__ import annotations

import asyncio
import logging

import pytest

from skyshift_core.client import AsyncSkyShiftClient
from skyshift_core.errors import ConflictError
from skyshift_core.runtime import (
    RECONCILE_ERROR_CONDITION,
    Controller,
    ExponentialBackoff,
    Informer,
    MappedInformer,
    Request,
    Result,
    TerminalError,
    current_reconcile_id,
)
from skyshift_core.runtime.controller import ROUTINE_CONFLICTS


class RecordingBackoff(ExponentialBackoff):
    """ExponentialBackoff that keeps every delay it hands out."""

    def __init__(self, base: float, max_delay: float):
        super().__init__(base, max_delay)
        self.delays: list[float] = []

    def when(self, key) -> float:
        delay = super().when(key)
        self.delays.append(delay)
        return delay


async def run_in_background(controller: Controller) -> asyncio.Task:
    return asyncio.ensure_future(controller.run())


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_workers_wait_for_all_informers(client, unstarted_api, admin_token, job, wait_until):
    await client.create(job("j1"))
    jobs = Informer(client, "jobs", resync_period=None)
    async with AsyncSkyShiftClient(unstarted_api.url, timeout=5, token=admin_token) as late_client:
        # This informer's API server is not running yet, so it cannot sync.
        clusters = Informer(late_client, "clusters", resync_period=None)
        calls: list[tuple[Request, bool]] = []

        async def reconcile(request: Request) -> None:
            calls.append((request, jobs.has_synced and clusters.has_synced))

        controller = Controller("sync-test", reconcile, [jobs, clusters])
        task = await run_in_background(controller)
        try:
            await wait_until(lambda: jobs.has_synced and len(controller.queue) == 1, message="jobs synced, j1 queued")
            await asyncio.sleep(0.5)
            assert calls == []

            await asyncio.to_thread(unstarted_api.start)
            await wait_until(lambda: calls, message="a reconcile after both informers synced")
            assert calls == [(Request("Job", "default", "j1"), True)]
        finally:
            await stop(task)
    assert not jobs.running
    assert not clusters.running


async def test_terminal_error_recorded_not_retried(client, job, wait_until):
    await client.create(job("bad"))
    jobs = Informer(client, "jobs", resync_period=None)
    seen_versions: list[str] = []

    async def reconcile(request: Request) -> None:
        seen_versions.append(jobs.get(request.name, request.namespace).metadata.resource_version)
        raise TerminalError("InvalidPlacement", "no cluster matches filter 'gpu'; change spec.placement")

    backoff = RecordingBackoff(base=0.01, max_delay=0.05)
    controller = Controller("terminal-test", reconcile, [jobs], rate_limiter=backoff)
    task = await run_in_background(controller)
    try:

        async def condition_recorded() -> bool:
            status = (await client.get("jobs", "bad"))["status"]
            return any(c["type"] == RECONCILE_ERROR_CONDITION for c in status["conditions"])

        await wait_until(condition_recorded, message="the ReconcileError condition")
        # A retry would come within 0.05 s; after a second, none may have happened.
        await asyncio.sleep(1.0)

        conditions = (await client.get("jobs", "bad"))["status"]["conditions"]
        (condition,) = [c for c in conditions if c["type"] == RECONCILE_ERROR_CONDITION]
        assert condition["status"] == "True"
        assert condition["reason"] == "InvalidPlacement"
        assert condition["message"] == "no cluster matches filter 'gpu'; change spec.placement"
        assert condition["observed_generation"] == 1
        # Only the condition write itself may trigger one more reconcile, of the new version.
        assert len(seen_versions) == len(set(seen_versions))
        assert len(seen_versions) <= 2
        assert backoff.delays == []
    finally:
        await stop(task)


async def test_success_clears_reconcile_error(client, job, wait_until):
    await client.create(job("fixable", run="exit 1"))
    jobs = Informer(client, "jobs", resync_period=None)

    async def reconcile(request: Request) -> None:
        if jobs.get(request.name, request.namespace).spec.run == "exit 1":
            raise TerminalError("BadCommand", "the command always fails; change spec.run")

    controller = Controller("clear-test", reconcile, [jobs])
    task = await run_in_background(controller)

    async def condition_status() -> str | None:
        conditions = (await client.get("jobs", "fixable"))["status"]["conditions"]
        return next((c["status"] for c in conditions if c["type"] == RECONCILE_ERROR_CONDITION), None)

    try:
        await wait_until(lambda: _equals(condition_status(), "True"), message="condition True")
        await client.patch("jobs", "fixable", {"spec": {"run": "true"}})
        await wait_until(lambda: _equals(condition_status(), "False"), message="condition False after the fix")

        conditions = (await client.get("jobs", "fixable"))["status"]["conditions"]
        (condition,) = [c for c in conditions if c["type"] == RECONCILE_ERROR_CONDITION]
        assert condition["reason"] == "Reconciled"
        assert condition["observed_generation"] == 2
    finally:
        await stop(task)


async def _equals(value, expected) -> bool:
    return await value == expected


async def test_retryable_error_backs_off_then_forgets(client, job, wait_until, caplog):
    await client.create(job("flaky"))
    jobs = Informer(client, "jobs", resync_period=None)
    attempts: list[str | None] = []

    async def reconcile(request: Request) -> None:
        attempts.append(current_reconcile_id())
        if len(attempts) <= 3:
            raise RuntimeError(f"cluster unreachable, attempt {len(attempts)}")

    backoff = RecordingBackoff(base=0.01, max_delay=1.0)
    controller = Controller("retry-test", reconcile, [jobs], rate_limiter=backoff)
    caplog.set_level(logging.WARNING, logger="skyshift_core.runtime.controller")
    task = await run_in_background(controller)
    try:
        await wait_until(lambda: len(attempts) == 4, message=f"4 attempts, got {len(attempts)}")

        assert backoff.delays == [0.01, 0.02, 0.04]
        request = Request("Job", "default", "flaky")
        await wait_until(lambda: controller.queue.num_requeues(request) == 0, message="backoff forgotten")
        assert len(set(attempts)) == 4  # Each attempt has its own reconcile id.
        warnings = [record for record in caplog.records if "failed (attempt" in record.getMessage()]
        assert len(warnings) == 3
        first = warnings[0]
        assert first.controller == "retry-test"
        assert first.reconcile_id == attempts[0]
        assert "retry-test" in first.getMessage()
        assert "Job 'default/flaky'" in first.getMessage()
        assert attempts[0] in first.getMessage()
        assert "retrying in 0.01 s" in first.getMessage()
        conditions = (await client.get("jobs", "flaky"))["status"]["conditions"]
        assert conditions == []  # Retryable errors are not recorded as conditions.
    finally:
        await stop(task)


async def test_repeated_conflicts_log_warning(client, job, wait_until, caplog):
    await client.create(job("contested"))
    jobs = Informer(client, "jobs", resync_period=None)
    attempts: list[int] = []

    async def reconcile(request: Request) -> None:
        attempts.append(len(attempts) + 1)
        if len(attempts) <= ROUTINE_CONFLICTS + 1:
            raise ConflictError(f"Job 'default/contested' was modified (attempt {len(attempts)})")

    controller = Controller("conflict-test", reconcile, [jobs], rate_limiter=RecordingBackoff(base=0.01, max_delay=0.1))
    caplog.set_level(logging.INFO, logger="skyshift_core.runtime.controller")
    task = await run_in_background(controller)
    try:
        await wait_until(lambda: len(attempts) == ROUTINE_CONFLICTS + 2, message=f"attempts, got {len(attempts)}")

        failures = [record for record in caplog.records if "failed (attempt" in record.getMessage()]
        levels = [record.levelno for record in failures]
        assert levels == [logging.INFO] * ROUTINE_CONFLICTS + [logging.WARNING]
    finally:
        await stop(task)


async def test_requeue_after_reconciles_again(client, job, wait_until):
    await client.create(job("polled"))
    jobs = Informer(client, "jobs", resync_period=None)
    calls: list[Request] = []

    async def reconcile(request: Request) -> Result:
        calls.append(request)
        return Result(requeue_after=0.05)

    controller = Controller("requeue-test", reconcile, [jobs])
    task = await run_in_background(controller)
    try:
        await wait_until(lambda: len(calls) >= 3, message="three reconciles of one unchanged object")
        assert set(calls) == {Request("Job", "default", "polled")}
    finally:
        await stop(task)


async def test_mapped_informer_enqueues_related(client, job, wait_until):
    await client.create(job("on-c1"))
    await client.create({"kind": "Cluster", "metadata": {"name": "c1"}, "spec": {"manager": "slurm"}})
    jobs = Informer(client, "jobs", resync_period=None)
    clusters = Informer(client, "clusters", resync_period=None)
    calls: list[Request] = []

    class JobReconciler:
        async def reconcile(self, request: Request) -> None:
            calls.append(request)

    def jobs_on_cluster(cluster) -> list[Request]:
        return [Request("Job", "default", f"on-{cluster.metadata.name}")]

    controller = Controller("mapped-test", JobReconciler(), [jobs, MappedInformer(clusters, jobs_on_cluster)], workers=2)
    task = await run_in_background(controller)
    try:
        await wait_until(lambda: len(calls) >= 1, message="the initial reconcile")
        count = len(calls)
        await client.patch("clusters", "c1", {"spec": {"cordoned": True}})
        await wait_until(lambda: len(calls) > count, message="a reconcile caused by the cluster change")

        assert set(calls) == {Request("Job", "default", "on-c1")}
    finally:
        await stop(task)
