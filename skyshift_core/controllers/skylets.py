"""The skylet manager: starts a skylet when a Cluster appears and stops it when the Cluster goes.

The cluster manager named in `spec.manager` is loaded through the `skyshift.cluster_managers`
entry points. A missing plugin or an invalid config marks the Cluster ERROR with the reason; it
never stops the other skylets.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from skyshift_core.client import AsyncSkyShiftClient
from skyshift_core.cluster_manager import ClusterManager, ConfigError
from skyshift_core.controllers.events import record_event, single_line
from skyshift_core.controllers.skylet import DEFAULT_FAST_POLL_INTERVAL, DEFAULT_FAST_POLL_WINDOW, DEFAULT_POLL_INTERVAL, Skylet
from skyshift_core.errors import ConflictError, NotFoundError, PluginError, SkyShiftError
from skyshift_core.objects import Cluster, ClusterPhase, Condition, Job, Service, set_condition
from skyshift_core.plugins import describe_error, load_driver
from skyshift_core.runtime.informer import Informer

logger = logging.getLogger(__name__)

MANAGER_GROUP = "skyshift.cluster_managers"
# The finalizer that keeps a deleted Cluster until its skylet has stopped the work on it.
CLEANUP_FINALIZER = "skyshift.io/cluster-cleanup"
# Seconds between attempts to stop the work of a deleted Cluster whose backend fails.
CLEANUP_RETRY_MAX = 30.0
# Characters of a backend's error kept in the CleanupFailed condition; the log has all of it.
MAX_REASON_LENGTH = 200


class SkyletManager:
    def __init__(
        self,
        client: AsyncSkyShiftClient,
        clusters: Informer,
        jobs: Informer,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        fast_poll_interval: float = DEFAULT_FAST_POLL_INTERVAL,
        fast_poll_window: float = DEFAULT_FAST_POLL_WINDOW,
        load_manager: Callable[[str], type[ClusterManager]] | None = None,
    ):
        self.client = client
        self.clusters = clusters
        self.jobs = jobs
        self.poll_interval = poll_interval
        self.fast_poll_interval = fast_poll_interval
        self.fast_poll_window = fast_poll_window
        self.load_manager = load_manager or (lambda name: load_driver(MANAGER_GROUP, name))
        # Services are exposed by the skylets of clusters whose backends support them.
        self.services = Informer(client, Service)
        self.services.add_event_handler(
            on_add=lambda service: self._wake_all(),
            on_update=lambda old, new: self._wake_all(),
            on_delete=lambda service: self._wake_all(),
        )
        self.skylets: dict[str, Skylet] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        # (manager, config generation) each skylet was built from, to restart it when they change.
        self._built_from: dict[str, int] = {}
        # Deleted Clusters whose work `_clean_up` is stopping.
        self._cleaning: set[str] = set()
        self._stopped = asyncio.Event()

        clusters.add_event_handler(
            on_add=self._cluster_changed,
            on_update=lambda old, new: self._cluster_changed(new),
            on_delete=self._cluster_deleted,
        )
        jobs.add_event_handler(
            on_add=lambda job: self._job_changed(None, job),
            on_update=self._job_changed,
            on_delete=lambda job: self._job_changed(job, None),
        )

    def _wake_all(self) -> None:
        for skylet in self.skylets.values():
            skylet.wake()

    def _job_changed(self, old: Job | None, new: Job | None) -> None:
        """Wake the skylets of the clusters the Job is or was placed on, when the change concerns them."""
        clusters: set[str] = set()
        for job in (old, new):
            if job is not None:
                clusters |= set(job.status.placement) | set(job.status.clusters)
        for cluster in clusters:
            skylet = self.skylets.get(cluster)
            if skylet is not None and skylet.affected_by(old, new):
                skylet.wake()

    def _cluster_changed(self, cluster: Cluster) -> None:
        name = cluster.metadata.name
        if cluster.metadata.deletion_timestamp is not None:
            if name not in self._cleaning:
                self._stop_skylet(name)
                self._built_from.pop(name, None)
                self._cleaning.add(name)
                self._tasks[name] = asyncio.get_running_loop().create_task(self._clean_up(cluster), name=f"cleanup-{name}")
            return
        if self._built_from.get(name) == cluster.metadata.generation and name in self._tasks:
            return
        self._stop_skylet(name)
        self._built_from[name] = cluster.metadata.generation
        try:
            manager = self._build_manager(cluster)
        except (PluginError, ConfigError) as error:
            reason = "InvalidConfig" if isinstance(error, ConfigError) else "ManagerNotInstalled"
            logger.error("Cluster %s cannot be attached: %s", name, error)
            self._tasks[name] = asyncio.get_running_loop().create_task(self._mark_error(name, reason, str(error)))
            return
        except Exception as error:  # A bug in the plugin must not stop the other skylets.
            logger.exception("Cluster %s cannot be attached: plugin %r failed", name, cluster.spec.manager)
            message = f"the cluster manager plugin {cluster.spec.manager!r} failed: {type(error).__name__}: {error}"
            self._tasks[name] = asyncio.get_running_loop().create_task(self._mark_error(name, "PluginError", message))
            return
        skylet = Skylet(
            name, manager, self.client, self.jobs, services=self.services, poll_interval=self.poll_interval,
            fast_poll_interval=self.fast_poll_interval, fast_poll_window=self.fast_poll_window,
        )  # fmt: skip
        self.skylets[name] = skylet
        self._tasks[name] = asyncio.get_running_loop().create_task(self._run_skylet(cluster, skylet), name=f"skylet-{name}")
        logger.info("Started the skylet of cluster %s (manager %s)", name, cluster.spec.manager)

    def _build_manager(self, cluster: Cluster) -> ClusterManager:
        manager_class = self.load_manager(cluster.spec.manager)
        config = manager_class.validate_config(cluster.spec.config)
        return manager_class(cluster.metadata.name, config)

    async def _run_skylet(self, cluster: Cluster, skylet: Skylet) -> None:
        """Add the cleanup finalizer to the Cluster, then run its skylet.

        The finalizer goes on before the skylet submits anything, so that deleting the Cluster
        waits until `_clean_up` has stopped its work.
        """
        if CLEANUP_FINALIZER not in cluster.metadata.finalizers:
            try:
                await self._set_finalizer(cluster.metadata.name, present=True)
            except SkyShiftError as error:
                logger.warning(
                    "Cluster %s: could not add finalizer %s, so deleting the Cluster will not stop its work: %s",
                    cluster.metadata.name, CLEANUP_FINALIZER, error,
                )  # fmt: skip
        await skylet.run()

    async def _set_finalizer(self, name: str, *, present: bool) -> None:
        """Add or remove CLEANUP_FINALIZER on Cluster `name`, keeping any other finalizer."""
        while True:
            try:
                cluster = Cluster.model_validate(await self.client.get(Cluster, name))
            except NotFoundError:
                return
            finalizers = [finalizer for finalizer in cluster.metadata.finalizers if finalizer != CLEANUP_FINALIZER]
            if present:
                if cluster.metadata.deletion_timestamp is not None:
                    return  # Finalizers cannot be added to an object being deleted.
                finalizers.append(CLEANUP_FINALIZER)
            if finalizers == cluster.metadata.finalizers:
                return
            patch = {"metadata": {"finalizers": finalizers, "resource_version": cluster.metadata.resource_version}}
            try:
                await self.client.patch(Cluster, name, patch)
                return
            except ConflictError:
                continue  # The Cluster changed since it was read: read it again.
            except NotFoundError:
                return

    async def _clean_up(self, cluster: Cluster) -> None:
        """Stop every piece of work on a deleted Cluster, then remove its finalizer so that it goes.

        A backend that fails is retried with backoff, and the Cluster's Ready condition gives the
        reason it stays. When the plugin cannot be loaded or the config is invalid, nothing can reach the
        backend, so the finalizer is removed with a warning instead. A Cluster whose backend never
        answered (it never reported capacity) and that holds no replicas never got any work, so
        its finalizer goes at once, without waiting for a backend that may never respond.
        """
        name = cluster.metadata.name
        try:
            if CLEANUP_FINALIZER not in cluster.metadata.finalizers:
                return
            if cluster.status.observed_time is None and not self._holds_replicas(name):
                await self._set_finalizer(name, present=False)
                logger.info(
                    "Deleted cluster %s: it never reported capacity and has no work placed; finalizer removed", name
                )
                return
            try:
                manager = self._build_manager(cluster)
            except Exception as error:  # Also a bug in the plugin: nothing else can stop the work.
                logger.warning(
                    "Deleted cluster %s: cannot load its cluster manager to stop its work, which may still run: %s",
                    name, error,
                )  # fmt: skip
            else:
                await self._stop_all_work(cluster, manager)
            await self._set_finalizer(name, present=False)
            logger.info("Deleted cluster %s: its work is stopped and the finalizer removed", name)
        finally:
            self._cleaning.discard(name)
            if self._tasks.get(name) is asyncio.current_task():
                del self._tasks[name]

    def _holds_replicas(self, cluster: str) -> bool:
        """Tell whether any Job has a share on `cluster`, placed or submitted."""
        return any(cluster in job.status.clusters for job in self.jobs.list())

    async def _stop_all_work(self, cluster: Cluster, manager: ClusterManager) -> None:
        name = cluster.metadata.name
        delay = self.poll_interval
        started = False
        try:
            while True:
                try:
                    if not started:
                        await manager.start()
                        started = True
                    keys = sorted(await manager.statuses())
                    for key in keys:
                        await manager.delete(key)
                    if keys:
                        logger.info("Deleted cluster %s: stopped work %s", name, ", ".join(keys))
                        await self._record_stopped(name, keys)
                    return
                except Exception as error:  # The backend may be unreachable for a while.
                    described = describe_error(error)
                    logger.warning(
                        "Deleted cluster %s: stopping its work failed, retrying in %.1f s: %s", name, delay, described
                    )
                    # A backend's error may quote a whole command line, which would make the
                    # Conditions table of `skyshift describe` hundreds of columns wide.
                    reason = single_line(described)
                    if len(reason) > MAX_REASON_LENGTH:
                        reason = reason[: MAX_REASON_LENGTH - 3] + "..."
                    await self._mark_error(
                        name,
                        "CleanupFailed",
                        f"the Cluster is being deleted, but stopping its work failed: {reason}. SkyShift keeps "
                        f"trying; to remove the Cluster without stopping its work, remove the finalizer: "
                        f"skyshift patch cluster {name} -p '{{\"metadata\": {{\"finalizers\": null}}}}'",
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, CLEANUP_RETRY_MAX)
        finally:
            if started:
                try:
                    await manager.stop()
                except Exception as error:
                    logger.warning("Deleted cluster %s: stopping the cluster manager failed: %s", name, error)

    async def _record_stopped(self, cluster: str, keys: list[str]) -> None:
        """Record on each Job whose work was stopped on a deleted Cluster which replicas stopped."""
        jobs = {job.metadata.uid: job for job in self.jobs.list()}
        for key in keys:
            uid, _, generation = key.rpartition("-")
            job = jobs.get(uid)
            if job is None:
                continue  # The Job itself was deleted: its work went with the Cluster.
            share = job.status.clusters.get(cluster)
            units = share.work_units() if share is not None else []
            indices = next((unit.replica_indices for unit in units if str(unit.generation) == generation), None)
            stopped = f"replicas {indices}" if indices else f"work {key}"
            message = f"stopped {stopped} on cluster {cluster}, which is being deleted"
            await record_event(self.client, job, "Normal", "ReplicasStopped", message, f"skylet/{cluster}")

    def _cluster_deleted(self, cluster: Cluster) -> None:
        name = cluster.metadata.name
        # A cleanup still running stops too: someone removed the finalizer by hand.
        self._cleaning.discard(name)
        self._stop_skylet(name)
        self._built_from.pop(name, None)
        logger.info("Stopped the skylet of deleted cluster %s", name)

    def _stop_skylet(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        self.skylets.pop(name, None)
        if task is not None:
            task.cancel()

    async def _mark_error(self, name: str, reason: str, message: str) -> None:
        try:
            cluster = Cluster.model_validate(await self.client.get(Cluster, name))
            cluster.status.phase = ClusterPhase.ERROR
            cluster.status.conditions = set_condition(
                cluster.status.conditions, Condition(type="Ready", status="False", reason=reason, message=message)
            )
            cluster.metadata.resource_version = None
            await self.client.update_status(cluster)
        except SkyShiftError as error:
            logger.warning("Could not record the error of cluster %s: %s", name, error)

    async def run(self) -> None:
        """Watch Services and wait until cancelled, then stop every skylet."""
        self.services.start()
        try:
            await self._stopped.wait()
        finally:
            await self.services.stop()
            tasks = list(self._tasks.values())
            for name in list(self._tasks):
                self._stop_skylet(name)
            await asyncio.gather(*tasks, return_exceptions=True)
