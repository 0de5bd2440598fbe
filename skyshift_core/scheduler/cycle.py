"""One scheduling cycle for one Job: filter, score, divide, all in memory and free of I/O.

The scheduler controller runs this against its cache and writes the result; `skyshift explain`
shows the Decision this returns.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from skyshift_core.objects import FilterPolicy, Job
from skyshift_core.objects.resources import ResourceList
from skyshift_core.plugins import describe_error
from skyshift_core.scheduler.builtin import POLICIES_KEY, format_amount, policies_for
from skyshift_core.scheduler.framework import (
    MAX_SCORE,
    MIN_SCORE,
    Candidate,
    ClusterInfo,
    SUCCESS,
    Code,
    CycleState,
    Plugin,
    ReservePlugin,
    Status,
)
from skyshift_core.scheduler.profile import Profile

logger = logging.getLogger(__name__)

# A cycle slower than this is logged with the time each plugin took. Plugins run on the controller
# manager's event loop, so a slow cycle holds up every controller and the renewal of its lease.
SLOW_CYCLE_SECONDS = 1.0


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
    # The cycle's state and the reserve plugins that reserved the placement, for `unreserve` when
    # the placement cannot be written.
    state: CycleState | None = None
    reserved: list[ReservePlugin] = field(default_factory=list)

    def unreserve(self, job: Job) -> None:
        """Undo the reservations of this placement, last reserve plugin first; an error is logged, not raised."""
        unreserve_all(self.reserved, self.state, job, self.placement or {})
        self.reserved = []

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


def _largest_node(request: ResourceList, clusters: list[ClusterInfo]) -> str:
    """Describe, for each resource in `request`, the largest amount of it on any one node."""
    labels = [label for label in ("cpus", "memory", "disk", "gpus") if getattr(request, label) > 0] or ["cpus"]
    nodes = [node for cluster in clusters for node in cluster.nodes]
    largest = []
    for label in labels:
        amount = max((getattr(node.capacity, label) for node in nodes), default=0)
        largest.append(f"{label} {format_amount(label, amount)}")
    return ", ".join(largest)


def summarize(total: int, verdicts: list[ClusterVerdict]) -> str:
    """Kubernetes-style summary: `0/3 clusters available: 2 insufficient cpus, 1 not ready.`"""
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
    started = time.perf_counter()
    try:
        return _schedule(profile, job, clusters, policies, replicas, current or {}, step)
    except (Exception, SystemExit) as error:
        # SystemExit too: a helper library that calls sys.exit() must not stop the controller manager.
        message = f"{step.name} raised {describe_error(error)}; this is a bug in that plugin: report it to its authors"
        _log_failure(job, message)
        unreserve_all(step.reserved, step.state, job, step.placement)
        return Decision(profile.name, replicas, None, [], message, error=True)
    finally:
        elapsed = time.perf_counter() - started
        if elapsed > SLOW_CYCLE_SECONDS:
            step.report_slow(job, profile, elapsed)


# Failures whose traceback was logged, by Job and message, so that a Job whose cycle is retried on
# the same plugin bug logs the traceback once and then one line per retry. The oldest are forgotten.
_LOGGED_FAILURES: OrderedDict[tuple, None] = OrderedDict()
_MAX_LOGGED_FAILURES = 1024


def _log_failure(job: Job, message: str) -> None:
    """Log a cycle's plugin failure; with its traceback the first time for this Job and message."""
    metadata = job.metadata
    key = (metadata.namespace, metadata.name, metadata.uid, message)
    first = key not in _LOGGED_FAILURES
    if first:
        _LOGGED_FAILURES[key] = None
        if len(_LOGGED_FAILURES) > _MAX_LOGGED_FAILURES:
            _LOGGED_FAILURES.popitem(last=False)
    logger.error(
        "Scheduling cycle of Job %s/%s failed: %s%s",
        metadata.namespace, metadata.name, message, "" if first else " (its traceback was logged before)",
        exc_info=first,
    )  # fmt: skip


def unreserve_all(plugins: list[ReservePlugin], state: CycleState | None, job: Job, placement: dict[str, int]) -> None:
    """Call `unreserve` of each plugin, the last first, as Kubernetes does; log what raises and go on."""
    for plugin in reversed(plugins):
        try:
            plugin.unreserve(state, job, dict(placement))
        except (Exception, SystemExit):
            logger.exception(
                "reserve plugin %r raised in unreserve for Job %s/%s; this is a bug in that plugin",
                plugin.name, job.metadata.namespace, job.metadata.name,
            )  # fmt: skip


class _Step:
    """The plugin that the scheduling cycle is calling, and its extension point, for the error of a
    plugin that raises. It is set before each call, so it keeps objects, and names are formatted only on error.
    It also keeps the time each plugin took, for the log of a slow cycle, and the reservations made so far."""

    point = ""
    plugin: Plugin | None = None
    state: CycleState | None = None

    def __init__(self) -> None:
        self.seconds: list[tuple[str, Plugin | None, float]] = []
        self.reserved: list[ReservePlugin] = []
        self.placement: dict[str, int] = {}

    @property
    def name(self) -> str:
        if self.plugin is None:
            return "the scheduling cycle"
        return f"{self.point} plugin {self.plugin.name!r}"

    def timed(self, started: float) -> None:
        """Record the time since `started` for the current plugin."""
        self.seconds.append((self.point, self.plugin, time.perf_counter() - started))

    def report_slow(self, job: Job, profile: Profile, elapsed: float) -> None:
        slowest = sorted(self.seconds, key=lambda item: -item[2])[:3]
        plugins = ", ".join(
            f"{point} plugin {plugin.name if plugin else '?'!r} {seconds:.2f} s" for point, plugin, seconds in slowest
        )
        plugins = plugins or "no plugin was timed"
        logger.warning(
            "Scheduling cycle of Job %s/%s (profile %r) took %.2f s: %s. Plugins run on the controller manager's "
            "event loop, so a slow one delays every controller and may cost the lease; a plugin must work "
            "from memory, in well under a millisecond per cluster",
            job.metadata.namespace, job.metadata.name, profile.name, elapsed, plugins,
        )  # fmt: skip


def _schedule(
    profile: Profile,
    job: Job,
    clusters: list[ClusterInfo],
    policies: list[FilterPolicy],
    replicas: int,
    current: dict[str, int],
    step: _Step,
) -> Decision:
    state = step.state = CycleState()
    state[POLICIES_KEY] = policies_for(job, policies)

    ordered = sorted(clusters, key=_name)
    # Pre-filter: a plugin with nothing to check for this Job is left out. A plugin that rejects
    # the Job itself rejects every cluster with its reasons.
    filters = []
    step.point = "filter"
    for plugin in profile.filters:
        step.plugin = plugin
        started = time.perf_counter()
        status = plugin.pre_filter(state, job)
        step.timed(started)
        if status is SUCCESS:
            filters.append(plugin)
            continue
        if not isinstance(status, Status):
            return _failed(profile, replicas, [], _returned(step, "pre_filter", status, "a Status"))
        if status.ok:
            filters.append(plugin)
        elif status.code is Code.SKIP:
            continue
        elif status.code is Code.ERROR:
            return _failed(profile, replicas, [], f"filter plugin {plugin.name!r} failed: {'; '.join(status.reasons)}")
        else:
            # The Job itself is rejected: its reason is given once, not once per cluster, as Kubernetes
            # reports a PreFilter rejection.
            reasons = list(status.reasons) or [f"rejected by {plugin.name}"]
            verdicts = [ClusterVerdict(cluster.name, False, reasons, status.plugin or plugin.name) for cluster in ordered]
            message = f"0/{len(clusters)} clusters available: {'; '.join(reasons)}."
            return Decision(profile.name, replicas, None, verdicts, message)

    # Filter: each plugin looks at the clusters that the plugins before it kept, so a cluster's
    # verdict is the first plugin that rejects it.
    rejected: dict[str, ClusterVerdict] = {}
    remaining = ordered
    for plugin in filters:
        step.plugin = plugin
        started = time.perf_counter()
        check = plugin.filter
        passed = []
        for cluster in remaining:
            status = check(state, job, cluster)
            if status is SUCCESS:
                passed.append(cluster)  # The common case, without looking at the status.
                continue
            if not isinstance(status, Status):
                return _failed(profile, replicas, [], _returned(step, "filter", status, "a Status", cluster.name))
            if status.ok:
                passed.append(cluster)
            elif status.code is Code.ERROR:
                message = f"filter plugin {plugin.name!r} failed: {'; '.join(status.reasons)}"
                return _failed(profile, replicas, [], message)
            elif status.code is Code.SKIP:
                message = f"{step.name} returned Skip from filter for cluster {cluster.name!r}; "
                message += "only pre_filter may return Skip"
                return _failed(profile, replicas, [], message)
            else:
                reasons = list(status.reasons) or [f"rejected by {plugin.name}"]
                rejected[cluster.name] = ClusterVerdict(cluster.name, False, reasons, status.plugin or plugin.name)
        remaining = passed
        step.timed(started)

    step.plugin = None
    verdicts: list[ClusterVerdict] = []
    for cluster in ordered:
        verdict = rejected.get(cluster.name)
        if verdict is None:
            verdict = ClusterVerdict(cluster.name, True, fit_count=state.fit_count(job, cluster))
        verdicts.append(verdict)
    feasible = remaining
    by_name = {verdict.cluster: verdict for verdict in verdicts}

    if not feasible:
        message = summarize(len(clusters), verdicts)
        if any(reason.startswith("too large for every node") for verdict in verdicts for reason in verdict.reasons):
            message += f" No node has more than {_largest_node(state.request(job), clusters)}."
        return Decision(profile.name, replicas, None, verdicts, message)

    # Score: each plugin rates every feasible cluster, normalizes, and is weighted.
    skipped: list[str] = []
    step.point = "score"
    for plugin, weight in profile.scorers:
        step.plugin = plugin
        started = time.perf_counter()
        status = plugin.pre_score(state, job, feasible)
        if status is not SUCCESS:
            if not isinstance(status, Status):
                return _failed(profile, replicas, verdicts, _returned(step, "pre_score", status, "a Status"))
            if status.code is Code.SKIP:
                skipped.append(plugin.name)
                step.timed(started)
                continue
            if not status.ok:
                if status.code is Code.ERROR:
                    reasons = "; ".join(status.reasons)
                else:
                    reasons = f"pre_score returned {status.code.value}, expected Success, Skip or Error"
                return _failed(profile, replicas, verdicts, f"score plugin {plugin.name!r} failed: {reasons}")
        scores = {cluster.name: plugin.score(state, job, cluster) for cluster in feasible}
        plugin.normalize_scores(state, job, scores)
        step.timed(started)
        plugin_name = plugin.name
        for name, value in scores.items():
            if not isinstance(value, int) or isinstance(value, bool):
                message = (
                    f"score plugin {plugin_name!r} gave cluster {name!r} the score {value!r} "
                    f"({type(value).__name__}); expected an int from {MIN_SCORE} to {MAX_SCORE}"
                )
                return _failed(profile, replicas, verdicts, message)
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
    started = time.perf_counter()
    division = profile.divider.divide(state, job, replicas, candidates)
    step.timed(started)
    problem = _check_division(division, replicas, {candidate.name: candidate.fit_count for candidate in candidates})
    if problem:
        return _failed(profile, replicas, verdicts, f"divide plugin {profile.divider.name!r} {problem}")
    division = {name: count for name, count in division.items() if count > 0}

    placed = sum(division.values())
    if placed < replicas:
        # All or nothing: a partial placement is no placement.
        capacity = sum(candidate.fit_count for candidate in candidates)
        # Replicas kept where they run are not placed again, so the message names the replicas it counts.
        counted = f"{replicas} replicas" if replicas == job.spec.replicas else f"the {replicas} replicas still to place"
        request = state.request(job)
        ever = sum(node.fit_count(request, empty=True) for cluster in clusters for node in cluster.nodes)
        if ever < job.spec.replicas:
            # Waiting cannot help: even with nothing else running, the clusters hold fewer.
            attached = f"all {len(clusters)} clusters" if len(clusters) > 1 else "the one cluster"
            message = (
                f"{len(feasible)}/{len(clusters)} clusters fit the job, but together they hold only "
                f"{capacity} of {counted} now. Even with nothing else running, {attached} would hold at most "
                f"{ever} of the Job's {job.spec.replicas}, and a Job's replicas are placed all together: ask "
                "for fewer or smaller replicas, or attach more clusters"
            )
        elif capacity < replicas:
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

    # Reserve: each plugin may claim the placement or turn it down; a refusal undoes the claims.
    step.point, step.placement = "reserve", division
    for plugin in profile.reservers:
        step.plugin = plugin
        step.reserved.append(plugin)
        started = time.perf_counter()
        status = plugin.reserve(state, job, dict(division))
        step.timed(started)
        if status is SUCCESS or (isinstance(status, Status) and status.ok):
            continue
        unreserve_all(step.reserved, state, job, division)
        step.reserved = []
        if not isinstance(status, Status):
            return _failed(profile, replicas, verdicts, _returned(step, "reserve", status, "a Status"))
        reasons = "; ".join(status.reasons) or "no reason given"
        if status.code in (Code.ERROR, Code.SKIP):
            message = f"reserve plugin {plugin.name!r} failed ({status.code.value}): {reasons}"
            return _failed(profile, replicas, verdicts, message)
        message = f"reserve plugin {plugin.name!r} turned down {_format(division)}: {reasons}"
        return Decision(profile.name, replicas, None, verdicts, message, skipped_scores=skipped)

    message = f"placed {replicas} {'replica' if replicas == 1 else 'replicas'}: " + _format(division)
    return Decision(
        profile.name, replicas, division, verdicts, message, skipped_scores=skipped, state=state, reserved=step.reserved
    )


def _returned(step: _Step, method: str, value: object, expected: str, cluster: str | None = None) -> str:
    """Describe a plugin's return value of the wrong type."""
    where = f" for cluster {cluster!r}" if cluster else ""
    return f"{step.name} returned {value!r} ({type(value).__name__}) from {method}{where}; expected {expected}"


def _check_division(division: object, replicas: int, fits: dict[str, int]) -> str | None:
    """Return what is wrong with a divide plugin's result, or None."""
    if not isinstance(division, dict):
        return f"returned {division!r} ({type(division).__name__}); expected a dict of cluster name to replica count"
    for name, count in division.items():
        if not isinstance(count, int) or isinstance(count, bool):
            return f"returned {count!r} ({type(count).__name__}) replicas for cluster {name!r}; expected an int"
        if count > 0 and (name not in fits or count > fits[name]):
            return f"put {count} replicas on {name!r}, which holds {fits.get(name, 0)}"
    placed = sum(count for count in division.values() if count > 0)
    if placed > replicas:
        return (
            f"placed {placed} replicas, but the cycle asked for {replicas}; a divide plugin places at most the "
            "replicas it is given"
        )
    return None


def _name(cluster: ClusterInfo) -> str:
    return cluster.name


def _format(placement: dict[str, int]) -> str:
    return ", ".join(f"{count} on {name}" for name, count in sorted(placement.items()))


def _failed(profile: Profile, replicas: int, verdicts: list[ClusterVerdict], message: str) -> Decision:
    logger.error("Scheduling cycle failed: %s", message)
    return Decision(profile.name, replicas, None, verdicts, message, error=True)


__all__ = ["ClusterVerdict", "Decision", "Status", "schedule", "summarize"]
