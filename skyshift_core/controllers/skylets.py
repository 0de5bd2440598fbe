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
from skyshift_core.controllers.skylet import DEFAULT_FAST_POLL_INTERVAL, DEFAULT_FAST_POLL_WINDOW, DEFAULT_POLL_INTERVAL, Skylet
from skyshift_core.errors import PluginError, SkyShiftError
from skyshift_core.objects import Cluster, ClusterPhase, Condition, Job, Service, set_condition
from skyshift_core.plugins import load_driver
from skyshift_core.runtime.informer import Informer

logger = logging.getLogger(__name__)

MANAGER_GROUP = "skyshift.cluster_managers"


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
        if self._built_from.get(name) == cluster.metadata.generation and name in self._tasks:
            return
        self._stop_skylet(name)
        self._built_from[name] = cluster.metadata.generation
        try:
            manager_class = self.load_manager(cluster.spec.manager)
            config = manager_class.validate_config(cluster.spec.config)
            manager = manager_class(name, config)
        except (PluginError, ConfigError) as error:
            reason = "InvalidConfig" if isinstance(error, ConfigError) else "ManagerNotInstalled"
            logger.error("Cluster %s cannot be attached: %s", name, error)
            self._tasks[name] = asyncio.get_running_loop().create_task(self._mark_error(name, reason, str(error)))
            return
        skylet = Skylet(
            name, manager, self.client, self.jobs, services=self.services, poll_interval=self.poll_interval,
            fast_poll_interval=self.fast_poll_interval, fast_poll_window=self.fast_poll_window,
        )  # fmt: skip
        self.skylets[name] = skylet
        self._tasks[name] = asyncio.get_running_loop().create_task(skylet.run(), name=f"skylet-{name}")
        logger.info("Started the skylet of cluster %s (manager %s)", name, cluster.spec.manager)

    def _cluster_deleted(self, cluster: Cluster) -> None:
        name = cluster.metadata.name
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
