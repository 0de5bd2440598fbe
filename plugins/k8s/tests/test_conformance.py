"""The ClusterManager contract checks from skyshift_core.testing, run on the fake Kubernetes cluster."""

from __future__ import annotations

import pytest
from skyshift_core.testing.conformance import ClusterManagerConformance


class TestKubernetesConformance(ClusterManagerConformance):
    finish_timeout = 20.0

    @pytest.fixture
    async def manager(self, make_manager):
        # A cluster name other than the units' ("conformance"): the manager labels work with its own name.
        return await make_manager("kube")
