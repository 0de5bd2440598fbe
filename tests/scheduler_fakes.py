"""Test plugins shared by the scheduler's tests."""

from __future__ import annotations

from skyshift_core.scheduler.framework import DividePlugin


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
