"""What the scheduling cycle does with plugins that break their contract, and with reserve plugins.

A plugin that returns the wrong type, places more replicas than asked, or exits the process fails
only its Job's cycle, with a message that names the plugin and what it returned. Reserve plugins
run once the division places every replica, and are unreserved in reverse order when one of them
turns the placement down.
"""

from __future__ import annotations

import logging

import pytest
from scheduler_fakes import fill_profile

from skyshift_core.objects import Job, ResourceList
from skyshift_core.scheduler import cycle
from skyshift_core.scheduler.cycle import schedule
from skyshift_core.scheduler.framework import (
    ClusterInfo,
    DividePlugin,
    FilterPlugin,
    NodeInfo,
    ReservePlugin,
    ScorePlugin,
    Status,
)
from skyshift_core.scheduler.profile import Profile


def node(name: str, cpus: float) -> NodeInfo:
    resources = ResourceList(cpus=cpus, memory=4096)
    return NodeInfo(name, resources, resources)


def clusters() -> list[ClusterInfo]:
    return [ClusterInfo("a", {}, True, False, [node("a1", 4)]), ClusterInfo("b", {}, True, False, [node("b1", 4)])]


def job(replicas: int = 2) -> Job:
    spec = {"replicas": replicas, "resources": {"cpus": 1}}
    return Job.model_validate({"kind": "Job", "metadata": {"name": "j", "namespace": "default"}, "spec": spec})


def with_plugins(
    *, filters=(), scorers=(), divider: DividePlugin | None = None, reservers: tuple[ReservePlugin, ...] = ()
) -> Profile:
    base = fill_profile()
    return Profile(
        base.name, [*base.filters, *filters], list(scorers) or base.scorers, divider or base.divider, list(reservers)
    )


class ReturningFilter(FilterPlugin):
    name = "returning"

    def __init__(self, value):
        super().__init__()
        self.value = value

    def filter(self, state, job, cluster):
        return self.value


class ReturningScore(ScorePlugin):
    name = "returning"

    def __init__(self, value):
        super().__init__()
        self.value = value

    def score(self, state, job, cluster):
        return self.value


class ReturningDivide(DividePlugin):
    name = "returning"

    def __init__(self, value):
        super().__init__()
        self.value = value

    def divide(self, state, job, replicas, candidates):
        return self.value


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        pytest.param(
            with_plugins(filters=[ReturningFilter(True)]),
            "filter plugin 'returning' returned True (bool) from filter for cluster 'a'; expected a Status",
            id="filter-bool",
        ),
        pytest.param(
            with_plugins(filters=[ReturningFilter(Status.skip())]),
            "filter plugin 'returning' returned Skip from filter for cluster 'a'; only pre_filter may return Skip",
            id="filter-skip",
        ),
        pytest.param(
            with_plugins(scorers=[(ReturningScore(99.9), 1)]),
            "score plugin 'returning' gave cluster 'a' the score 99.9 (float); expected an int from 0 to 100",
            id="score-float",
        ),
        pytest.param(
            with_plugins(scorers=[(ReturningScore("50"), 1)]),
            "score plugin 'returning' gave cluster 'a' the score '50' (str); expected an int from 0 to 100",
            id="score-str",
        ),
        pytest.param(
            with_plugins(divider=ReturningDivide(["a", "b"])),
            "divide plugin 'returning' returned ['a', 'b'] (list); expected a dict of cluster name to replica count",
            id="divide-list",
        ),
        pytest.param(
            with_plugins(divider=ReturningDivide({"a": 1.5, "b": 0.5})),
            "divide plugin 'returning' returned 1.5 (float) replicas for cluster 'a'; expected an int",
            id="divide-float",
        ),
        pytest.param(
            with_plugins(divider=ReturningDivide({"a": 2, "b": 2})),
            "divide plugin 'returning' placed 4 replicas, but the cycle asked for 2; a divide plugin places at "
            "most the replicas it is given",
            id="divide-too-many",
        ),
    ],
)
def test_wrong_return_fails_only_the_cycle(profile, expected):
    decision = schedule(profile, job(), clusters(), [])

    assert decision.error
    assert decision.placement is None
    assert decision.message == expected


class ExitingFilter(FilterPlugin):
    """A plugin whose helper library calls sys.exit(), as argparse does on bad input."""

    name = "exiting"

    def filter(self, state, job, cluster):
        raise SystemExit("usage: helper [--zone ZONE]")


def test_system_exit_fails_only_the_cycle():
    decision = schedule(with_plugins(filters=[ExitingFilter()]), job(), clusters(), [])

    assert decision.error
    assert decision.message == (
        "filter plugin 'exiting' raised SystemExit: usage: helper [--zone ZONE]; this is a bug in that plugin: "
        "report it to its authors"
    )


class RecordingReserve(ReservePlugin):
    """Reserves up to `limit` replicas per cluster and records every call in a shared list."""

    def __init__(self, name: str, calls: list, limit: int = 100, raises: bool = False):
        super().__init__()
        self.name = name
        self.calls = calls
        self.limit = limit
        self.raises = raises

    def reserve(self, state, job, placement):
        self.calls.append(("reserve", self.name, dict(placement)))
        if self.raises:
            raise RuntimeError("quota service unreachable")
        over = sorted(cluster for cluster, count in placement.items() if count > self.limit)
        if over:
            return Status.unschedulable(f"at most {self.limit} replicas per cluster, asked for more on {', '.join(over)}")
        return Status.success()

    def unreserve(self, state, job, placement):
        self.calls.append(("unreserve", self.name, dict(placement)))


def test_reserve_plugins_run_in_order_on_a_placement():
    calls: list = []
    first, second = RecordingReserve("first", calls), RecordingReserve("second", calls)

    decision = schedule(with_plugins(reservers=(first, second)), job(replicas=3), clusters(), [])

    assert decision.placement == {"a": 3}
    assert calls == [("reserve", "first", {"a": 3}), ("reserve", "second", {"a": 3})]
    assert decision.reserved == [first, second]

    # The controller calls this when the placement's status write fails.
    decision.unreserve(job(replicas=3))
    assert calls[2:] == [("unreserve", "second", {"a": 3}), ("unreserve", "first", {"a": 3})]


def test_reserve_rejection_unreserves_in_reverse_and_job_waits():
    calls: list = []
    plugins = (RecordingReserve("first", calls), RecordingReserve("quota", calls, limit=2), RecordingReserve("last", calls))

    decision = schedule(with_plugins(reservers=plugins), job(replicas=3), clusters(), [])

    assert decision.placement is None
    assert not decision.error
    assert decision.message == (
        "reserve plugin 'quota' turned down 3 on a: at most 2 replicas per cluster, asked for more on a"
    )
    # Kubernetes unreserves every reserve plugin that was called, the one that refused included, last first.
    assert calls == [
        ("reserve", "first", {"a": 3}),
        ("reserve", "quota", {"a": 3}),
        ("unreserve", "quota", {"a": 3}),
        ("unreserve", "first", {"a": 3}),
    ]


def test_raising_reserve_is_unreserved_with_those_before_it():
    calls: list = []
    plugins = (RecordingReserve("first", calls), RecordingReserve("broken", calls, raises=True))

    decision = schedule(with_plugins(reservers=plugins), job(replicas=1), clusters(), [])

    assert decision.error
    assert decision.message.startswith("reserve plugin 'broken' raised RuntimeError: quota service unreachable")
    assert calls[-2:] == [("unreserve", "broken", {"a": 1}), ("unreserve", "first", {"a": 1})]


class FakeClock:
    """Stands in for the cycle's `time` module: its perf_counter advances only when a plugin advances it."""

    def __init__(self):
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now


class SlowFilter(FilterPlugin):
    """Takes 1.5 s of the fake clock per cluster."""

    name = "slow"

    def __init__(self, clock: FakeClock):
        super().__init__()
        self.clock = clock

    def filter(self, state, job, cluster):
        self.clock.now += 1.5
        return Status.success()


def test_slow_cycle_logged_with_plugin_times(monkeypatch, caplog):
    clock = FakeClock()
    monkeypatch.setattr(cycle, "time", clock)

    with caplog.at_level(logging.WARNING, logger="skyshift_core.scheduler.cycle"):
        decision = schedule(with_plugins(filters=[SlowFilter(clock)]), job(), clusters(), [])

    assert decision.placement == {"a": 2}
    (record,) = [record for record in caplog.records if "took" in record.getMessage()]
    assert record.getMessage().startswith(
        "Scheduling cycle of Job default/j (profile 'test') took 3.00 s: filter plugin 'slow' 3.00 s, "
    )
    assert "a slow one delays every controller and may cost the lease" in record.getMessage()


def test_fast_cycle_not_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="skyshift_core.scheduler.cycle"):
        schedule(with_plugins(), job(), clusters(), [])

    assert not [record for record in caplog.records if "took" in record.getMessage()]


class RaisingFilter(FilterPlugin):
    name = "raising"

    def filter(self, state, job, cluster):
        raise RuntimeError("table of sites is empty")


def test_repeated_failure_logs_traceback_once(caplog):
    # A Job whose cycle is retried on the same plugin bug logs one line per retry after the first.
    failing = job()
    failing.metadata.uid = "uid-of-repeated-failure"

    with caplog.at_level(logging.ERROR, logger="skyshift_core.scheduler.cycle"):
        for _ in range(3):
            schedule(with_plugins(filters=[RaisingFilter()]), failing, clusters(), [])

    records = [record for record in caplog.records if "failed: filter plugin 'raising'" in record.getMessage()]
    assert len(records) == 3
    assert [bool(record.exc_info) for record in records] == [True, False, False]
    assert records[1].getMessage().endswith("(its traceback was logged before)")
