"""The framework's cluster-manager conformance suite, run against a real local Slurm cluster."""

from __future__ import annotations

import pytest

from skyshift_core.testing.conformance import ClusterManagerConformance

pytestmark = pytest.mark.slurm_cluster


class TestSlurmConformance(ClusterManagerConformance):
    finish_timeout = 30.0

    @pytest.fixture
    async def manager(self, make_manager):
        # The cluster name differs from the units' ("conformance"), because job names carry the
        # manager's own cluster name.
        return await make_manager("alpha", "cli", name="slurm-conformance")
