"""A fake Kubernetes cluster for tests: an API server on 127.0.0.1 and a simulated kubelet.

`FakeApiServer` speaks the Kubernetes REST and watch protocol to the official `kubernetes`
client; `SimulatedKubelet` schedules and "runs" its pods, Jobs and Deployments. See the
docstrings of `fake_apiserver` and `kubelet` for usage and for the pod behaviour conventions.
"""

from .admission import JOB_COMPLETION_INDEX_ANNOTATION, JOB_NAME_LABEL
from .errors import ApiError
from .fake_apiserver import FakeApiServer
from .kubelet import UNPULLABLE_REGISTRY, ManualClock, SimulatedKubelet
from .shell import ShellRun, container_script, simulate_script
from .store import ObjectStore, WatchEvent

__all__ = [
    "JOB_COMPLETION_INDEX_ANNOTATION",
    "JOB_NAME_LABEL",
    "UNPULLABLE_REGISTRY",
    "ApiError",
    "FakeApiServer",
    "ManualClock",
    "ObjectStore",
    "ShellRun",
    "SimulatedKubelet",
    "WatchEvent",
    "container_script",
    "simulate_script",
]
