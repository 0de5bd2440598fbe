"""One scheduling cycle for one Job: filter, score, divide, all in memory and free of I/O.

The scheduler controller runs this against its cache and writes the result; `skyshift explain`
shows the Decision this returns.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from skyshift_core.objects import FilterPolicy, Job
from skyshift_core.plugins import describe_error
from skyshift_core.scheduler.builtin import POLICIES_KEY, policies_for
from skyshift_core.scheduler.framework import (
    MAX_SCORE,
    MIN_SCORE,
    Candidate,
    ClusterInfo,
    SUCCESS,
    Code,
    CycleState,
    Plugin,
    Status,
)
from skyshift_core.scheduler.profile import Profile

logger = logging.getLogger(__name__)


@dataclass
class ClusterVerdict:
    cluster: str
    feasible: bool
    reasons: list[str] = field(default_factory=list)
    plugin: str = ""
    scores: dict[str, int] = field(default_factory=dict)
    total: int = 0
    fit_count: int = 0


@dataclass
class Decision:
    """Result of a cycle: the placement (None when the Job must wait), and why."""

    profile: str
    replicas: int
    placement: dict[str, int] | None
    verdicts: list[ClusterVerdict]
    message: str
    error: bool = False
    # Score plugins whose pre_score returned SKIP: they gave no cluster a score in this cycle.
    skipped_scores: list[str] = field(default_factory=list)

    def explanation(self, max_clusters: int = 10) -> dict:
        """A compact, JSON-ready record of this cycle for the Job's status and `skyshift explain`.

        Feasible clusters are listed by score, at most `max_clusters`; filtered ones are grouped by
        reason so the record stays small with hundreds of clusters.
        """
        feasible = sorted((v for v in self.verdicts if v.feasible), key=lambda v: (-v.total, v.cluster))
        filtered: dict[str, list[str]] = {}
        for verdict in self.verdicts:
            if not verdict.feasible:
                key = f"{'; '.join(verdict.reasons)} ({verdict.plugin})"
                filtered.setdefault(key, []).append(verdict.cluster)
        return {
            "profile": self.profile,
            "replicas": self.replicas,
            "message": self.message,
            "placement": self.placement or {},
            "feasible": [
                {"cluster": v.cluster, "fit_count": v.fit_count, "scores": v.scores, "total": v.total}
                for v in feasible[:max_clusters]
            ],
            "feasible_omitted": max(0, len(feasible) - max_clusters),
            "skipped_scores": list(self.skipped_scores),
            "filtered": [{"reason": reason, "clusters": sorted(names)} for reason, names in sorted(filtered.items())],
        }


def summarize(total: int, verdicts: list[ClusterVerdict]) -> str:
    """Kubernetes-style summary: `0/3 clusters available: 2 insufficient cpus, 1 cluster not ready.`"""
    if total == 0:
        return "0/0 clusters available: no cluster is attached; attach one with skyshift apply -f CLUSTER.yaml."
    available = sum(1 for verdict in verdicts if verdict.feasible)
    counts: Counter[str] = Counter()
    for verdict in verdicts:
        if not verdict.feasible:
            counts.update(verdict.reasons)
    parts = [f"{count} {reason}" for reason, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    text = f"{available}/{total} clusters available"
    return f"{text}: {', '.join(parts)}." if parts else f"{text}."


def schedule(
    profile: Profile,
    job: Job,
    clusters: list[ClusterInfo],
    policies: list[FilterPolicy],
    replicas: int | None = None,
    current: dict[str, int] | None = None,
) -> Decision:
    """Place `replicas` (default: all of the Job's) on `clusters`; `current` is the placement the
    Job already holds, which the divide plugin uses to keep decisions stable.

    A plugin that raises fails the cycle with an error Decision that names it, so that the Job
    shows the reason (SchedulerError) instead of waiting without one while the cycle is retried."""
    replicas = job.spec.replicas if replicas is None else replicas
    step = _Step()
    try:
        return _schedule(profile, job, clusters, policies, replicas, current or {}, step)
    except Exception as error:
        logger.exception("Scheduling cycle of Job %s/%s failed in %s", job.metadata.namespace, job.metadata.name, step.name)
        message = f"{step.name} raised {describe_error(error)}; this is a bug in that plugin: report it to its authors"
        return Decision(profile.name, replicas, None, [], message, error=True)


class _Step:
    """The plugin that the scheduling cycle is calling, and its extension point, for the error of a
    plugin that raises. It is set before each call, so it keeps objects, and names are formatted only on error."""

    point = ""
    plugin: Plugin | None = None

    @property
    def name(self) -> str:
        if self.plugin is None:
            return "the scheduling cycle"
        return f"{self.point} plugin {self.plugin.name!r}"


def _schedule(
    profile: Profile,
    job: Job,
    clusters: list[ClusterInfo],
    policies: list[FilterPolicy],
    replicas: int,
    current: dict[str, int],
    step: _Step,
) -> Decision:
    state = CycleState()
    state[POLICIES_KEY] = policies_for(job, policies)

    ordered = sorted(clusters, key=_name)
    # Pre-filter: a plugin with nothing to check for this Job is left out. A plugin that rejects
    # the Job itself rejects every cluster with its reasons.
    filters = []
    step.point = "filter"
    for plugin in profile.filters:
        step.plugin = plugin
        status = plugin.pre_filter(state, job)
        if status.ok:
            filters.append(plugin)
        elif status.code is Code.SKIP:
            continue
        elif status.code is Code.ERROR:
            return _failed(profile, replicas, [], f"filter plugin {plugin.name!r} failed: {'; '.join(status.reasons)}")
        else:
            reasons = list(status.reasons) or [f"rejected by {plugin.name}"]
            verdicts = [ClusterVerdict(cluster.name, False, reasons, status.plugin or plugin.name) for cluster in ordered]
            return Decision(profile.name, replicas, None, verdicts, summarize(len(clusters), verdicts))

    # Filter: a cluster's verdict is the first plugin that rejects it.
    verdicts: list[ClusterVerdict] = []
    feasible: list[ClusterInfo] = []
    for cluster in ordered:
        verdict = ClusterVerdict(cluster.name, True)
        for plugin in filters:
            step.plugin = plugin
            status = plugin.filter(state, job, cluster)
            if status is SUCCESS:
                continue  # The common case, without looking at the status.
            if status.code is Code.ERROR:
                return _failed(profile, replicas, verdicts, f"filter plugin {plugin.name!r} failed: {'; '.join(status.reasons)}")
            if not status.ok:
                verdict.feasible = False
                verdict.reasons = list(status.reasons) or [f"rejected by {plugin.name}"]
                verdict.plugin = status.plugin or plugin.name
                break
        if verdict.feasible:
            step.plugin = None
            verdict.fit_count = state.fit_count(job, cluster)
            feasible.append(cluster)
        verdicts.append(verdict)
    by_name = {verdict.cluster: verdict for verdict in verdicts}

    if not feasible:
        return Decision(profile.name, replicas, None, verdicts, summarize(len(clusters), verdicts))

    # Score: each plugin rates every feasible cluster, normalizes, and is weighted.
    skipped: list[str] = []
    step.point = "score"
    for plugin, weight in profile.scorers:
        step.plugin = plugin
        status = plugin.pre_score(state, job, feasible)
        if status.code is Code.SKIP:
            skipped.append(plugin.name)
            continue
        if not status.ok:
            if status.code is Code.ERROR:
                reasons = "; ".join(status.reasons)
            else:
                reasons = f"pre_score returned {status.code.value}, expected Success, Skip or Error"
            return _failed(profile, replicas, verdicts, f"score plugin {plugin.name!r} failed: {reasons}")
        scores = {cluster.name: plugin.score(state, job, cluster) for cluster in feasible}
        plugin.normalize_scores(state, job, scores)
        plugin_name = plugin.name
        for name, value in scores.items():
            if not MIN_SCORE <= value <= MAX_SCORE:
                message = f"score plugin {plugin_name!r} gave cluster {name!r} the score {value}, outside 0-100"
                return _failed(profile, replicas, verdicts, message)
            verdict = by_name[name]
            verdict.scores[plugin_name] = value
            verdict.total += value * weight

    # Divide among candidates sorted by score, then name.
    candidates = [
        Candidate(cluster, by_name[cluster.name].fit_count, by_name[cluster.name].total, current.get(cluster.name, 0))
        for cluster in feasible
    ]
    candidates.sort(key=lambda candidate: (-candidate.score, candidate.name))
    step.point, step.plugin = "divide", profile.divider
    division = profile.divider.divide(state, job, replicas, candidates)
    division = {name: count for name, count in division.items() if count > 0}
    fits = {candidate.name: candidate.fit_count for candidate in candidates}
    for name, count in division.items():
        if name not in fits or count > fits[name]:
            message = f"divide plugin {profile.divider.name!r} put {count} replicas on {name!r}, which holds {fits.get(name, 0)}"
            return _failed(profile, replicas, verdicts, message)

    placed = sum(division.values())
    if placed < replicas:
        # All or nothing: a partial placement is no placement.
        capacity = sum(candidate.fit_count for candidate in candidates)
        # Replicas kept where they run are not placed again, so the message names the replicas it counts.
        counted = f"{replicas} replicas" if replicas == job.spec.replicas else f"the {replicas} replicas still to place"
        if capacity < replicas:
            message = (
                f"{len(feasible)}/{len(clusters)} clusters fit the job, but together they hold only "
                f"{capacity} of {counted} now, and a Job's replicas are placed all together"
            )
        else:
            message = (
                f"the {profile.divider.name} policy placed only {placed} of {counted} on the "
                f"{len(feasible)} clusters that fit"
            )
        filtered = summarize(len(clusters), verdicts).partition(": ")[2]
        message += f"; filtered out: {filtered}" if filtered else "."
        return Decision(profile.name, replicas, None, verdicts, message, skipped_scores=skipped)
    message = f"placed {replicas} {'replica' if replicas == 1 else 'replicas'}: " + _format(division)
    return Decision(profile.name, replicas, division, verdicts, message, skipped_scores=skipped)


def _name(cluster: ClusterInfo) -> str:
    return cluster.name


def _format(placement: dict[str, int]) -> str:
    return ", ".join(f"{count} on {name}" for name, count in sorted(placement.items()))


def _failed(profile: Profile, replicas: int, verdicts: list[ClusterVerdict], message: str) -> Decision:
    logger.error("Scheduling cycle failed: %s", message)
    return Decision(profile.name, replicas, None, verdicts, message, error=True)


__all__ = ["ClusterVerdict", "Decision", "Status", "schedule", "summarize"]
