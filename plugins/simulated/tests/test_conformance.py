"""The framework's cluster-manager conformance suite run against the simulated backend."""

import pytest_asyncio
from skyshift_core.testing.conformance import ClusterManagerConformance
from skyshift_simulated import SimulatedClusterManager

CLUSTER = "conformance"


class TestSimulatedConformance(ClusterManagerConformance):
    finish_timeout = 10.0

    @pytest_asyncio.fixture
    async def manager(self):
        config = SimulatedClusterManager.validate_config(
            {"node_count": 1, "node": {"cpus": 4, "memory": "4Gi"}, "run_seconds": 0.2}
        )
        manager = SimulatedClusterManager(CLUSTER, config)
        await manager.start()
        yield manager
        await manager.stop()

    def failing_unit(self):
        # The simulator runs no command; a replica listed in fail_replicas exits with code 1.
        return self.unit(backend={"simulated": {"fail_replicas": [0]}}), 1

    def output_unit(self):
        # The simulator runs no command, but its log has a line for each replica's start and end.
        unit = self.unit(replicas=2)
        return unit, {index: f"replica {index} on {CLUSTER}: finished with exit code 0" for index in unit.replica_indices}
