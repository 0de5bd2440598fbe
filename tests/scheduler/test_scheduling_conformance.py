"""The scheduling plugin conformance suites themselves: they call plugins as a cycle does, and
they catch plugins that break the contract."""

from __future__ import annotations

import pytest

from skyshift_core.scheduler.framework import SKIP, SUCCESS, FilterPlugin, ReservePlugin, ScorePlugin, Status
from skyshift_core.testing.conformance import (
    FilterPluginConformance,
    ReservePluginConformance,
    ScorePluginConformance,
    sample_job,
)

ANNOTATION = "example.org/require-tier"


def tier_job(tier: str | None):
    job = sample_job()
    if tier is not None:
        job.metadata.annotations[ANNOTATION] = tier
    return job


class RequireTier(FilterPlugin, ScorePlugin):
    """Keeps clusters whose `tier` label is the one a Job's annotation requests, in the PreFilter style
    of Kubernetes: pre_filter reads the annotation once, and filter and score read it from the state."""

    name = "require-tier"

    def pre_filter(self, state, job):
        tier = job.metadata.annotations.get(ANNOTATION)
        if tier is None:
            return SKIP
        state[self.name] = tier
        return SUCCESS

    def filter(self, state, job, cluster):
        tier = state[self.name]  # A KeyError if filter ran without its pre_filter.
        return SUCCESS if cluster.labels.get("tier") == tier else Status.unresolvable(f"tier is not {tier}")

    def pre_score(self, state, job, clusters):
        return self.pre_filter(state, job)

    def score(self, state, job, cluster):
        return 100 if cluster.labels.get("tier") == state[self.name] else 0


class RequireTierSuite(FilterPluginConformance, ScorePluginConformance):
    plugin_class = RequireTier

    def jobs(self):
        return [tier_job(None), tier_job("gold")]


@pytest.mark.parametrize(
    "check",
    [
        "test_pre_filter_returns_status",
        "test_filter_returns_status",
        "test_pre_score_returns_success_skip_or_error",
        "test_scores_within_range_after_normalization",
    ],
)
def test_pre_hook_state_reaches_plugin(check):
    getattr(RequireTierSuite(), check)()


class SkippingFilter(FilterPlugin):
    name = "skipping"

    def filter(self, state, job, cluster):
        return SKIP


class SkippingFilterSuite(FilterPluginConformance):
    plugin_class = SkippingFilter


def test_skip_from_filter_fails():
    with pytest.raises(AssertionError, match="filter returned SKIP, which only pre_filter may return"):
        SkippingFilterSuite().test_filter_returns_status()


class FloatScore(ScorePlugin):
    name = "float-score"

    def score(self, state, job, cluster):
        return 99.9


class FloatScoreSuite(ScorePluginConformance):
    plugin_class = FloatScore


def test_float_score_fails():
    with pytest.raises(AssertionError, match="scores must be ints after normalize_scores"):
        FloatScoreSuite().test_scores_within_range_after_normalization()


class Quota(ReservePlugin):
    """Counts replicas per cluster; `strict` makes unreserve fail on what was not reserved."""

    name = "quota"
    strict = False

    def __init__(self, args=None):
        super().__init__(args)
        self.held: dict[str, int] = {}

    def reserve(self, state, job, placement):
        if job.metadata.uid in self.held:
            return SUCCESS
        self.held[job.metadata.uid] = sum(placement.values())
        return SUCCESS

    def unreserve(self, state, job, placement):
        if self.strict:
            del self.held[job.metadata.uid]
        else:
            self.held.pop(job.metadata.uid, None)


class StrictQuota(Quota):
    strict = True


class QuotaSuite(ReservePluginConformance):
    plugin_class = Quota


class StrictQuotaSuite(ReservePluginConformance):
    plugin_class = StrictQuota


@pytest.mark.parametrize("check", ["test_reserve_returns_status", "test_unreserve_is_idempotent"])
def test_reserve_suite_passes_idempotent_plugin(check):
    getattr(QuotaSuite(), check)()


def test_reserve_suite_catches_unreserve_that_fails_on_repeat():
    with pytest.raises(KeyError):
        StrictQuotaSuite().test_unreserve_is_idempotent()
