"""The scheduling cycle and built-in plugins, in memory: verdicts, reasons, all-or-nothing."""

from __future__ import annotations

import pytest
from scheduler_fakes import PLUGINS, fill_profile

from skyshift_core.objects import Cluster, ClusterShare, FilterPolicy, Job, ResourceList, TaskStatus
from skyshift_core.scheduler.builtin import FilterPolicyFilter, Placement, ResourcesFit
from skyshift_core.scheduler.cache import SchedulerCache
from skyshift_core.scheduler.cycle import schedule
from skyshift_core.scheduler.framework import (
    Candidate,
    ClusterInfo,
    CycleState,
    FilterPlugin,
    NodeInfo,
    ScorePlugin,
    Status,
    first_feasible_clusters,
    replica_request,
)
from skyshift_core.scheduler.profile import Profile, build_profile




def profile() -> Profile:
    return fill_profile()


def node(name: str, cpus: float, memory: float = 4096, gpus: int = 0) -> NodeInfo:
    resources = ResourceList(cpus=cpus, memory=memory, gpus=gpus)
    return NodeInfo(name, resources, resources)


def cluster(name: str, *nodes: NodeInfo, ready: bool = True, cordoned: bool = False, **labels: str) -> ClusterInfo:
    return ClusterInfo(name, dict(labels), ready, cordoned, list(nodes))


def job(replicas: int = 1, cpus: float = 1, memory: float = 0, labels: dict | None = None, placement: dict | None = None) -> Job:
    spec = {"replicas": replicas, "resources": {"cpus": cpus, "memory": memory}, "placement": placement or {}}
    return Job.model_validate({"kind": "Job", "metadata": {"name": "j", "namespace": "default", "labels": labels or {}}, "spec": spec})


def test_waits_with_reasons_per_cluster():
    # a: 1 CPU free, job wants 2 -> insufficient cpus; b: not ready; c: label mismatch.
    clusters = [
        cluster("a", node("a1", 1)),
        cluster("b", node("b1", 8), ready=False),
        cluster("c", node("c1", 8), site="x"),
    ]
    wanted = job(cpus=2, placement={"filters": [{"name": "site-y", "match_labels": {"site": "y"}}]})
    decision = schedule(profile(), wanted, clusters, [])
    assert decision.placement is None
    # Every cluster fails the placement filter first ("c" has the wrong label, a and b have none),
    # except b whose readiness is checked before placement.
    assert decision.message == "0/3 clusters available: 2 did not match placement filter 'site-y', 1 not ready."


def busy_node(name: str, cpus: float, free_cpus: float, memory: float = 4096, free_memory: float = 4096) -> NodeInfo:
    return NodeInfo(name, ResourceList(cpus=cpus, memory=memory), ResourceList(cpus=free_cpus, memory=free_memory))


def test_insufficient_resource_named():
    clusters = [cluster("a", busy_node("a1", 8, 2)), cluster("b", busy_node("b1", 8, 3))]
    decision = schedule(profile(), job(cpus=4, memory=100), clusters, [])
    assert decision.message == "0/2 clusters available: 2 insufficient cpus."


def test_request_above_capacity_named():
    """A request no node could ever hold is named apart from a shortage that waiting ends."""
    clusters = [cluster("a", node("a1", 2, memory=1024)), cluster("b", busy_node("b1", 8, 1))]
    decision = schedule(profile(), job(cpus=4, memory=2048), clusters, [])
    assert decision.message == (
        "0/2 clusters available: 1 insufficient cpus, 1 too large for every node (cpus 4, memory 2Gi). "
        "No node has more than cpus 8, memory 4Gi."
    )


def test_missing_accelerator_type_named():
    # a has no V100 at all; b has V100s, but both are in use.
    with_v100 = ResourceList(cpus=8, memory=4096, gpus=2, accelerators={"V100": 2})
    busy = ResourceList(cpus=8, memory=4096, gpus=0)
    clusters = [cluster("a", node("a1", 8, gpus=2)), cluster("b", NodeInfo("b1", with_v100, busy))]
    v100_job = Job.model_validate(
        {"kind": "Job", "metadata": {"name": "j", "namespace": "default"}, "spec": {"resources": {"V100": 1}}}
    )

    decision = schedule(profile(), v100_job, clusters, [])

    assert decision.message == "0/2 clusters available: 1 insufficient V100, 1 no V100 accelerators."


def test_accelerator_type_in_other_case_named():
    with_a100 = ResourceList(cpus=8, memory=4096, gpus=2, accelerators={"A100": 2})
    clusters = [cluster("a", NodeInfo("a1", with_a100, with_a100))]
    lower_case_job = Job.model_validate(
        {"kind": "Job", "metadata": {"name": "j", "namespace": "default"}, "spec": {"resources": {"a100": 1}}}
    )

    decision = schedule(profile(), lower_case_job, clusters, [])

    assert decision.placement is None
    assert decision.message == (
        "0/1 clusters available: 1 no a100 accelerators, only A100 (accelerator types are case-sensitive)."
    )


def test_replica_must_fit_on_one_node():
    # Two nodes of 2 CPUs each hold 4 CPUs in total, but a 3-CPU replica fits on neither.
    decision = schedule(profile(), job(cpus=3), [cluster("a", node("a1", 2), node("a2", 2))], [])
    assert decision.placement is None
    assert decision.message == (
        "0/1 clusters available: 1 too large for every node (cpus 3). No node has more than cpus 2."
    )


def test_all_or_nothing():
    # a holds 2 and b holds 1 replica of 2 CPUs: 3 < 4 replicas, so nothing is placed.
    clusters = [cluster("a", node("a1", 4)), cluster("b", node("b1", 2))]
    decision = schedule(profile(), job(replicas=4, cpus=2), clusters, [])
    assert decision.placement is None
    assert decision.message.startswith("2/2 clusters fit the job, but together they hold only 3 of 4 replicas")


def test_job_that_never_fits_says_so():
    # Both clusters are busy now, but even empty they hold 3 replicas of 2 CPUs, not 4.
    clusters = [cluster("a", busy_node("a1", 4, 2)), cluster("b", node("b1", 2))]
    fits_later = schedule(profile(), job(replicas=3, cpus=2), clusters, [])
    never = schedule(profile(), job(replicas=4, cpus=2), clusters, [])

    assert fits_later.message.startswith("2/2 clusters fit the job, but together they hold only 2 of 3 replicas now,")
    assert never.message.startswith(
        "2/2 clusters fit the job, but together they hold only 2 of 4 replicas now. Even with nothing else "
        "running, all 2 clusters would hold at most 3 of the Job's 4, and a Job's replicas are placed all "
        "together: ask for fewer or smaller replicas, or attach more clusters"
    )


def test_placement_message_counts_replicas():
    single = schedule(profile(), job(replicas=1, cpus=1), [cluster("a", node("a1", 4))], [])
    double = schedule(profile(), job(replicas=2, cpus=1), [cluster("a", node("a1", 4))], [])

    assert single.message.startswith("placed 1 replica: ")
    assert double.message.startswith("placed 2 replicas: ")


def test_places_when_capacity_suffices():
    clusters = [cluster("a", node("a1", 4)), cluster("b", node("b1", 2))]
    decision = schedule(profile(), job(replicas=3, cpus=2), clusters, [])
    assert decision.placement == {"a": 2, "b": 1}


def test_cordoned_cluster_skipped():
    clusters = [cluster("a", node("a1", 4), cordoned=True), cluster("b", node("b1", 4))]
    decision = schedule(profile(), job(replicas=1), clusters, [])
    assert decision.placement == {"b": 1}
    assert [v.reasons for v in decision.verdicts if v.cluster == "a"] == [["cordoned"]]


def test_preferences_order_candidates():
    # Preferences 80 (tier=gold) and 20 (region=eu): a matches gold -> 80, b matches eu -> 20.
    clusters = [cluster("a", node("a1", 1), tier="gold"), cluster("b", node("b1", 1), region="eu")]
    placement = {"preferences": [{"match_labels": {"tier": "gold"}, "weight": 80}, {"match_labels": {"region": "eu"}, "weight": 20}]}
    decision = schedule(profile(), job(replicas=1, placement=placement), clusters, [])
    assert decision.placement == {"a": 1}
    scores = {v.cluster: v.scores["placement"] for v in decision.verdicts}
    assert scores == {"a": 80, "b": 20}


@pytest.mark.parametrize(
    "cluster_filter, labels, expected",
    [
        pytest.param({"include": ["b"]}, {"team": "ml"}, {"b": 1}, id="include-matches-job"),
        pytest.param({"exclude": ["a"]}, {"team": "ml"}, {"b": 1}, id="exclude-matches-job"),
        pytest.param({"exclude": ["a"]}, {"team": "web"}, {"a": 1}, id="selector-does-not-match"),
    ],
)
def test_filter_policy(cluster_filter, labels, expected):
    policy = FilterPolicy.model_validate(
        {"kind": "FilterPolicy", "metadata": {"name": "p", "namespace": "default"},
         "spec": {"cluster_filter": cluster_filter, "labels_selector": {"team": "ml"}}}
    )
    clusters = [cluster("a", node("a1", 4)), cluster("b", node("b1", 4))]
    assert schedule(profile(), job(labels=labels), clusters, [policy]).placement == expected


def test_explanation_groups_filtered_clusters():
    clusters = [cluster(f"c{i}", node("n", 1)) for i in range(5)] + [cluster("big", node("n", 8))]
    decision = schedule(profile(), job(cpus=2), clusters, [])
    record = decision.explanation()
    assert record["placement"] == {"big": 1}
    assert record["filtered"] == [
        {"reason": "too large for every node (cpus 2) (resources-fit)", "clusters": ["c0", "c1", "c2", "c3", "c4"]}
    ]
    assert record["feasible"][0]["cluster"] == "big"


def test_unknown_plugin_in_profile_is_error():
    from skyshift_core.errors import PluginError

    def resolve(name):
        if name not in PLUGINS:
            raise PluginError(f"No scheduler plugin named {name!r}; installed: {', '.join(sorted(PLUGINS))}")
        return PLUGINS[name]

    with pytest.raises(PluginError, match="installed: cluster-ready, fill"):
        build_profile({"name": "x", "divide": "spreadd"}, resolve)


def make_cluster(name: str, cpus: float, allocatable: float | None = None, observed: float | None = None) -> Cluster:
    from datetime import datetime, timezone

    free = cpus if allocatable is None else allocatable
    status = {"phase": "READY", "nodes": {"n1": {"capacity": {"cpus": cpus}, "allocatable": {"cpus": free}}}}
    if observed is not None:
        status["observed_time"] = datetime.fromtimestamp(observed, timezone.utc).isoformat()
    return Cluster.model_validate({"kind": "Cluster", "metadata": {"name": name}, "spec": {"manager": "simulated"}, "status": status})


def test_cache_reservations_prevent_overcommit():
    # One cluster of 4 CPUs; each job wants 1 replica x 1 CPU. After 4 assumed placements the
    # cluster is full even though its own report still says 4 CPUs free.
    cache = SchedulerCache()
    cache.set_cluster(make_cluster("a", 4))
    for index in range(4):
        wanted = job()
        wanted.metadata.name = f"j{index}"
        decision = schedule(profile(), wanted, cache.cluster_infos(), [])
        assert decision.placement == {"a": 1}
        cache.assume(wanted, decision.placement, 1)
    extra = job()
    extra.metadata.name = "j-extra"
    assert schedule(profile(), extra, cache.cluster_infos(), []).placement is None


def test_cache_holds_started_replica_until_a_later_report():
    now = [1000.0]
    cache = SchedulerCache(clock=lambda: now[0])
    cache.set_cluster(make_cluster("a", 2))
    placed = job(replicas=2)
    placed.status.placement = {"a": 2}
    placed.status.placement_generation = 1
    cache.set_job(placed)
    assert cache.cluster_infos()[0].nodes[0].allocatable.cpus == 0

    # Replica 0 starts at t=1000; the cluster's report from before that does not count it yet.
    placed.status.clusters = {"a": ClusterShare(replicas=2, tasks={"0": TaskStatus(state="Running")})}
    cache.set_job(placed)
    assert cache.cluster_infos()[0].nodes[0].allocatable.cpus == 0

    # A report observed at t=1001 shows 1 CPU free (the backend counts the running replica);
    # only the unstarted replica is still reserved: 1 - 1 = 0.
    cache.set_cluster(make_cluster("a", 2, allocatable=1, observed=1001.0))
    assert cache.cluster_infos()[0].nodes[0].allocatable.cpus == 0

    # Deleting the Job releases the remaining reservation: 1 CPU as reported.
    cache.remove_job("default", "j")
    assert cache.cluster_infos()[0].nodes[0].allocatable.cpus == 1


def test_cache_settled_replica_stays_released():
    now = [1000.0]
    cache = SchedulerCache(clock=lambda: now[0])
    cache.set_cluster(make_cluster("a", 2))
    placed = job(replicas=1)
    placed.status.placement = {"a": 1}
    placed.status.placement_generation = 1
    placed.status.clusters = {"a": ClusterShare(replicas=1, tasks={"0": TaskStatus(state="Running")})}
    cache.set_job(placed)

    # A report observed at t=1001, after the start was seen at t=1000, counts the running
    # replica: 2 - 1 = 1 CPU free and nothing reserved.
    cache.set_cluster(make_cluster("a", 2, allocatable=1, observed=1001.0))
    assert cache.cluster_infos()[0].nodes[0].allocatable.cpus == 1

    # A later update of the Job (here its phase) must not reserve the started replica again:
    # still 1 CPU free, not 1 - 1 = 0 until the next report.
    now[0] = 1002.0
    placed.status.phase = "Running"
    cache.set_job(placed)
    assert cache.cluster_infos()[0].nodes[0].allocatable.cpus == 1


def test_cache_survives_fresh_capacity_report():
    cache = SchedulerCache()
    cache.set_cluster(make_cluster("a", 4))
    wanted = job(replicas=3)
    cache.assume(wanted, {"a": 3}, 1)
    cache.set_cluster(make_cluster("a", 4))  # A new report that does not yet include the replicas.
    assert cache.cluster_infos()[0].nodes[0].allocatable.cpus == 1


def test_cache_echo_of_own_write_reserves_once():
    cache = SchedulerCache()
    cache.set_cluster(make_cluster("a", 4))
    placed = job(replicas=2)
    cache.assume(placed, {"a": 2}, 1)
    info = cache.cluster_infos()[0]
    assert info.fit_count(replica_request(placed)) == 2

    # The informer shows the scheduler's own write: the same 2 replicas, still reserved once,
    # and the cluster keeps the fit counts it remembered.
    echoed = job(replicas=2)
    echoed.status.placement = {"a": 2}
    echoed.status.placement_generation = 1
    cache.set_job(echoed)
    assert info.nodes[0].allocatable.cpus == 2
    assert info._fits

    # A bigger request per replica replaces the reservation: 4 - 2 x 1.5 = 1 CPU free.
    bigger = job(replicas=2, cpus=1.5)
    bigger.status.placement = {"a": 2}
    bigger.status.placement_generation = 1
    cache.set_job(bigger)
    assert info.nodes[0].allocatable.cpus == 1

    cache.remove_job("default", "j")
    assert info.nodes[0].allocatable.cpus == 4


def test_shortage_reasons_follow_node_changes():
    small = cluster("a", busy_node("a1", 8, 1, free_memory=512))
    wanted = job(cpus=2, memory=1024)
    fit = ResourcesFit()

    first = fit.filter(CycleState(), wanted, small)
    again = fit.filter(CycleState(), wanted, small)
    small.nodes[0].allocatable = ResourceList(cpus=4, memory=512)
    small.invalidate()
    after_change = fit.filter(CycleState(), wanted, small)

    assert first.reasons == again.reasons == ("insufficient cpus", "insufficient memory")
    assert after_change.reasons == ("insufficient memory",)


@pytest.mark.parametrize(
    ("replicas", "expected"),
    [
        # a (1) + b (5) hold 6, so the first two in order are taken.
        pytest.param(6, ["a", "b"], id="first-two-fit"),
        # a (1) with the largest other (5) holds only 6 < 7, so a is skipped: b (5) + c (2) = 7.
        pytest.param(7, ["b", "c"], id="skip-too-small"),
    ],
)
def test_first_feasible_clusters_in_order(replicas, expected):
    ordered = [Candidate(cluster(name, node(f"{name}1", fit)), fit) for name, fit in (("a", 1), ("b", 5), ("c", 2))]

    chosen = first_feasible_clusters(ordered, 2, replicas)

    assert [candidate.name for candidate in chosen] == expected


class CountingFilter(FilterPlugin):
    """Test filter: rejects clusters labelled `bad`, counts its calls, and returns `pre` from pre_filter."""

    name = "counting"

    def __init__(self, pre: Status):
        super().__init__()
        self.pre = pre
        self.calls = 0

    def pre_filter(self, state, job):
        return self.pre

    def filter(self, state, job, cluster):
        self.calls += 1
        return Status.unresolvable("labelled bad") if "bad" in cluster.labels else Status.success()


def profile_with_filter(plugin: FilterPlugin) -> Profile:
    base = profile()
    return Profile(base.name, [*base.filters, plugin], base.scorers, base.divider, base.reservers)


def test_pre_filter_skip_avoids_filter():
    counting = CountingFilter(Status.skip())
    clusters = [cluster("a", node("a1", 4), bad="1"), cluster("b", node("b1", 4))]
    decision = schedule(profile_with_filter(counting), job(), clusters, [])
    # Skipped, the filter neither ran nor rejected the labelled cluster.
    assert counting.calls == 0
    assert [verdict.feasible for verdict in decision.verdicts] == [True, True]

    counting = CountingFilter(Status.success())
    decision = schedule(profile_with_filter(counting), job(), clusters, [])
    assert counting.calls == 2
    assert decision.placement == {"b": 1}


def test_pre_filter_rejection_rejects_all():
    counting = CountingFilter(Status.unresolvable("the job asks for a zone no cluster has", plugin="counting"))
    clusters = [cluster("a", node("a1", 4)), cluster("b", node("b1", 4))]
    decision = schedule(profile_with_filter(counting), job(), clusters, [])
    assert decision.placement is None
    assert counting.calls == 0
    # The Job is rejected once, not once per cluster.
    assert decision.message == "0/2 clusters available: the job asks for a zone no cluster has."
    assert {verdict.plugin for verdict in decision.verdicts} == {"counting"}


def test_pre_filter_error_fails_the_cycle():
    decision = schedule(profile_with_filter(CountingFilter(Status.error("no zone data"))), job(), [cluster("a", node("a1", 4))], [])
    assert decision.error and decision.message == "filter plugin 'counting' failed: no zone data"


def test_placement_skipped_without_rules():
    state = CycleState()
    plain = job()
    assert Placement().pre_filter(state, plain) is Status.skip()
    assert Placement().pre_score(state, plain, []) is Status.skip()
    zero = job(placement={"preferences": [{"weight": 1, "match_labels": {"tier": "gold"}}]})
    assert Placement().pre_score(state, zero, []).ok
    filtered = job(placement={"filters": [{"match_labels": {"tier": "gold"}}]})
    assert Placement().pre_filter(state, filtered).ok
    assert FilterPolicyFilter().pre_filter(state, plain) is Status.skip()


def test_explanation_names_skipped_scores():
    clusters = [cluster("a", node("a1", 4), tier="gold"), cluster("b", node("b1", 4))]
    decision = schedule(profile(), job(), clusters, [])
    assert decision.skipped_scores == ["placement"]
    explanation = decision.explanation()
    assert explanation["skipped_scores"] == ["placement"]
    assert all(entry["scores"] == {} for entry in explanation["feasible"])

    preferring = job(placement={"preferences": [{"weight": 100, "match_labels": {"tier": "gold"}}]})
    decision = schedule(profile(), preferring, clusters, [])
    assert decision.skipped_scores == []
    assert decision.placement == {"a": 1}
    assert decision.explanation()["feasible"][0]["scores"] == {"placement": 100}


class BadPreScore(ScorePlugin):
    name = "bad-pre-score"

    def pre_score(self, state, job, clusters):
        return Status.unschedulable("not a valid answer")

    def score(self, state, job, cluster):
        return 0


def test_pre_score_unexpected_code_fails_cycle():
    base = profile()
    bad = Profile(base.name, base.filters, [(BadPreScore(), 1)], base.divider, base.reservers)
    decision = schedule(bad, job(), [cluster("a", node("a1", 4))], [])
    assert decision.error
    assert decision.message == (
        "score plugin 'bad-pre-score' failed: pre_score returned Unschedulable, expected Success, Skip or Error"
    )


class RaisingScore(ScorePlugin):
    name = "crashy"

    def score(self, state, job, cluster):
        return {"a": 10}[cluster.name]  # A bug: KeyError for every other cluster.


def test_raising_plugin_fails_cycle_with_reason(caplog):
    base = profile()
    crashy = Profile(base.name, base.filters, [(RaisingScore(), 1)], base.divider, base.reservers)
    clusters = [cluster("a", node("a1", 4)), cluster("b", node("b1", 4))]

    decision = schedule(crashy, job(), clusters, [])

    assert decision.error
    assert decision.placement is None
    assert decision.message == (
        "score plugin 'crashy' raised KeyError: 'b'; this is a bug in that plugin: report it to its authors"
    )
    assert "Traceback" in caplog.text


def whole_cpu_node(name: str, cpus: float, free: float | None = None) -> NodeInfo:
    """A node that gives each replica whole CPUs, as Slurm does."""
    free = cpus if free is None else free
    return NodeInfo(name, ResourceList(cpus=cpus, memory=4096), ResourceList(cpus=free, memory=4096), cpu_allocation_unit=1)


@pytest.mark.parametrize(("cpus", "fits"), [(0.5, 2), (0, 2), (1, 2), (1.5, 1), (2, 1), (3, 0)])
def test_whole_cpu_node_rounds_request_up(cpus, fits):
    assert whole_cpu_node("n", 2).fit_count(ResourceList(cpus=cpus)) == fits


def test_fractional_request_placed_as_whole_cpus():
    """Eight replicas of half a CPU need eight CPUs on clusters that allocate whole ones."""
    clusters = [cluster("a", whole_cpu_node("a1", 2)), cluster("b", whole_cpu_node("b1", 2))]

    decision = schedule(profile(), job(replicas=8, cpus=0.5), clusters, [])
    fitting = schedule(profile(), job(replicas=4, cpus=0.5), clusters, [])

    assert decision.placement is None
    assert decision.message.startswith("2/2 clusters fit the job, but together they hold only 4 of 8 replicas")
    assert fitting.placement == {"a": 2, "b": 2}


def test_cache_reserves_whole_cpus():
    cache = SchedulerCache()
    whole = make_cluster("a", 4)
    whole.status.nodes["n1"].cpu_allocation_unit = 1
    cache.set_cluster(whole)

    cache.assume(job(replicas=3, cpus=0.5), {"a": 3}, 1)

    assert cache.cluster_infos()[0].nodes[0].allocatable.cpus == 1


def test_busy_whole_cpu_node_reason():
    decision = schedule(profile(), job(cpus=0.5), [cluster("a", whole_cpu_node("a1", 2, free=0.5))], [])

    assert decision.message == "0/1 clusters available: 1 insufficient cpus."


def test_shortfall_names_replicas_still_to_place():
    """When some replicas are kept where they run, the message counts only those still to place."""
    decision = schedule(profile(), job(replicas=3, cpus=2), [cluster("a", node("a1", 2))], [], replicas=2)

    assert decision.message.startswith(
        "1/1 clusters fit the job, but together they hold only 1 of the 2 replicas still to place now"
    )


def unconfirmed_placement(now: list[float]) -> SchedulerCache:
    """A cache of one 4-CPU cluster, with 3 replicas assumed there by a write that timed out."""
    cache = SchedulerCache(clock=lambda: now[0])
    cache.set_cluster(make_cluster("a", 4))
    placed = job(replicas=3)
    cache.assume(placed, {"a": 3}, 1)
    cache.keep_unconfirmed(placed, 30.0)
    return cache


def test_cache_keeps_unconfirmed_placement_until_seen():
    # A placement write that timed out may have been applied: its replicas stay reserved.
    now = [1000.0]
    cache = unconfirmed_placement(now)
    cache.set_cluster(make_cluster("a", 4))
    assert cache.cluster_infos()[0].nodes[0].allocatable.cpus == 1

    # The informer shows the write: the same reservation, now confirmed.
    seen = job(replicas=3)
    seen.status.placement = {"a": 3}
    seen.status.placement_generation = 1
    now[0] = 1100.0
    cache.set_job(seen)
    assert cache.cluster_infos()[0].nodes[0].allocatable.cpus == 1


def test_cache_unconfirmed_placement_expires():
    now = [1000.0]
    cache = unconfirmed_placement(now)

    # The write was not applied: 30 s later the next update drops the assumption.
    now[0] = 1031.0
    cache.set_job(job(replicas=3))
    assert cache.cluster_infos()[0].nodes[0].allocatable.cpus == 4


def test_cache_forget_after_rejection_releases():
    cache = SchedulerCache()
    cache.set_cluster(make_cluster("a", 4))
    placed = job(replicas=3)
    cache.assume(placed, {"a": 3}, 1)

    cache.forget(placed)

    assert cache.cluster_infos()[0].nodes[0].allocatable.cpus == 4
