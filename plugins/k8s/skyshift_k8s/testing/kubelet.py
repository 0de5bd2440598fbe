"""A simulated kubelet, kube-scheduler and kube-controller-manager behind a FakeApiServer.

`SimulatedKubelet` runs in the server's process and writes straight to its store, so every
change it makes reaches clients as ordinary watch events. Drive it with `step()` (one pass of
every controller, the scheduler and the node agents) or with `start()`, which steps in a
background thread every `tick_seconds` and whenever an object changes.

How a pod behaves is decided by its containers (see `shell.py` for the simulated commands):
- The command and args are simulated as a shell script: `echo` lines become log lines, `sleep N`
  takes N seconds, `exit N` ends the container with exit code N, an unknown command exits 127.
  `["sh", "-c", "echo start; sleep 2; exit 3"]` logs "start", runs 2 s and fails with code 3.
- A container with neither command nor args runs until the pod is deleted (a server).
- An image under the registry host `unpullable.invalid` (`UNPULLABLE_REGISTRY`), or listed in
  `unpullable_images`, never pulls: the pod stays Pending with ErrImagePull, then ImagePullBackOff.
- A container that exits is restarted after `restart_backoff_seconds` (CrashLoopBackOff) when the
  pod's restartPolicy is Always, or OnFailure and the exit code is not 0. Otherwise the pod ends
  Succeeded (all exit codes 0) or Failed.
- `lose_node()` turns a node's Ready condition to Unknown, taints it unreachable and fails its
  pods (phase Failed, or Unknown if asked) with reason NodeLost.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from . import errors
from .controllers import DeploymentController, JobController, ReplicaSetController, is_terminal
from .pod_runtime import (
    KILLED_EXIT_CODE,
    ContainerConfigError,
    ContainerRuntime,
    PodRuntime,
    merge_conditions,
    resolve_env,
    waiting_status,
)
from .resources import NODES, PODS
from .scheduler import Scheduler
from .shell import ShellRun, container_script, simulate_script
from .store import now_timestamp

if TYPE_CHECKING:
    from .fake_apiserver import FakeApiServer

logger = logging.getLogger(__name__)

UNPULLABLE_REGISTRY = "unpullable.invalid"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
# Node and pod addresses come from the loopback range so that nothing that follows them leaves the machine.
NODE_ADDRESSES = ipaddress.ip_network("127.0.1.0/24")
POD_ADDRESSES = ipaddress.ip_network("127.1.0.0/16")

T = TypeVar("T")


class ManualClock:
    """A clock that moves only when `advance()` is called, for step-driven tests (pass it as `clock=`)."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock cannot go back: advance({seconds})")
        with self._lock:
            self._now += seconds


class SimulatedKubelet:
    """Simulated nodes, scheduler and controllers for one FakeApiServer (see the module docstring)."""

    def __init__(
        self,
        server: FakeApiServer,
        clock: Callable[[], float] = time.monotonic,
        tick_seconds: float = 0.05,
        restart_backoff_seconds: float = 1.0,
        unpullable_images: Iterable[str] = (),
    ) -> None:
        """Attach a kubelet to `server` (one kubelet per server).

        clock: seconds as a float; the simulated run time of containers and the deadlines of
            jobs follow it. Use ManualClock with step() for tests that control time.
        tick_seconds: how often the background thread steps when nothing changes.
        restart_backoff_seconds: how long a restarting container waits in CrashLoopBackOff.
        unpullable_images: exact image references whose pull fails (a set you may change later).
        """
        if server.kubelet is not None:
            raise RuntimeError("This FakeApiServer already has a SimulatedKubelet; create one kubelet per server")
        server.kubelet = self
        self.server = server
        self.store = server.store
        self.logs = server.logs
        self.clock = clock
        self.tick_seconds = tick_seconds
        self.restart_backoff_seconds = restart_backoff_seconds
        self.unpullable_images: set[str] = set(unpullable_images)
        self.scheduler = Scheduler(self.store)
        self.jobs = JobController(self.store, clock)
        self.deployments = DeploymentController(self.store)
        self.replica_sets = ReplicaSetController(self.store)
        self.errors: list[BaseException] = []  # exceptions the background thread caught and logged
        self._lock = threading.RLock()
        self._pods: dict[str, PodRuntime] = {}
        self._pull_attempts: dict[str, int] = {}
        self._lost_nodes: set[str] = set()
        self._next_pod_address = iter(POD_ADDRESSES.hosts())
        self._node_count = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.store.add_write_listener(lambda event: self._wake.set())

    # Nodes

    def add_node(
        self,
        name: str,
        cpu: str | int = "4",
        memory: str = "16Gi",
        gpus: int = 0,
        pods: int = 110,
        labels: dict[str, str] | None = None,
        taints: list[dict[str, str]] | None = None,
        unschedulable: bool = False,
        ready: bool = True,
        extra_resources: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Register a node with this capacity (allocatable is the same) and return the Node.

        `gpus` becomes the `nvidia.com/gpu` resource; `extra_resources` adds any other.
        """
        with self._lock:
            self._node_count += 1
            address = str(NODE_ADDRESSES.network_address + self._node_count)
        capacity = {"cpu": str(cpu), "memory": str(memory), "pods": str(pods), "ephemeral-storage": "100Gi"}
        if gpus:
            capacity["nvidia.com/gpu"] = str(gpus)
        capacity.update(extra_resources or {})
        now = now_timestamp()
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": "amd64",
                    **(labels or {}),
                },
            },
            "spec": {"taints": list(taints or []), **({"unschedulable": True} if unschedulable else {})},
            "status": {
                "capacity": capacity,
                "allocatable": dict(capacity),
                "conditions": _node_conditions(ready, now),
                "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "machineID": name,
                    "systemUUID": name,
                    "bootID": name,
                    "kernelVersion": "6.1.0",
                    "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "containerRuntimeVersion": "containerd://1.7.20",
                    "kubeletVersion": "v1.31.0",
                    "kubeProxyVersion": "v1.31.0",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
            },
        }
        if not node["spec"]["taints"]:
            node["spec"].pop("taints")
        created = self.store.create(NODES, None, node)
        logger.info("Added node %s (cpu %s, memory %s, gpus %d)", name, cpu, memory, gpus)
        return created

    def lose_node(self, name: str, pod_phase: str = "Failed") -> None:
        """Simulate a node that stops responding.

        The node's conditions become Unknown (Ready=Unknown, reason NodeStatusUnknown), it gets
        the `node.kubernetes.io/unreachable` NoSchedule and NoExecute taints, and each of its
        running or pending pods gets phase `pod_phase` ("Failed" or "Unknown") with reason
        NodeLost. The kubelet stops running that node's pods until restore_node().
        """
        if pod_phase not in ("Failed", "Unknown"):
            raise ValueError(f"pod_phase must be 'Failed' or 'Unknown', got {pod_phase!r}")
        with self._lock:
            self.store.get(NODES, None, name)
            self._lost_nodes.add(name)
            now = now_timestamp()

            def unknown_status(node: dict[str, Any]) -> None:
                for condition in node["status"]["conditions"]:
                    condition.update(
                        {
                            "status": "Unknown",
                            "reason": "NodeStatusUnknown",
                            "message": "Kubelet stopped posting node status.",
                            "lastTransitionTime": now,
                        }
                    )

            def add_taints(node: dict[str, Any]) -> None:
                taints = [t for t in node["spec"].get("taints") or [] if t.get("key") != UNREACHABLE_TAINT]
                taints += [
                    {"key": UNREACHABLE_TAINT, "effect": effect, "timeAdded": now}
                    for effect in ("NoSchedule", "NoExecute")
                ]
                node["spec"]["taints"] = taints

            self.store.mutate(NODES, None, name, unknown_status, subresource="status")
            self.store.mutate(NODES, None, name, add_taints)
            for pod in self.store.select(PODS):
                if pod["spec"].get("nodeName") == name and not is_terminal(pod):
                    self._fail_lost_pod(pod, name, pod_phase)
        logger.info("Node %s is lost; its pods are now %s", name, pod_phase)

    def _fail_lost_pod(self, pod: dict[str, Any], node_name: str, pod_phase: str) -> None:
        runtime = self._pods.pop(pod["metadata"]["uid"], None)
        for container in runtime.containers if runtime else []:
            if container.state == "running":
                self.logs.finish(container.log_key(runtime.uid))

        def change(current: dict[str, Any]) -> None:
            status = current.setdefault("status", {})
            status["phase"] = pod_phase
            status["reason"] = "NodeLost"
            status["message"] = f"Node {node_name} which was running pod {current['metadata']['name']} is unresponsive"
            not_ready = ("False", "NodeLost", status["message"])
            status["conditions"] = merge_conditions(
                current,
                [
                    (c["type"], c["status"], c.get("reason", ""), c.get("message", ""))
                    for c in status.get("conditions") or []
                    if c.get("type") not in ("Ready", "ContainersReady")
                ]
                + [("Ready", *not_ready), ("ContainersReady", *not_ready)],
            )
            for container_status in status.get("containerStatuses") or []:
                container_status["ready"] = False

        self.store.mutate(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], change, subresource="status")

    def restore_node(self, name: str) -> None:
        """Bring a lost node back: Ready again, untainted, its Unknown pods restart."""
        with self._lock:
            self._lost_nodes.discard(name)
            now = now_timestamp()

            def ready_status(node: dict[str, Any]) -> None:
                node["status"]["conditions"] = _node_conditions(True, now)

            def remove_taints(node: dict[str, Any]) -> None:
                taints = [t for t in node["spec"].get("taints") or [] if t.get("key") != UNREACHABLE_TAINT]
                if taints:
                    node["spec"]["taints"] = taints
                else:
                    node["spec"].pop("taints", None)

            self.store.mutate(NODES, None, name, ready_status, subresource="status")
            self.store.mutate(NODES, None, name, remove_taints)
        logger.info("Node %s is back", name)

    def remove_node(self, name: str) -> None:
        """Delete a node and force-delete its pods, as the pod garbage collector does."""
        with self._lock:
            self._lost_nodes.add(name)
            self.store.delete(NODES, None, name)
            for pod in self.store.select(PODS):
                if pod["spec"].get("nodeName") == name:
                    self.store.delete(
                        PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], grace_period_seconds=0
                    )
            self._lost_nodes.discard(name)

    # Driving the simulation

    def step(self) -> None:
        """Run one pass: controllers, scheduler, then every node's pods, then controllers again."""
        with self._lock:
            self._sync_controllers()
            self.scheduler.schedule()
            self._sync_pods()
            self._sync_controllers()

    def _sync_controllers(self) -> None:
        self.jobs.sync()
        self.deployments.sync()
        self.replica_sets.sync()

    def start(self) -> SimulatedKubelet:
        """Step in a background thread until stop()."""
        if self._thread is not None:
            return self
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="simulated-kubelet", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_seconds: float = 10.0) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join(timeout_seconds)
        if thread.is_alive():
            raise RuntimeError(f"The simulated kubelet did not stop within {timeout_seconds} s")
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self.step()
            except Exception as err:
                if len(self.errors) < 100:
                    logger.exception("Simulated kubelet step failed; retrying in %.2f s", self.tick_seconds)
                self.errors.append(err)
            self._wake.wait(self.tick_seconds)
            # A short pause so that a step which keeps writing cannot take a whole core.
            self._stopping.wait(0.005)

    def run_until(self, condition: Callable[[], T], timeout_seconds: float = 10.0, interval_seconds: float = 0.02) -> T:
        """Return the first truthy value of `condition()`, stepping while no background thread runs.

        Raises TimeoutError after `timeout_seconds` of real time.
        """
        deadline = time.monotonic() + timeout_seconds
        while True:
            if not self.running:
                self.step()
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"condition {getattr(condition, '__name__', condition)!r} still false after {timeout_seconds} s"
                )
            time.sleep(interval_seconds)

    # Pods

    def _sync_pods(self) -> None:
        nodes = {node["metadata"]["name"]: node for node in self.store.select(NODES)}
        live = set()
        for pod in self.store.select(PODS):
            uid = pod["metadata"]["uid"]
            live.add(uid)
            node_name = pod["spec"].get("nodeName")
            if not node_name or node_name not in nodes or node_name in self._lost_nodes:
                continue
            if pod["metadata"].get("deletionTimestamp"):
                self._kill(pod)
            elif is_terminal(pod):
                continue
            elif uid in self._pods:
                self._advance(pod, self._pods[uid])
            else:
                self._start(pod, nodes[node_name])
        for uid in list(self._pods):
            if uid not in live:
                del self._pods[uid]
        for uid in list(self._pull_attempts):
            if uid not in live:
                del self._pull_attempts[uid]
        self.logs.forget_pods_except(live)

    def _image_pullable(self, image: str) -> bool:
        return image not in self.unpullable_images and image.split("/")[0] != UNPULLABLE_REGISTRY

    def _start(self, pod: dict[str, Any], node: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        host_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
        pod_ip = (pod.get("status") or {}).get("podIP") or str(next(self._next_pod_address))
        waiting: dict[str, tuple[str, str]] = {}
        for container in pod["spec"]["containers"]:
            image = container.get("image", "")
            if not self._image_pullable(image):
                attempts = self._pull_attempts.get(uid, 0)
                if attempts == 0:
                    message = f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": '
                    message += f"{image}: not found"
                    waiting[container["name"]] = ("ErrImagePull", message)
                else:
                    waiting[container["name"]] = ("ImagePullBackOff", f'Back-off pulling image "{image}"')

        env_by_container: dict[str, dict[str, str]] = {}
        for container in pod["spec"]["containers"]:
            try:
                env_by_container[container["name"]] = resolve_env(pod, container, pod_ip, host_ip)
            except ContainerConfigError as err:
                waiting.setdefault(container["name"], ("CreateContainerConfigError", str(err)))
        if waiting:
            self._pull_attempts[uid] = self._pull_attempts.get(uid, 0) + 1
            self._write_status(pod, waiting_status(pod, pod_ip, host_ip, waiting))
            return

        now = self.clock()
        runtime = PodRuntime(
            uid=uid,
            pod_ip=pod_ip,
            host_ip=host_ip,
            start_time=(pod.get("status") or {}).get("startTime") or now_timestamp(),
            started_at=now,
        )
        for container in pod["spec"]["containers"]:
            runtime.containers.append(ContainerRuntime.launch(container, env_by_container[container["name"]], now))
        self._pods[uid] = runtime
        for container in runtime.containers:
            container.emit_output(uid, self.logs, now)
        self._write_status(pod, runtime.status(pod, self.restart_backoff_seconds))
        logger.info(
            "Started pod %s/%s on node %s",
            pod["metadata"]["namespace"],
            pod["metadata"]["name"],
            node["metadata"]["name"],
        )

    def _advance(self, pod: dict[str, Any], runtime: PodRuntime) -> None:
        now = self.clock()
        policy = pod["spec"].get("restartPolicy", "Always")
        for container in runtime.containers:
            if container.state == "running":
                container.emit_output(runtime.uid, self.logs, now)
                if now - container.started_at >= container.run.duration:
                    code = container.run.exit_code or 0
                    container.stop(runtime.uid, self.logs, code, "Completed" if code == 0 else "Error")
                    if policy == "Always" or (policy == "OnFailure" and code != 0):
                        container.state, container.backoff_until = "backoff", now + self.restart_backoff_seconds
                    else:
                        container.state = "terminated"
            elif container.state == "backoff" and now >= container.backoff_until:
                container.restart(now)
                container.emit_output(runtime.uid, self.logs, now)
        deadline = pod["spec"].get("activeDeadlineSeconds")
        if deadline is not None and not runtime.finished() and now - runtime.started_at >= deadline:
            self._stop_containers(runtime)
            runtime.failure_reason = "DeadlineExceeded"
            runtime.failure_message = "Pod was active on the node longer than the specified deadline"
        self._write_status(pod, runtime.status(pod, self.restart_backoff_seconds))

    def _stop_containers(self, runtime: PodRuntime) -> None:
        for container in runtime.containers:
            if container.state == "running":
                container.stop(runtime.uid, self.logs, KILLED_EXIT_CODE, "Error")
            container.state = "terminated"

    def _kill(self, pod: dict[str, Any]) -> None:
        """Stop a pod that is being deleted, report its final status and confirm the deletion."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        runtime = self._pods.pop(pod["metadata"]["uid"], None)
        if runtime is not None and not is_terminal(pod):
            self._stop_containers(runtime)
            self._write_status(pod, runtime.status(pod, self.restart_backoff_seconds))
        self.store.finish_pod_deletion(namespace, name)
        logger.info("Stopped and deleted pod %s/%s", namespace, name)

    def _write_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        def change(current: dict[str, Any]) -> None:
            current["status"] = status

        self.store.mutate(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], change, subresource="status")

    # Exec support for the pods/exec endpoint

    def check_exec_target(self, pod: dict[str, Any], container_name: str) -> None:
        """Raise ApiError 400 unless the container exists and is running."""
        names = [c["name"] for c in pod["spec"]["containers"]]
        if container_name not in names:
            raise errors.bad_request(f"container {container_name} is not valid for pod {pod['metadata']['name']}")
        with self._lock:
            runtime = self._pods.get(pod["metadata"]["uid"])
            container = next((c for c in runtime.containers if c.name == container_name), None) if runtime else None
            if container is None or container.state != "running":
                raise errors.bad_request(f'unable to upgrade connection: container not found ("{container_name}")')

    def simulate_exec(self, pod: dict[str, Any], container_name: str, command: list[str], stdin: str) -> ShellRun:
        """Simulate `command` inside the container, with the container's environment."""
        with self._lock:
            runtime = self._pods.get(pod["metadata"]["uid"])
            container = next((c for c in runtime.containers if c.name == container_name), None) if runtime else None
            env = dict(container.env) if container else {}
        script = container_script({"command": command})
        return simulate_script(script or "", env, stdin) if script else ShellRun((), 0.0, 0)


def _node_conditions(ready: bool, now: str) -> list[dict[str, Any]]:
    pressure = [
        ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ]
    conditions = [
        {
            "type": kind,
            "status": "False",
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        for kind, reason, message in pressure
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": "True" if ready else "False",
            "reason": "KubeletReady" if ready else "KubeletNotReady",
            "message": "kubelet is posting ready status" if ready else "container runtime network not ready",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
    )
    return conditions
