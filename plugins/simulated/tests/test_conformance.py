"""The framework's cluster-manager conformance suite run against the simulated backend."""

import pytest
from skyshift_core.testing.conformance import ClusterManagerConformance
from skyshift_simulated import SimulatedClusterManager


class TestSimulatedConformance(ClusterManagerConformance):
    finish_timeout = 10.0

    @pytest.fixture
    async def manager(self):
        config = SimulatedClusterManager.validate_config(
            {"node_count": 1, "node": {"cpus": 4, "memory": "4Gi"}, "run_seconds": 0.2}
        )
        manager = SimulatedClusterManager("conformance", config)
        await manager.start()
        yield manager
        await manager.stop()

    def failing_unit(self):
        # The simulator runs no command; a replica listed in fail_replicas exits with code 1.
        return self.unit(backend={"simulated": {"fail_replicas": [0]}}), 1
