"""The `simulated` cluster manager: clusters that run nothing but report capacity and move tasks
through their states on a clock, so SkyShift's control plane can be exercised without real clusters."""

from importlib.metadata import PackageNotFoundError, version

from skyshift_simulated.clock import ManualClock
from skyshift_simulated.cluster import SimulatedCluster
from skyshift_simulated.config import SimulatedConfig, parse_config
from skyshift_simulated.manager import (
    MANAGER_NAME,
    SimulatedClusterManager,
    clear_registry,
    forget_cluster,
    registered_cluster,
)

try:
    __version__ = version("skyshift-simulated")
except PackageNotFoundError:  # Running from a source tree that was never installed.
    __version__ = "0.0.0"

__all__ = [
    "MANAGER_NAME",
    "ManualClock",
    "SimulatedCluster",
    "SimulatedClusterManager",
    "SimulatedConfig",
    "clear_registry",
    "forget_cluster",
    "parse_config",
    "registered_cluster",
]
