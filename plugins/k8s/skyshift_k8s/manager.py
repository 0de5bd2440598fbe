"""KubernetesClusterManager, the `kubernetes` (alias `k8s`) entry point of `skyshift.cluster_managers`.

The skylet of each attached Kubernetes cluster calls it every poll interval. Statuses and capacity
come from informers (list and watch in background threads) that start on first use, so a manager
built only to read logs or run a command, as the API server and `skyshift exec` do, opens no watch.
When an informer is not synced, for example while the API server is away, those methods fall back
to one list per kind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

from skyshift_core.cluster_manager import ClusterHealth, ClusterManager, ClusterManagerError, WorkStatus, WorkUnit
from skyshift_core.objects import NodeResources, Service, TaskStatus

from skyshift_k8s import capacity, logs, services
from skyshift_k8s.api import KubernetesApi, KubernetesApiError, load_configuration
from skyshift_k8s.config import MANAGER_NAME, KubernetesConfig, parse_config
from skyshift_k8s.exec import ExecResult, run_command, run_interactive
from skyshift_k8s.informer import Informer
from skyshift_k8s.objects import (
    CANCELLED_ANNOTATION,
    cluster_selector,
    kubernetes_namespace,
    namespace_manifest,
    replica_indices,
    service_manifest,
    share_complete,
    work_key,
    work_selector,
    workload_manifests,
)
from skyshift_k8s.states import is_active, job_finished, share_pods_by_replica, share_tasks

logger = logging.getLogger(__name__)

__all__ = ["MANAGER_NAME", "KubernetesClusterManager"]

# Only pods that hold resources count against a node's capacity.
UNFINISHED_PODS = "status.phase!=Succeeded,status.phase!=Failed"
WORK_INFORMERS = ("jobs", "deployments", "pods")
# HTTP statuses with which the API server rejects a manifest as malformed (400) or invalid (422).
# The same share always builds the same manifest, so submitting it again cannot succeed.
INVALID_MANIFEST_STATUSES = frozenset({400, 422})
CAPACITY_INFORMERS = ("nodes", "unfinished-pods")


class KubernetesClusterManager(ClusterManager):
    """A Kubernetes cluster reached with a kubeconfig context or in-cluster credentials.

    A share runs as a batch/v1 Job in Indexed completion mode (restart policy Never or OnFailure)
    or as one apps/v1 Deployment of one pod per replica (Always), in the namespace
    `<namespace_prefix><SkyShift namespace>`.
    """

    provides: ClassVar[str] = "Kubernetes clusters: Indexed Jobs, Deployments and Services through the API server"
    supports_logs: ClassVar[bool] = True
    supports_exec: ClassVar[bool] = True
    supports_services: ClassVar[bool] = True
    supports_watch: ClassVar[bool] = True
    # Creates for different shares may run side by side.
    max_parallel_submits: ClassVar[int] = 8
    # Seconds between looks for pods that have not started while following logs.
    follow_poll_seconds: float = 0.5
    # Seconds a workload that submit created counts as existing without the informers listing it.
    # In the tests, informers list a new object within milliseconds. If one is slower, the skylet
    # submits the share again, which finds what exists (409 AlreadyExists) and creates nothing twice.
    submitted_ttl_seconds: float = 5.0

    def __init__(self, name: str, config: Mapping[str, Any]):
        settings = parse_config(config)
        super().__init__(name, settings.to_dict())
        self.settings: KubernetesConfig = settings
        self._api: KubernetesApi | None = None
        self._informers: dict[str, Informer] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: set[asyncio.Event] = set()
        # Workloads created or found by submit, per key and name, each with the monotonic time of the
        # submit. Each is kept until the informers list it, or for at most `submitted_ttl_seconds`
        # (deleted before the informer saw it), like the expectations of Kubernetes' controllers.
        self._submitted: dict[str, dict[str, tuple[float, dict[str, Any]]]] = {}
        self._namespaces: set[str] = set()
        self._server_version = ""
        # The last task states reported per key, to keep exit codes and restart counts once the
        # Job controller has deleted the pods of a failed Job.
        self._last_tasks: dict[str, dict[str, TaskStatus]] = {}

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check a Kubernetes cluster's spec.config and return it normalized (defaults filled in)."""
        return parse_config(config).to_dict()

    # ---- connection ----------------------------------------------------------------------

    async def _connection(self) -> KubernetesApi:
        """Return the API clients, loading the kubeconfig on first use; raise ClusterManagerError."""
        if self._api is None:
            configuration = await asyncio.get_running_loop().run_in_executor(None, load_configuration, self.settings)
            self._api = KubernetesApi(self.name, configuration)
            self._loop = asyncio.get_running_loop()
            logger.info("Cluster %s: using the Kubernetes API server at %s", self.name, self._api.host)
        return self._api

    async def start(self) -> None:
        await self._connection()

    async def stop(self) -> None:
        informers = list(self._informers.values())
        self._informers.clear()
        if informers:
            await asyncio.get_running_loop().run_in_executor(None, lambda: [informer.stop() for informer in informers])
        if self._api is not None:
            self._api.close()
            self._api = None
        logger.debug("Cluster %s: stopped the Kubernetes cluster manager", self.name)

    async def health(self) -> ClusterHealth:
        try:
            api = await self._connection()
        except ClusterManagerError as error:
            return ClusterHealth(ready=False, reason="InvalidKubeconfig", message=str(error))
        try:
            # GET /api needs valid credentials, unlike /version, so it checks both reachability and login.
            await api.call(api.core_api.get_api_versions, action="reading the API versions")
            if not self._server_version:
                version = await api.call(api.version.get_code, action="reading the server version")
                self._server_version = (version or {}).get("gitVersion", "")
        except KubernetesApiError as error:
            reasons = {None: "Unreachable", 401: "Unauthorized", 403: "Forbidden"}
            return ClusterHealth(ready=False, reason=reasons.get(error.status, "ApiError"), message=str(error))
        version = f"Kubernetes {self._server_version}" if self._server_version else "Kubernetes"
        return ClusterHealth(ready=True, reason="Ready", message=f"{version} at {api.host}")

    # ---- informers -----------------------------------------------------------------------

    def _notify(self) -> None:
        """Wake every `watch_statuses` consumer; called from informer threads."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._wake_listeners)
        except RuntimeError:
            pass  # The loop closed between the check and the call.

    def _wake_listeners(self) -> None:
        for event in self._listeners:
            event.set()

    def _start_informers(self, api: KubernetesApi, names: tuple[str, ...]) -> list[Informer]:
        selector = cluster_selector(self.name)
        sources = {
            "jobs": (api.batch.list_job_for_all_namespaces, selector, None),
            "deployments": (api.apps.list_deployment_for_all_namespaces, selector, None),
            "pods": (api.core.list_pod_for_all_namespaces, selector, None),
            "nodes": (api.core.list_node, None, None),
            "unfinished-pods": (api.core.list_pod_for_all_namespaces, None, UNFINISHED_PODS),
        }
        informers = []
        for name in names:
            informer = self._informers.get(name)
            if informer is None:
                function, label_selector, field_selector = sources[name]
                informer = Informer(
                    api, name, function, label_selector=label_selector, field_selector=field_selector,
                    on_change=self._notify,
                )  # fmt: skip
                self._informers[name] = informer
                informer.start()
            informers.append(informer)
        return informers

    # ---- work ----------------------------------------------------------------------------

    async def _ensure_namespace(self, api: KubernetesApi, namespace: str, skyshift_namespace: str) -> None:
        if namespace in self._namespaces:
            return
        try:
            await api.call(
                api.core.create_namespace, namespace_manifest(namespace, skyshift_namespace),
                action=f"creating namespace {namespace}",
            )  # fmt: skip
            logger.info("Cluster %s: created namespace %s", self.name, namespace)
        except KubernetesApiError as error:
            if error.status != 409:
                raise
        self._namespaces.add(namespace)

    async def submit(self, unit: WorkUnit) -> WorkStatus:
        """Create the share's Job or Deployments, or find those that exist (AlreadyExists counts as found).

        A share that Kubernetes cannot express, or whose Job or Deployment the API server rejects
        with HTTP 400 or 422, gets a `WorkStatus.rejected` status with the error text. Deployments
        of that share created before the rejected one are deleted again."""
        api = await self._connection()
        try:
            manifests = workload_manifests(unit, self.settings, self.name)
        except ClusterManagerError as error:
            if error.retryable:
                raise
            return self._reject(unit, str(error))
        await self._ensure_namespace(api, manifests[0]["metadata"]["namespace"], unit.job.metadata.namespace or "default")
        workloads = []
        for manifest in manifests:
            try:
                workloads.append(await self._create_or_find(api, unit, manifest))
            except KubernetesApiError as error:
                if error.status not in INVALID_MANIFEST_STATUSES:
                    raise
                if workloads:
                    await self.delete(unit.key)
                return self._reject(unit, str(error))
        now = time.monotonic()
        self._submitted[unit.key] = {workload["metadata"]["name"]: (now, workload) for workload in workloads}
        pods = []
        pod_informer = self._informers.get("pods")
        if pod_informer is not None and pod_informer.has_synced:
            pods = [pod for pod in pod_informer.items() if work_key(pod) == unit.key]
        return self._work_status(workloads, pods)

    async def _create_or_find(self, api: KubernetesApi, unit: WorkUnit, manifest: dict[str, Any]) -> dict[str, Any]:
        kind, metadata = manifest["kind"], manifest["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        if kind == "Job":
            create, read = api.batch.create_namespaced_job, api.batch.read_namespaced_job
        else:
            create, read = api.apps.create_namespaced_deployment, api.apps.read_namespaced_deployment
        where = f"{kind} {namespace}/{name}"
        try:
            workload = await api.call(create, namespace, manifest, action=f"creating {where}")
            logger.info(
                "Cluster %s: created %s for Job %s/%s, replicas %s", self.name, where,
                unit.job.metadata.namespace, unit.job.metadata.name, replica_indices(manifest),
            )  # fmt: skip
            return {**workload, "kind": kind}
        except KubernetesApiError as error:
            if error.status == 404:
                self._namespaces.discard(namespace)  # Deleted behind our back; created again next time.
            if error.status != 409:
                raise
            workload = await api.call(read, name, namespace, action=f"reading {where}")
            if work_key(workload) != unit.key:
                raise ClusterManagerError(
                    f"{where} already exists on Kubernetes cluster {self.name!r} but belongs to "
                    f"{work_key(workload) or 'no SkyShift work'}, not to work {unit.key}; delete or rename it",
                    retryable=False,
                ) from error
            logger.debug("Cluster %s: found the existing %s for work %s", self.name, where, unit.key)
            return {**workload, "kind": kind}

    def _reject(self, unit: WorkUnit, message: str) -> WorkStatus:
        job = f"{unit.job.metadata.namespace or 'default'}/{unit.job.metadata.name}"
        logger.info("Kubernetes cluster %s rejected work %s of Job %s: %s", self.name, unit.key, job, message)
        return WorkStatus.rejected(unit, message)

    @staticmethod
    def _work_status(workloads: list[dict[str, Any]], pods: list[dict[str, Any]]) -> WorkStatus:
        workloads = sorted(workloads, key=lambda workload: replica_indices(workload)[:1])
        return WorkStatus(
            key=work_key(workloads[0]) or "",
            tasks=share_tasks(workloads, pods),
            manager_job_ids=[
                f"{workload['kind'].lower()}/{workload['metadata']['namespace']}/{workload['metadata']['name']}"
                for workload in workloads
            ],
            partial=not share_complete(workloads),
        )

    async def _list_work(self, api: KubernetesApi, label_selector: str) -> tuple[list[dict], list[dict]]:
        """List the workloads and pods that match `label_selector`, one request per kind."""
        action = f"listing SkyShift's objects ({label_selector})"
        jobs, deployments, pods = await asyncio.gather(
            api.list_all(api.batch.list_job_for_all_namespaces, action=action, label_selector=label_selector),
            api.list_all(api.apps.list_deployment_for_all_namespaces, action=action, label_selector=label_selector),
            api.list_all(api.core.list_pod_for_all_namespaces, action=action, label_selector=label_selector),
        )
        return _with_kind(jobs, deployments), pods

    async def statuses(self) -> dict[str, WorkStatus]:
        """Status of every share on this cluster, from the informers' caches (one list per kind while
        they are not synced)."""
        api = await self._connection()
        informers = self._start_informers(api, WORK_INFORMERS)
        if all(informer.has_synced for informer in informers):
            jobs, deployments, pods = (informer.items() for informer in informers)
            workloads = _with_kind(jobs, deployments)
        else:
            workloads, pods = await self._list_work(api, cluster_selector(self.name))

        pods_by_key: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:
            pods_by_key.setdefault(work_key(pod) or "", []).append(pod)
        workloads_by_key: dict[str, list[dict[str, Any]]] = {}
        for workload in workloads:
            key = work_key(workload)
            if key:
                workloads_by_key.setdefault(key, []).append(workload)
        expired = time.monotonic() - self.submitted_ttl_seconds
        for key, submitted in list(self._submitted.items()):
            for workload in workloads_by_key.get(key, []):
                submitted.pop(workload["metadata"]["name"], None)
            for name, (when, workload) in list(submitted.items()):
                if when < expired:
                    del submitted[name]
                else:
                    workloads_by_key.setdefault(key, []).append(workload)
            if not submitted:
                del self._submitted[key]
        result = {
            key: self._work_status(share, pods_by_key.get(key, [])) for key, share in workloads_by_key.items()
        }
        self._carry_over(result)
        return result

    def _carry_over(self, result: dict[str, WorkStatus]) -> None:
        """Keep the exit code and restart count of replicas whose pods are gone, and remember this report."""
        for key, status in result.items():
            last = self._last_tasks.get(key, {})
            for index, task in status.tasks.items():
                previous = last.get(index)
                if previous is None:
                    continue
                if task.exit_code is None and task.state == "Failed":
                    task.exit_code = previous.exit_code
                task.restarts = max(task.restarts, previous.restarts)
        self._last_tasks = {key: dict(status.tasks) for key, status in result.items()}

    async def watch_statuses(self) -> AsyncIterator[dict[str, WorkStatus]]:
        """Yield the full status map at once, and again whenever an informer's cache changes."""
        event = asyncio.Event()
        self._listeners.add(event)
        try:
            last = None
            while True:
                event.clear()
                current = await self.statuses()
                if current != last:
                    yield current
                    last = current
                # Waking up now and then also picks up changes while the informers are down.
                # asyncio.timeout, not wait_for: on Python 3.11, wait_for drops a cancellation that
                # arrives with the event, and the caller's loop would then go on.
                try:
                    async with asyncio.timeout(5.0):
                        await event.wait()
                except TimeoutError:
                    pass
        finally:
            self._listeners.discard(event)

    async def delete(self, key: str) -> None:
        """Delete the share's Job or Deployments with propagation Background, which removes their pods too."""
        api = await self._connection()
        self._submitted.pop(key, None)
        jobs, deployments = await self._workloads_of(api, key)
        targets = [("Job", api.batch.delete_namespaced_job, job) for job in jobs] + [
            ("Deployment", api.apps.delete_namespaced_deployment, deployment) for deployment in deployments
        ]
        for kind, delete, obj in targets:
            if work_key(obj) != key:
                continue
            namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
            try:
                await api.call(
                    delete, name, namespace, propagation_policy="Background",
                    action=f"deleting {kind} {namespace}/{name}",
                )  # fmt: skip
                logger.info("Cluster %s: deleted %s %s/%s of work %s", self.name, kind, namespace, name, key)
            except KubernetesApiError as error:
                if error.status != 404:
                    raise

    async def _workloads_of(self, api: KubernetesApi, key: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """List the Jobs and the Deployments of work `key`, in every namespace."""
        selector = work_selector(self.name, key)
        action = f"listing the objects of work {key}"
        jobs, deployments = await asyncio.gather(
            api.list_all(api.batch.list_job_for_all_namespaces, action=action, label_selector=selector),
            api.list_all(api.apps.list_deployment_for_all_namespaces, action=action, label_selector=selector),
        )
        return jobs, deployments

    async def cancel(self, key: str) -> None:
        """Suspend the share's unfinished Job, which ends its active pods and keeps the finished ones
        with their logs, as Kubernetes keeps the pods of a failed Job. Deployments (restart policy
        Always) have no finished pods, so they are deleted."""
        api = await self._connection()
        jobs, deployments = await self._workloads_of(api, key)
        # A JSON patch, which clients 30 to 37 all send with its own content type.
        patch = [
            {"op": "add", "path": "/spec/suspend", "value": True},
            {"op": "add", "path": f"/metadata/annotations/{CANCELLED_ANNOTATION.replace('/', '~1')}", "value": "true"},
        ]
        for job in jobs:
            workload = {**job, "kind": "Job"}
            if work_key(job) != key or job_finished(workload):
                continue
            namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
            try:
                await api.call(
                    api.batch.patch_namespaced_job, name, namespace, patch, action=f"suspending Job {namespace}/{name}"
                )
                logger.info("Cluster %s: suspended Job %s/%s of work %s", self.name, namespace, name, key)
            except KubernetesApiError as error:
                if error.status != 404:
                    raise
        if any(work_key(deployment) == key for deployment in deployments):
            await self.delete(key)

    # ---- capacity ------------------------------------------------------------------------

    async def nodes(self) -> dict[str, NodeResources]:
        """Capacity and free resources of each node that takes new pods (see `capacity`)."""
        api = await self._connection()
        nodes_informer, pods_informer = self._start_informers(api, CAPACITY_INFORMERS)
        if nodes_informer.has_synced and pods_informer.has_synced:
            nodes, pods = nodes_informer.items(), pods_informer.items()
        else:
            nodes, pods = await asyncio.gather(
                api.list_all(api.core.list_node, action="listing nodes"),
                api.list_all(
                    api.core.list_pod_for_all_namespaces, action="listing pods", field_selector=UNFINISHED_PODS
                ),
            )
        return capacity.node_resources(nodes, pods, self.settings.accelerator_label)

    # ---- logs and exec -------------------------------------------------------------------

    async def _find_work(self, key: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Return the share's workloads (none when it was deleted) and its pods, with one list per kind."""
        api = await self._connection()
        workloads, pods = await self._list_work(api, work_selector(self.name, key))
        workloads = [workload for workload in workloads if work_key(workload) == key]
        return workloads, [pod for pod in pods if work_key(pod) == key]

    async def _replicas(self, key: str, replica: int | None) -> dict[int, dict[str, Any] | None]:
        workloads, pods = await self._find_work(key)
        if not workloads:
            raise ClusterManagerError(
                f"no work with key {key!r} on Kubernetes cluster {self.name!r}: it was never submitted or was deleted",
                retryable=False,
            )
        by_replica = share_pods_by_replica(workloads, pods)
        indices = sorted(by_replica)
        if replica is not None and replica not in indices:
            raise ClusterManagerError(
                f"replica {replica} does not run on Kubernetes cluster {self.name!r} in work {key!r}, "
                f"which runs replicas {', '.join(str(index) for index in indices)}",
                retryable=False,
            )
        return by_replica

    async def logs(
        self, key: str, replica: int | None = None, *, follow: bool = False, tail: int | None = None
    ) -> AsyncIterator[tuple[int, str]]:
        """Yield (replica index, line) of the share's output, through the pods/log API.

        `tail` keeps the last lines of each replica. Without `follow`, lines of all replicas come
        in time order. With `follow`, lines come as they are written, and replicas that have not
        started are waited for. Following ends when every selected replica's container has ended or
        the work is deleted."""
        if tail is not None and tail < 0:
            raise ClusterManagerError(f"invalid tail {tail}: expected a number of lines >= 0", retryable=False)
        api = await self._connection()
        by_replica = await self._replicas(key, replica)
        selected = [replica] if replica is not None else sorted(by_replica)
        if not follow:
            for index, line in await logs.read_logs(api, {index: by_replica[index] for index in selected}, tail):
                yield index, line
            return
        async for index, line in logs.follow_logs(
            api, lambda: self._find_work(key), selected, tail, self.follow_poll_seconds
        ):
            yield index, line

    async def _exec_target(self, key: str, replica: int) -> dict[str, Any]:
        by_replica = await self._replicas(key, replica)
        pod = by_replica.get(replica)
        if pod is None or not is_active(pod) or (pod.get("status") or {}).get("phase") != "Running":
            state = "has no pod" if pod is None else f"is in phase {(pod.get('status') or {}).get('phase', 'Pending')}"
            raise ClusterManagerError(
                f"cannot run a command in replica {replica} on Kubernetes cluster {self.name!r}: its pod {state}, "
                "and commands run only in running containers",
                retryable=False,
            )
        return pod

    async def exec(
        self, key: str, replica: int, command: list[str], tty: bool = False, stdin: bool | str = False
    ) -> ExecResult:
        """Run `command` once in the container of one replica and return its output and exit code.

        `stdin` may be a string to write to the command's standard input, which is then closed
        (True sends nothing and closes it)."""
        if not command:
            raise ClusterManagerError("invalid command []: give the program to run and its arguments", retryable=False)
        api = await self._connection()
        pod = await self._exec_target(key, replica)
        data: str | None = None
        if stdin is True:
            data = ""
        elif isinstance(stdin, str):
            data = stdin
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: run_command(api, pod, list(command), tty=tty, stdin=data)
        )

    async def exec_interactive(self, key: str, replica: int, command: list[str], *, tty: bool, stdin: bool) -> int:
        """Connect this process's terminal to `command` in one replica's container; return the exit code.

        For `skyshift exec -it`; it blocks a thread for the session, so call it from a CLI, not a server."""
        api = await self._connection()
        pod = await self._exec_target(key, replica)
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: run_interactive(api, pod, list(command), tty=tty, stdin=stdin)
        )

    # ---- services ------------------------------------------------------------------------

    async def create_service(self, service: Service, selector_keys: list[str]) -> list[str]:
        """Create or update the Kubernetes Service for `service`; return its addresses.

        The Service selects pods by the SkyShift Service's selector, which the pods carry as their
        Job's labels, so `selector_keys` (the matching shares) is used for logging only."""
        api = await self._connection()
        manifest = service_manifest(service, self.name, self.settings)
        await self._ensure_namespace(api, manifest["metadata"]["namespace"], service.metadata.namespace or "default")
        created = await services.apply_service(api, manifest)
        logger.debug(
            "Cluster %s: Service %s selects the pods of %d share(s)",
            self.name,
            manifest["metadata"]["name"],
            len(selector_keys),
        )
        nodes: list[dict[str, Any]] = []
        if manifest["spec"]["type"] != "ClusterIP":
            informer = self._informers.get("nodes")
            if informer is not None and informer.has_synced:
                nodes = informer.items()
            else:
                nodes = await api.list_all(api.core.list_node, action="listing nodes")
        return services.service_addresses(created, nodes)

    async def delete_service(self, service: Service) -> None:
        api = await self._connection()
        await services.remove_service(api, service_manifest(service, self.name, self.settings))

    def kubernetes_namespace(self, skyshift_namespace: str) -> str:
        """Return the Kubernetes namespace that contains the work of a SkyShift namespace."""
        return kubernetes_namespace(self.settings.namespace_prefix, skyshift_namespace)


def _with_kind(jobs: list[dict[str, Any]], deployments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the workloads with `kind` set, which items of a list response leave out."""
    return [{**job, "kind": "Job"} for job in jobs] + [
        {**deployment, "kind": "Deployment"} for deployment in deployments
    ]
