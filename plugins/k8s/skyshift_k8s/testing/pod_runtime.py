"""Simulated containers of one pod and the pod status that the kubelet reports for them.

A container's program is its command simulated by `shell.simulate_script`: output lines appear
in the pod's log at their simulated offsets, and the container exits with the script's exit code
after the script's run time. A container without command and args runs its image's default
program, which the simulation treats as a server that never exits and writes no output.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from .logs import LogKey, LogStore
from .shell import ShellRun, container_script, simulate_script
from .store import now_timestamp

_FIELD_PATH = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KILLED_EXIT_CODE = 143  # 128 + SIGTERM, what a shell reports when the kubelet stops it


class ContainerConfigError(Exception):
    """The container cannot be created, e.g. it reads env from a ConfigMap the fake does not serve."""


def resolve_env(pod: dict[str, Any], container: dict[str, Any], pod_ip: str, host_ip: str) -> dict[str, str]:
    """Return the environment of a container: HOSTNAME, PATH and its `env` entries.

    `value` (with `$(NAME)` references, see `expand_references`), `fieldRef` and `resourceFieldRef` are resolved;
    `configMapKeyRef` and `secretKeyRef` raise ContainerConfigError unless optional, because
    the fake serves no ConfigMaps or Secrets.
    """
    env = {"HOSTNAME": pod["spec"].get("hostname") or pod["metadata"]["name"], "PATH": _DEFAULT_PATH}
    for entry in container.get("env") or []:
        name = entry.get("name")
        if "value" in entry or "valueFrom" not in entry:
            env[name] = expand_references(str(entry.get("value", "")), env)
            continue
        source = entry["valueFrom"]
        if "fieldRef" in source:
            env[name] = _field_value(pod, source["fieldRef"].get("fieldPath", ""), pod_ip, host_ip)
        elif "resourceFieldRef" in source:
            reference = source["resourceFieldRef"]
            section, _, resource_name = reference.get("resource", "").partition(".")
            env[name] = str(((container.get("resources") or {}).get(section) or {}).get(resource_name, "0"))
        else:
            kind = "configmap" if "configMapKeyRef" in source else "secret"
            reference = source.get("configMapKeyRef") or source.get("secretKeyRef") or {}
            if not reference.get("optional"):
                raise ContainerConfigError(f'{kind} "{reference.get("name", "")}" not found')
    return env


def expand_references(text: str, variables: dict[str, str]) -> str:
    """Expand `$(NAME)` references as the kubelet does in env values, command and args.

    `$(NAME)` becomes the variable's value when it is defined and stays as written otherwise, and
    `$$` becomes a single `$`, so `$$(NAME)` is a literal `$(NAME)`. This follows the expansion
    package that the kubelet uses (k8s.io/kubernetes third_party/forked/golang/expansion).
    """
    result: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 >= len(text):
            result.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            result.append("$")
            i += 2
        elif following == "(":
            close = text.find(")", i + 2)
            if close == -1:
                result.append("$(")
                i += 2
            else:
                name = text[i + 2 : close]
                result.append(variables.get(name, f"$({name})"))
                i = close + 1
        else:
            result.append("$" + following)
            i += 2
    return "".join(result)


def _field_value(pod: dict[str, Any], path: str, pod_ip: str, host_ip: str) -> str:
    match = _FIELD_PATH.match(path)
    if match:
        return str((pod["metadata"].get(match.group(1)) or {}).get(match.group(2), ""))
    values = {
        "metadata.name": pod["metadata"]["name"],
        "metadata.namespace": pod["metadata"].get("namespace", ""),
        "metadata.uid": pod["metadata"]["uid"],
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    return str(values.get(path, ""))


def image_id(image: str) -> str:
    """Return a stable, made-up image digest reference for an image name."""
    digest = hashlib.sha256(image.encode()).hexdigest()
    repository = image.split("@")[0].rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image.split("@")[0]
    return f"{repository}@sha256:{digest}"


@dataclass
class ContainerRuntime:
    """One simulated container: its current run, restarts and the state to report."""

    name: str
    image: str
    script: str | None
    env: dict[str, str]
    run: ShellRun
    started_at: float
    started_time: str
    container_id: str
    restart_count: int = 0
    emitted: int = 0
    state: str = "running"  # running, backoff (waiting to restart) or terminated (for good)
    exit_code: int | None = None
    termination_reason: str = ""
    finished_time: str = ""
    backoff_until: float = 0.0
    last_terminated: dict[str, Any] | None = None

    @classmethod
    def launch(cls, container: dict[str, Any], env: dict[str, str], now: float) -> ContainerRuntime:
        # The kubelet expands $(NAME) references in command and args with the container's environment.
        expanded = {
            key: [expand_references(str(word), env) for word in container.get(key) or []]
            for key in ("command", "args")
        }
        script = container_script(expanded)
        run = simulate_script(script, env) if script is not None else ShellRun((), math.inf, None)
        return cls(
            name=container["name"],
            image=container.get("image", ""),
            script=script,
            env=env,
            run=run,
            started_at=now,
            started_time=now_timestamp(),
            container_id=f"containerd://{uuid.uuid4().hex}{uuid.uuid4().hex}",
        )

    def log_key(self, pod_uid: str) -> LogKey:
        return pod_uid, self.name, self.restart_count

    def emit_output(self, pod_uid: str, logs: LogStore, now: float) -> None:
        """Append the output lines whose simulated offset has passed to the log."""
        elapsed = now - self.started_at
        outputs = self.run.outputs
        while self.emitted < len(outputs) and outputs[self.emitted].offset <= elapsed:
            logs.append(self.log_key(pod_uid), outputs[self.emitted].text)
            self.emitted += 1

    def terminated_state(self) -> dict[str, Any]:
        return {
            "exitCode": self.exit_code,
            "reason": self.termination_reason,
            "startedAt": self.started_time,
            "finishedAt": self.finished_time,
            "containerID": self.container_id,
        }

    def stop(self, pod_uid: str, logs: LogStore, exit_code: int, reason: str) -> None:
        """End the current run with `exit_code` and close its log."""
        self.exit_code = exit_code
        self.termination_reason = reason
        self.finished_time = now_timestamp()
        logs.finish(self.log_key(pod_uid))

    def restart(self, now: float) -> None:
        self.last_terminated = self.terminated_state()
        self.restart_count += 1
        self.run = simulate_script(self.script, self.env) if self.script is not None else ShellRun((), math.inf, None)
        self.started_at, self.started_time = now, now_timestamp()
        self.container_id = f"containerd://{uuid.uuid4().hex}{uuid.uuid4().hex}"
        self.emitted, self.state, self.exit_code = 0, "running", None

    def status(self, pod: dict[str, Any], backoff_seconds: float) -> dict[str, Any]:
        """Return this container's entry of `status.containerStatuses`."""
        entry: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": image_id(self.image),
            "containerID": self.container_id,
            "restartCount": self.restart_count,
            "ready": self.state == "running",
            "started": self.state == "running",
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
        }
        if self.state == "running":
            entry["state"] = {"running": {"startedAt": self.started_time}}
        elif self.state == "backoff":
            entry["lastState"] = {"terminated": self.terminated_state()}
            entry["state"] = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {backoff_seconds:g}s restarting failed container={self.name} "
                    f"pod={pod['metadata']['name']}_{pod['metadata']['namespace']}({pod['metadata']['uid']})",
                }
            }
        else:
            entry["state"] = {"terminated": self.terminated_state()}
        return entry


@dataclass
class PodRuntime:
    """The simulated sandbox of one pod: its IPs, start time and containers."""

    uid: str
    pod_ip: str
    host_ip: str
    start_time: str
    started_at: float
    containers: list[ContainerRuntime] = field(default_factory=list)
    failure_reason: str = ""  # set when the whole pod failed, e.g. DeadlineExceeded
    failure_message: str = ""

    def finished(self) -> bool:
        return all(container.state == "terminated" for container in self.containers)

    def phase(self) -> str:
        if self.failure_reason:
            return "Failed"
        if not self.finished():
            return "Running"
        return "Succeeded" if all(container.exit_code == 0 for container in self.containers) else "Failed"

    def status(self, pod: dict[str, Any], backoff_seconds: float) -> dict[str, Any]:
        """Return the full pod status for the current state of the containers."""
        phase = self.phase()
        containers = [container.status(pod, backoff_seconds) for container in self.containers]
        unready = [c["name"] for c in containers if not c["ready"]]
        if phase in ("Succeeded", "Failed"):
            ready = ("False", "PodCompleted", "")
        elif unready:
            ready = ("False", "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]")
        else:
            ready = ("True", "", "")
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": merge_conditions(
                pod,
                [
                    ("PodReadyToStartContainers", "True" if phase not in ("Succeeded", "Failed") else "False", "", ""),
                    ("Initialized", "True", "", ""),
                    ("Ready", *ready),
                    ("ContainersReady", *ready),
                    ("PodScheduled", "True", "", ""),
                ],
            ),
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.start_time,
            "containerStatuses": containers,
            "qosClass": (pod.get("status") or {}).get("qosClass", "BestEffort"),
        }
        if self.failure_reason:
            status["reason"], status["message"] = self.failure_reason, self.failure_message
        return status


def merge_conditions(pod: dict[str, Any], desired: list[tuple[str, str, str, str]]) -> list[dict[str, Any]]:
    """Build pod conditions, keeping each one's lastTransitionTime while its status is unchanged."""
    existing = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}
    conditions = []
    for condition_type, status, reason, message in desired:
        previous = existing.get(condition_type)
        same = previous is not None and previous.get("status") == status
        condition: dict[str, Any] = {
            "type": condition_type,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": previous["lastTransitionTime"]
            if same and previous.get("lastTransitionTime")
            else now_timestamp(),
        }
        if reason:
            condition["reason"] = reason
        if message:
            condition["message"] = message
        conditions.append(condition)
    return conditions


def waiting_status(
    pod: dict[str, Any], pod_ip: str, host_ip: str, waiting: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    """Return the status of a pod whose containers cannot start yet.

    `waiting` maps container names to (reason, message), e.g. ("ImagePullBackOff", ...);
    the other containers wait with reason ContainerCreating.
    """
    names = [c["name"] for c in pod["spec"]["containers"]]
    statuses = []
    for container in pod["spec"]["containers"]:
        reason, message = waiting.get(container["name"], ("ContainerCreating", ""))
        state: dict[str, Any] = {"reason": reason}
        if message:
            state["message"] = message
        statuses.append(
            {
                "name": container["name"],
                "image": container.get("image", ""),
                "imageID": "",
                "restartCount": 0,
                "ready": False,
                "started": False,
                "lastState": {},
                "state": {"waiting": state},
            }
        )
    unready = ("False", "ContainersNotReady", f"containers with unready status: [{' '.join(names)}]")
    return {
        "phase": "Pending",
        "conditions": merge_conditions(
            pod,
            [
                ("PodReadyToStartContainers", "True", "", ""),
                ("Initialized", "True", "", ""),
                ("Ready", *unready),
                ("ContainersReady", *unready),
                ("PodScheduled", "True", "", ""),
            ],
        ),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": (pod.get("status") or {}).get("startTime") or now_timestamp(),
        "containerStatuses": statuses,
        "qosClass": (pod.get("status") or {}).get("qosClass", "BestEffort"),
    }
