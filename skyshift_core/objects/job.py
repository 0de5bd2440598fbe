"""The Job kind: a batch job or long-running replicas, placed across clusters by the scheduler."""

from __future__ import annotations

import re
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, StrictBool, StrictInt, field_validator, model_validator

from skyshift_core.objects.base import SkyModel
from skyshift_core.objects.meta import Condition, Object
from skyshift_core.objects.resources import Resources
from skyshift_core.objects.selectors import LabelSelector

DEFAULT_IMAGE = "ubuntu:latest"
DEFAULT_SCHEDULER = "default"

# [registry[:port]/]path[:tag][@sha256:digest], as container runtimes accept it.
_IMAGE = re.compile(
    r"^([a-zA-Z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RestartPolicy(str, Enum):
    ALWAYS = "Always"
    ON_FAILURE = "OnFailure"
    NEVER = "Never"


class JobPhase(str, Enum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class PlacementFilter(LabelSelector):
    """A cluster must match every filter to be considered."""

    name: str = ""

    @model_validator(mode="after")
    def _not_empty(self) -> "PlacementFilter":
        if self.is_empty():
            raise ValueError(f"placement filter {self.name!r} needs match_labels or match_expressions")
        return self


class PlacementPreference(PlacementFilter):
    """Clusters matching a preference score higher, in proportion to its weight."""

    weight: StrictInt = Field(default=1, ge=1, le=100)


class Placement(SkyModel):
    filters: list[PlacementFilter] = Field(default_factory=list)
    preferences: list[PlacementPreference] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> "Placement":
        for label, rules in (("filter", self.filters), ("preference", self.preferences)):
            names = [rule.name for rule in rules if rule.name]
            duplicates = sorted({name for name in names if names.count(name) > 1})
            if duplicates:
                raise ValueError(f"duplicate placement {label} name(s): {', '.join(duplicates)}")
        return self


class Volume(SkyModel):
    """A directory mounted into each replica, written as in the original SkyShift:
    `volumes: {data: {container_dir: /data, host_path: /srv/data}}`."""

    container_dir: str
    host_path: str | None = None
    type: Literal["host_path", "empty_dir"] = "host_path"
    read_only: StrictBool = False

    @model_validator(mode="after")
    def _check(self) -> "Volume":
        if not self.container_dir.startswith("/"):
            raise ValueError(f"container_dir {self.container_dir!r} must be an absolute path")
        if self.type == "host_path" and not self.host_path:
            raise ValueError("a host_path volume needs host_path; use type: empty_dir for scratch space")
        return self


def _with_lower_case_name(image: str) -> str:
    """Return `image` with its registry and name in lower case, keeping the tag and digest as written."""
    reference, at, digest = image.partition("@")
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > slash:
        return reference[:colon].lower() + reference[colon:] + at + digest
    return reference.lower() + at + digest


# Replacements for fields as Kubernetes and Slurm users write them: SkyShift's field and how to use it.
_RUN_INSTEAD = ("run", "the command line as one shell string, such as run: python train.py --epochs 3")
_REPLICAS_INSTEAD = ("replicas", "the number of copies to run, each with its SKYSHIFT_REPLICA_INDEX")
_PLACEMENT_INSTEAD = ("placement", "filters and weighted preferences choose clusters by their labels")


class JobSpec(SkyModel):
    unknown_field_hint: ClassVar[str] = (
        "settings of one cluster manager, such as a Slurm partition or time limit, go under "
        "spec.backend.<manager>, for example spec.backend.slurm.time_limit"
    )
    synonyms: ClassVar[dict[str, tuple[str, str]]] = {
        "command": _RUN_INSTEAD,
        "args": _RUN_INSTEAD,
        "cmd": _RUN_INSTEAD,
        "script": _RUN_INSTEAD,
        "parallelism": _REPLICAS_INSTEAD,
        "completions": _REPLICAS_INSTEAD,
        "array": _REPLICAS_INSTEAD,
        "nodeSelector": _PLACEMENT_INSTEAD,
        "node_selector": _PLACEMENT_INSTEAD,
        "affinity": _PLACEMENT_INSTEAD,
    }

    image: str = DEFAULT_IMAGE
    run: str = ""
    envs: dict[str, str] = Field(default_factory=dict, validation_alias=AliasChoices("envs", "env"))
    ports: list[StrictInt] = Field(default_factory=list)
    replicas: StrictInt = Field(default=1, ge=1)
    resources: Resources = Field(default_factory=Resources)
    # Always is the original SkyShift's default, kept so its manifests mean the same here.
    restart_policy: RestartPolicy = RestartPolicy.ALWAYS
    volumes: dict[str, Volume] = Field(default_factory=dict)
    placement: Placement = Field(default_factory=Placement)
    scheduler_name: str = DEFAULT_SCHEDULER
    # Per-backend settings keyed by cluster manager name, such as `slurm: {partition: debug}`;
    # each backend plugin validates its own section.
    backend: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("image")
    @classmethod
    def _check_image(cls, image: str) -> str:
        if not _IMAGE.match(image):
            lower = _with_lower_case_name(image)
            hint = f"; names are lower case: did you mean {lower!r}?" if lower != image and _IMAGE.match(lower) else ""
            raise ValueError(
                f"invalid image {image!r}: expected [registry[:port]/]name[:tag][@sha256:digest], "
                f"for example 'ubuntu:22.04'{hint}"
            )
        return image

    @field_validator("envs", mode="before")
    @classmethod
    def _normalize_envs(cls, envs: Any) -> Any:
        # Older manifests write a list of one-key mappings: `env: [{A: "1"}, {B: "2"}]`, and
        # Kubernetes users a list of name and value: `env: [{name: A, value: "1"}]`.
        if isinstance(envs, list):
            merged: dict[str, Any] = {}
            for item in envs:
                if isinstance(item, dict) and set(item) == {"name", "value"} and isinstance(item["name"], str):
                    merged[item["name"]] = item["value"]
                elif isinstance(item, dict) and len(item) == 1:
                    merged.update(item)
                else:
                    raise ValueError(
                        f"invalid env entry {item!r}: expected a mapping with one key, like {{NAME: value}}, or "
                        "a name and a value, like {name: NAME, value: value}"
                    )
            envs = merged
        if isinstance(envs, dict):
            return {key: value if isinstance(value, str) else _env_string(key, value) for key, value in envs.items()}
        return envs

    @field_validator("envs")
    @classmethod
    def _check_env_names(cls, envs: dict[str, str]) -> dict[str, str]:
        for name in envs:
            if not _ENV_NAME.match(name):
                raise ValueError(f"invalid environment variable name {name!r}: use letters, digits and '_'")
        return envs

    @field_validator("ports")
    @classmethod
    def _check_ports(cls, ports: list[int]) -> list[int]:
        for port in ports:
            if not 1 <= port <= 65535:
                raise ValueError(f"invalid port {port}: must be between 1 and 65535")
        return ports


def _env_string(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if value is None:
        raise ValueError(
            f"environment variable {name!r} has no value (null); write an empty string \"\" for an empty value"
        )
    if isinstance(value, list):
        form = "a list"
    elif isinstance(value, dict):
        form = "a mapping"
    else:
        form = type(value).__name__
    raise ValueError(
        f"invalid value for environment variable {name!r}: expected a string or number, got {form} {value!r}"
    )


class TaskStatus(SkyModel):
    """State of one replica on its cluster, as the backend reports it."""

    state: str = "Pending"
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    restarts: int = 0


class ShareUnit(SkyModel):
    """One submission within a share: the placement generation that created it, which is part of
    its key on the backend, and the replicas it runs."""

    generation: int = 0
    replica_indices: list[int] = Field(default_factory=list)


class ClusterShare(SkyModel):
    """What runs on one cluster: the global indices of its replicas, the placement generation at
    which this share last changed (part of the backend submission's identity, so an unchanged
    share is never resubmitted), the backend's ids and each replica's state."""

    replicas: int = 0
    replica_indices: list[int] = Field(default_factory=list)
    generation: int = 0
    manager_job_ids: list[str] = Field(default_factory=list)
    tasks: dict[str, TaskStatus] = Field(default_factory=dict)
    # The submissions of a share that grew: the earlier ones keep running, and each growth adds
    # one for the new replicas. Empty when the share is one submission, made at `generation`.
    units: list[ShareUnit] = Field(default_factory=list)

    def work_units(self) -> list[ShareUnit]:
        """Return the submissions that make up the share, oldest first."""
        if self.units:
            return list(self.units)
        return [ShareUnit(generation=self.generation, replica_indices=list(self.replica_indices))]


class JobStatus(SkyModel):
    phase: JobPhase = JobPhase.PENDING
    # Cluster name -> replicas, written by the scheduler in one conditional write.
    placement: dict[str, int] = Field(default_factory=dict)
    placement_generation: int = 0
    clusters: dict[str, ClusterShare] = Field(default_factory=dict)
    conditions: list[Condition] = Field(default_factory=list)
    # When a backend first reported one of the Job's replicas (submitted, maybe still queued).
    start_time: datetime | None = None
    completion_time: datetime | None = None
    # The last scheduling cycle's verdicts, scores and division, for `skyshift explain`.
    scheduling: dict[str, Any] = Field(default_factory=dict)


class Job(Object):
    plural: ClassVar[str] = "jobs"
    singular: ClassVar[str] = "job"
    short_names: ClassVar[tuple[str, ...]] = ("jb",)
    table_columns: ClassVar[tuple[str, ...]] = ("STATUS", "REPLICAS", "RESTARTS", "CLUSTERS", "AGE")

    kind: Literal["Job"] = "Job"
    spec: JobSpec = Field(default_factory=JobSpec)
    status: JobStatus = Field(default_factory=JobStatus)

    def table_row(self) -> dict[str, str]:
        """Return the `skyshift get jobs` row. REPLICAS counts, like kubectl's READY, the replicas
        that run or have succeeded against those wanted; a replica waiting to restart (reason
        BackOff, as a pod in CrashLoopBackOff) does not run. RESTARTS sums the replicas' restarts,
        as kubectl shows them for pods, and CLUSTERS shows where the replicas are placed."""
        tasks = [task for share in self.status.clusters.values() for task in share.tasks.values()]
        started = sum(
            1
            for task in tasks
            if task.state == "Succeeded" or (task.state == "Running" and task.reason != "BackOff")
        )
        clusters = ",".join(f"{name}:{count}" for name, count in sorted(self.status.placement.items()))
        return {
            "STATUS": self.status.phase.value,
            "REPLICAS": f"{started}/{self.spec.replicas}",
            "RESTARTS": str(sum(task.restarts for task in tasks)),
            "CLUSTERS": clusters or "<none>",
        }
