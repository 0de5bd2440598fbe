"""Test plugins shared by the scheduler's tests."""

from __future__ import annotations

from skyshift_core.scheduler.builtin import ClusterReady, FilterPolicyFilter, Placement, ResourcesFit
from skyshift_core.scheduler.framework import DividePlugin
from skyshift_core.scheduler.profile import Profile, build_profile


class FillInOrder(DividePlugin):
    """Test divider: fills candidates in the order given (score, then name) up to their fit."""

    name = "fill"

    def divide(self, state, job, replicas, candidates):
        placement = {}
        for candidate in candidates:
            take = min(candidate.fit_count, replicas - sum(placement.values()))
            if take:
                placement[candidate.name] = take
        return placement


PLUGINS = {
    "cluster-ready": ClusterReady,
    "placement": Placement,
    "filter-policy": FilterPolicyFilter,
    "resources-fit": ResourcesFit,
    "fill": FillInOrder,
}


def fill_profile(name: str = "test") -> Profile:
    """A profile of the built-in filters that divides with FillInOrder."""
    return build_profile({"name": name, "divide": "fill"}, PLUGINS.__getitem__)
