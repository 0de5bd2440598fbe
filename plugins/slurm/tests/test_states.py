"""Slurm job states as SkyShift task states, node capacity, and the restart rules."""

from __future__ import annotations

import pytest
from skyshift_slurm.nodes import gpu_gres, is_schedulable, node_resources, parse_gpus
from skyshift_slurm.records import JobRecord, NodeRecord, decode_wait_status
from skyshift_slurm.states import backoff_status, final_status, restart_delay, task_status, wants_restart

from skyshift_core.objects import RestartPolicy


def record(state: str, reason: str = "", exit_status: int | None = 0, signal: int | None = None, **fields) -> JobRecord:
    return JobRecord(
        job_id="12",
        array_job_id="12",
        array_task_id=1,
        name="skyshift.a.k-1.Never.0.0-1",
        state=state,
        reason=reason,
        exit_status=exit_status,
        signal=signal,
        node_list="node1",
        **fields,
    )


# (id, record, expected (state, reason, exit code)).
STATES = [
    ("pending-resources", record("PENDING", "Resources"), ("Pending", "Resources", None)),
    ("pending-priority", record("PENDING", "Priority"), ("Pending", "Priority", None)),
    ("pending-not-yet-scheduled", record("PENDING", ""), ("Pending", "", None)),
    ("configuring", record("CONFIGURING"), ("Pending", "Configuring", None)),
    ("requeued", record("REQUEUED"), ("Pending", "", None)),
    ("running", record("RUNNING"), ("Running", "", None)),
    ("completing", record("COMPLETING"), ("Running", "Completing", None)),
    ("suspended", record("SUSPENDED"), ("Running", "Suspended", None)),
    ("completed", record("COMPLETED"), ("Succeeded", "Completed", 0)),
    ("failed-exit-3", record("FAILED", "NonZeroExitCode", exit_status=3), ("Failed", "Failed", 3)),
    # A kill by signal 9 reads as 128 + 9, as a shell reports it.
    ("failed-killed", record("FAILED", exit_status=None, signal=9), ("Failed", "Failed", 137)),
    ("cancelled", record("CANCELLED", exit_status=None, signal=15), ("Failed", "Cancelled", 143)),
    ("timeout", record("TIMEOUT", "TimeLimit", exit_status=None, signal=15), ("Failed", "Timeout", 143)),
    ("node-fail", record("NODE_FAIL", exit_status=None), ("Failed", "NodeFail", None)),
    ("preempted", record("PREEMPTED", exit_status=0), ("Failed", "Preempted", 0)),
    ("out-of-memory", record("OUT_OF_MEMORY", exit_status=None, signal=9), ("Failed", "OutOfMemory", 137)),
    ("boot-fail", record("BOOT_FAIL", exit_status=None), ("Failed", "BootFail", None)),
    ("deadline", record("DEADLINE", exit_status=None), ("Failed", "Deadline", None)),
    ("unknown-state", record("NEW_STATE"), ("Pending", "New_State", None)),
]


@pytest.mark.parametrize(("slurm", "expected"), [case[1:] for case in STATES], ids=[case[0] for case in STATES])
def test_state_mapped(slurm, expected):
    status = task_status(slurm, restarts=0)
    assert (status.state, status.reason, status.exit_code) == expected
    assert "Slurm job 12_1" in status.message


def test_pending_message_explains_reason():
    status = task_status(record("PENDING", "Resources"), restarts=0)
    assert (
        status.message
        == "Slurm job 12_1 is PENDING: waiting for resources: no node has the requested CPUs, memory or GRES free now"
    )


def test_failed_message_names_exit_code_and_node():
    status = task_status(record("FAILED", exit_status=3), restarts=0)
    assert status.message == "Slurm job 12_1 FAILED with exit code 3 on node1"


def test_timeout_message_says_time_limit():
    status = task_status(record("TIMEOUT", exit_status=None, signal=15), restarts=0)
    assert status.message == "Slurm job 12_1 reached its time limit (TIMEOUT) on node1"


@pytest.mark.parametrize(
    ("status", "decoded"), [(0, (0, None)), (768, (3, None)), (9, (None, 9)), (None, (None, None))]
)
def test_wait_status_decoded(status, decoded):
    assert decode_wait_status(status) == decoded


# ---- restart rules --------------------------------------------------------------------------

NEVER, ON_FAILURE, ALWAYS = RestartPolicy.NEVER, RestartPolicy.ON_FAILURE, RestartPolicy.ALWAYS
# (id, Slurm state, policy, restarts so far, max_restarts, restarts again).
RESTARTS = [
    ("never-after-failure", "FAILED", NEVER, 0, 3, False),
    ("on-failure-after-failure", "FAILED", ON_FAILURE, 0, 3, True),
    ("on-failure-after-timeout", "TIMEOUT", ON_FAILURE, 2, 3, True),
    ("on-failure-at-limit", "FAILED", ON_FAILURE, 3, 3, False),
    ("on-failure-after-success", "COMPLETED", ON_FAILURE, 0, 3, False),
    ("on-failure-with-zero-limit", "OUT_OF_MEMORY", ON_FAILURE, 0, 0, False),
    ("always-after-success", "COMPLETED", ALWAYS, 7, 3, True),
    ("always-after-failure", "NODE_FAIL", ALWAYS, 100, 3, True),
    ("always-not-after-cancel", "CANCELLED", ALWAYS, 0, 3, False),
    ("on-failure-not-after-cancel", "CANCELLED", ON_FAILURE, 0, 3, False),
    ("running-never-restarts", "RUNNING", ALWAYS, 0, 3, False),
]


@pytest.mark.parametrize(
    ("state", "policy", "restarts", "limit", "expected"),
    [case[1:] for case in RESTARTS],
    ids=[case[0] for case in RESTARTS],
)
def test_restart_decided(state, policy, restarts, limit, expected):
    assert wants_restart(record(state), policy, restarts, limit) is expected


# (id, base seconds, restarts so far, seconds the attempt ran, expected delay).
DELAYS = [
    ("first-restart", 10.0, 0, 5, 10.0),  # 10 * 2**0
    ("third-restart", 10.0, 2, 5, 40.0),  # 10 * 2**2
    ("capped", 10.0, 6, 5, 300.0),  # 10 * 2**6 = 640, capped at 300
    ("reset-after-long-run", 10.0, 6, 600, 10.0),  # ran 10 minutes: back to the base delay
    ("zero-base", 0.0, 4, 5, 0.0),
]


@pytest.mark.parametrize(
    ("base", "restarts", "ran", "expected"), [case[1:] for case in DELAYS], ids=[case[0] for case in DELAYS]
)
def test_restart_delay(base, restarts, ran, expected):
    ended = record("FAILED", start_time=1000.0, end_time=1000.0 + ran)
    assert restart_delay(base, restarts, ended) == expected


def test_restart_delay_respects_lower_cap():
    # A cluster that purges jobs after 60 s must requeue within that time.
    assert restart_delay(10.0, 5, record("FAILED"), max_delay=30.0) == 30.0


def test_backoff_status_reports_running():
    status = backoff_status(
        record("FAILED", exit_status=2), restarts=1, max_restarts=3, policy=ON_FAILURE, delay_seconds=20.0
    )
    assert (status.state, status.reason, status.exit_code, status.restarts) == ("Running", "BackOff", 2, 1)
    assert status.message.endswith("; restart 2 of 3 after 20s")


def test_final_status_names_exhausted_limit():
    status = final_status(record("FAILED", exit_status=2), restarts=3, max_restarts=3, policy=ON_FAILURE)
    assert status.state == "Failed"
    assert status.message.endswith("after 3 restarts (max_restarts is 3)")


# ---- node capacity ------------------------------------------------------------------------


def node(name: str = "n1", state: str = "idle", flags: set[str] = frozenset(), **fields) -> NodeRecord:
    values = {"cpus": 8, "memory_mb": 16000, **fields}
    return NodeRecord(name=name, state=state, flags=frozenset(flags), **values)


SCHEDULABLE = [
    ("idle", node(), True),
    ("mixed", node(state="mixed"), True),
    ("allocated", node(state="allocated"), True),
    ("planned", node(state="idle", flags={"planned"}), True),
    ("down", node(state="down"), False),
    ("drained", node(flags={"drain"}), False),
    ("draining", node(state="mixed", flags={"drain"}), False),
    ("fail", node(flags={"fail"}), False),
    ("maint", node(flags={"maint"}), False),
    ("reserved", node(flags={"reserved"}), False),
    ("not-responding", node(flags={"not_responding"}), False),
    ("future", node(state="future"), False),
]


@pytest.mark.parametrize(
    ("record_", "expected"), [case[1:] for case in SCHEDULABLE], ids=[case[0] for case in SCHEDULABLE]
)
def test_node_schedulable(record_, expected):
    assert is_schedulable(record_) is expected


def test_node_allocatable_is_what_is_free():
    # 8 CPUs with 3 allocated leave 5; 64000 MiB with 12000 allocated leave 52000; 4 A100 with 1
    # used leave 3.
    resources = node_resources(
        [
            node(
                "n2",
                state="mixed",
                cpus=8,
                cpus_allocated=3,
                memory_mb=64000,
                memory_allocated_mb=12000,
                tmp_disk_mb=100000,
                gres="gpu:a100:4(S:0-1)",
                gres_used="gpu:a100:1(IDX:0)",
            ),
            node("n3", flags={"drain"}),
        ]
    )

    assert list(resources) == ["n2"]
    capacity, allocatable = resources["n2"].capacity, resources["n2"].allocatable
    assert (capacity.cpus, capacity.memory, capacity.disk, capacity.gpus, capacity.accelerators) == (
        8,
        64000,
        100000,
        4,
        {"A100": 4},
    )
    assert (allocatable.cpus, allocatable.memory, allocatable.gpus, allocatable.accelerators) == (
        5,
        52000,
        3,
        {"A100": 3},
    )


GPU_STRINGS = [
    ("", {}),
    ("(null)", {}),
    ("gpu:4", {"": 4}),
    ("gpu:a100:4(S:0-1),gpu:t4:2", {"a100": 4, "t4": 2}),
    ("gpu:a100:2(S:0,1),shard:8,mps:100", {"a100": 2}),
    ("gpu:a100:0(IDX:N/A)", {"a100": 0}),
]


@pytest.mark.parametrize(("gres", "expected"), GPU_STRINGS, ids=[case[0] or "empty" for case in GPU_STRINGS])
def test_gpus_parsed_from_gres(gres, expected):
    assert parse_gpus(gres) == expected


GRES_REQUESTS = [
    ("no-gpus", 0, {}, set(), None),
    ("untyped", 2, {}, set(), "gpu:2"),
    ("type-as-nodes-spell-it", 2, {"A100": 2}, {"a100"}, "gpu:a100:2"),
    ("type-unknown-to-nodes", 1, {"H100": 1}, {"a100"}, "gpu:H100:1"),
    ("two-types", 3, {"T4": 1, "A100": 2}, {"a100", "t4"}, "gpu:a100:2,gpu:t4:1"),
]


@pytest.mark.parametrize(
    ("gpus", "accelerators", "known", "expected"),
    [case[1:] for case in GRES_REQUESTS],
    ids=[case[0] for case in GRES_REQUESTS],
)
def test_gres_request(gpus, accelerators, known, expected):
    assert gpu_gres(gpus, accelerators, known) == expected
