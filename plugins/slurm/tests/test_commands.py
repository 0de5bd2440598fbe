"""Building Slurm command lines and parsing their output, on output recorded from Slurm 22.05.8,
and the identity that job names carry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from skyshift_slurm import commands
from skyshift_slurm.naming import (
    MAX_ARRAY_TASKS,
    MAX_JOB_NAME_LENGTH,
    JobIdentity,
    array_spec,
    expand_array_tasks,
    format_ranges,
    job_name,
    parse_job_name,
    parse_ranges,
    plan_arrays,
)
from skyshift_slurm.records import RecordSource, SubmitRequest

from skyshift_core.objects import RestartPolicy

# ---- Job names ----------------------------------------------------------------------------


def test_job_name_round_trip():
    name = job_name("site-a", "0c9f2b1e-3", RestartPolicy.ON_FAILURE, 2, [0, 1, 2, 5])

    assert name == "skyshift.site-a.0c9f2b1e-3.OnFailure.2.0-2,5"
    assert parse_job_name(name, "site-a") == JobIdentity(
        "site-a", "0c9f2b1e-3", RestartPolicy.ON_FAILURE, 2, (0, 1, 2, 5)
    )


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("skyshift.site-b.key-1.Never.0.0", id="other-cluster"),
        pytest.param("skyshift.site-a-2.key-1.Never.0.0", id="cluster-with-same-prefix"),
        pytest.param("train.sh", id="user-job"),
        pytest.param("skyshift.site-a.key-1.Sometimes.0.0", id="unknown-policy"),
        pytest.param("skyshift.site-a.key-1.Never.x.0", id="attempt-not-a-number"),
        pytest.param("skyshift.site-a.key-1.Never.0.3-1", id="descending-range"),
        pytest.param("skyshift.site-a.key.1.Never.0.0", id="dot-in-key"),
    ],
)
def test_job_name_of_other_jobs_ignored(name):
    assert parse_job_name(name, "site-a") is None


def test_replica_of_task_maps_position_to_index():
    identity = JobIdentity("a", "k", RestartPolicy.NEVER, 0, (3, 5, 8))
    assert [identity.replica_of_task(task) for task in (0, 1, 2, 3)] == [3, 5, 8, None]


RANGES = [
    ([0], "0"),
    ([0, 1, 2], "0-2"),
    ([0, 1, 2, 5, 7, 8], "0-2,5,7-8"),
    ([3, 4], "3-4"),
    ([1, 3, 5], "1,3,5"),
]


@pytest.mark.parametrize(("indices", "text"), RANGES, ids=[case[1] for case in RANGES])
def test_ranges_formatted_and_parsed(indices, text):
    assert format_ranges(indices) == text
    assert parse_ranges(text) == tuple(indices)


@pytest.mark.parametrize("text", ["", "a", "1-", "3-1", "1,1", "2,1", "-1"])
def test_ranges_rejected(text):
    with pytest.raises(ValueError):
        parse_ranges(text)


@given(st.sets(st.integers(min_value=0, max_value=5000), min_size=1))
def test_ranges_round_trip(indices):
    ordered = sorted(indices)
    assert parse_ranges(format_ranges(ordered)) == tuple(ordered)


@given(st.sets(st.integers(min_value=0, max_value=30000), min_size=1, max_size=2500))
def test_plan_arrays_covers_share_within_limits(indices):
    chunks = plan_arrays("site-a", "0c9f2b1e-1b1a-4c53-9d43-5c5d0f8f8a11-12", RestartPolicy.ALWAYS, 0, list(indices))

    assert [index for chunk in chunks for index in chunk] == sorted(indices)
    for chunk in chunks:
        assert len(chunk) <= MAX_ARRAY_TASKS
        name = job_name("site-a", "0c9f2b1e-1b1a-4c53-9d43-5c5d0f8f8a11-12", RestartPolicy.ALWAYS, 0, chunk)
        assert len(name) <= MAX_JOB_NAME_LENGTH


def test_plan_arrays_keeps_contiguous_share_in_one_array():
    assert plan_arrays("a", "k-1", RestartPolicy.NEVER, 0, [4, 2, 3]) == [(2, 3, 4)]


def test_plan_arrays_splits_at_max_array_tasks():
    # 2500 replicas: 1000 + 1000 + 500 tasks.
    chunks = plan_arrays("a", "k-1", RestartPolicy.NEVER, 0, list(range(2500)))
    assert [len(chunk) for chunk in chunks] == [1000, 1000, 500]


@pytest.mark.parametrize(
    ("text", "tasks"),
    [("5", [5]), ("0-3,7", [0, 1, 2, 3, 7]), ("0-9:4", [0, 4, 8]), ("0-15%4", list(range(16))), ("[2-3]", [2, 3])],
)
def test_array_tasks_expanded(text, tasks):
    assert expand_array_tasks(text) == tasks


def test_array_spec():
    assert (array_spec(1), array_spec(3)) == ("0", "0-2")


# ---- squeue -------------------------------------------------------------------------------


def test_squeue_command_lists_own_jobs_with_ended_ones():
    command = commands.squeue_command()
    assert command[:5] == ["squeue", "--me", "--states=all", "--array", "--noheader"]
    assert command[5].startswith("--Format=JobID:|,ArrayJobID:|,ArrayTaskID:|,State:|")
    assert command[5].endswith(",Name:|")


# Recorded with SLURM_TIME_FORMAT=%s on Slurm 22.05.8; the last line is another user's job
# whose name contains the separator.
SQUEUE_OUTPUT = """\
19|19|0|PENDING|Resources|0|0|N/A|N/A||skyshift.c1.uid-1.Never.0.0-4|
16|14|1|FAILED|NonZeroExitCode|1024|0|1796420066|1796420067|exp-a-node1|resttest|
24|24|N/A|TIMEOUT|TimeLimit|15|0|1796420144|1796420205|exp-a-node1|wrap|
12|12|1|PENDING|BeginTime|512|1|1796420500|N/A||rq|
30|30|N/A|RUNNING|None|0|0|1796420500|N/A|exp-a-node1|a|b|
"""


def test_squeue_output_parsed():
    records = commands.parse_squeue(SQUEUE_OUTPUT)

    assert [(record.task_id, record.state, record.reason) for record in records] == [
        ("19_0", "PENDING", "Resources"),
        ("14_1", "FAILED", "NonZeroExitCode"),
        ("24", "TIMEOUT", "TimeLimit"),
        ("12_1", "PENDING", "BeginTime"),
        ("30", "RUNNING", ""),
    ]
    # exit_code is a wait status: 1024 is exit status 4, 15 is SIGTERM, 512 exit status 2.
    assert [(record.exit_status, record.signal) for record in records] == [
        (0, None),
        (4, None),
        (None, 15),
        (2, None),
        (0, None),
    ]
    assert records[0].name == "skyshift.c1.uid-1.Never.0.0-4"
    assert records[4].name == "a|b"
    assert records[3].restart_count == 1
    assert (records[1].start_time, records[1].end_time) == (1796420066.0, 1796420067.0)
    assert records[0].start_time is None
    assert {record.source for record in records} == {RecordSource.QUEUE}


def test_squeue_short_lines_skipped():
    assert commands.parse_squeue("garbage\n\n1|2|3\n") == []


# ---- sinfo --------------------------------------------------------------------------------


# Recorded on Slurm 22.05.8, plus two nodes with GRES as sinfo prints them (gpu:type:count(S:...)).
SINFO_OUTPUT = """\
node1|idle|0/2/0/2|1024|0|0|(null)|(null)|debug*|
node2|mixed|3/5/0/8|64000|12000|100000|gpu:a100:4(S:0-1)|gpu:a100:1(IDX:0)|debug*|
node2|mixed|3/5/0/8|64000|12000|100000|gpu:a100:4(S:0-1)|gpu:a100:1(IDX:0)|gpu|
node3|idle+drain|0/0/8/8|64000|0|0|(null)|(null)|debug*|
node4|idle|0/4/0/4|8000|0|0|(null)|(null)|long|
"""


def test_sinfo_output_parsed_for_default_partition():
    nodes = commands.parse_sinfo(SINFO_OUTPUT, partition=None)

    assert [node.name for node in nodes] == ["node1", "node2", "node3"]
    node2 = nodes[1]
    assert (node2.cpus, node2.cpus_allocated, node2.cpus_other) == (8, 3, 0)
    assert (node2.memory_mb, node2.memory_allocated_mb, node2.tmp_disk_mb) == (64000, 12000, 100000)
    assert (node2.gres, node2.gres_used) == ("gpu:a100:4(S:0-1)", "gpu:a100:1(IDX:0)")
    # Only rows of the default partition count, so node2's row for partition gpu is left out.
    assert node2.partitions == ("debug",)
    assert (nodes[2].state, nodes[2].flags) == ("idle", frozenset({"drain"}))
    assert nodes[0].gres == ""


def test_sinfo_output_parsed_for_named_partition():
    nodes = commands.parse_sinfo(SINFO_OUTPUT, partition="long")
    assert "node4" in [node.name for node in nodes]


def test_sinfo_command_filters_partition():
    assert commands.sinfo_command("gpu")[-1] == "--partition=gpu"
    assert not any(part.startswith("--partition") for part in commands.sinfo_command(None))


NODE_STATES = [
    ("idle", "idle", set()),
    ("IDLE", "idle", set()),
    ("mixed+drain", "mixed", {"drain"}),
    ("idle+not_responding", "idle", {"not_responding"}),
    ("idle*", "idle", {"not_responding"}),
    ("down*", "down", {"not_responding"}),
    ("idle~", "idle", {"powered_down"}),
    ("allocated+reserved", "allocated", {"reserved"}),
]


@pytest.mark.parametrize(("text", "state", "flags"), NODE_STATES, ids=[case[0] for case in NODE_STATES])
def test_node_state_split(text, state, flags):
    assert commands.split_node_state(text) == (state, frozenset(flags))


# ---- jobcomp ------------------------------------------------------------------------------


# Recorded jobcomp/filetxt lines of Slurm 22.05.8 (a requeued array task, then its final end);
# the WorkDir of the second line has a space.
JOBCOMP_TEXT = """\
JobId=12 UserId=root(0) GroupId=root(0) Name=skyshift.a.k-1.OnFailure.0.0-1 JobState=PENDING Partition=debug TimeLimit=UNLIMITED StartTime=2026-12-04T21:32:31 EndTime=2026-12-04T21:32:32 NodeList=exp-a-node1 NodeCnt=1 ProcCnt=1 WorkDir=/tmp/slurm-exp ReservationName= Tres=cpu=1,mem=256M,node=1,billing=1 Account= QOS= WcKey= Cluster=unknown SubmitTime=2026-12-04T21:32:31 EligibleTime=2026-12-04T21:32:31 ArrayJobId=12 ArrayTaskId=1 DerivedExitCode=0:0 ExitCode=2:0
JobId=12 UserId=root(0) GroupId=root(0) Name=skyshift.a.k-1.OnFailure.0.0-1 JobState=FAILED Partition=debug TimeLimit=UNLIMITED StartTime=2026-12-04T21:33:02 EndTime=2026-12-04T21:33:05 NodeList=exp-a-node1 NodeCnt=1 ProcCnt=1 WorkDir=/tmp/my dir ReservationName= Tres=cpu=1,mem=256M,node=1,billing=1 Account= QOS= WcKey= Cluster=unknown SubmitTime=2026-12-04T21:32:31 EligibleTime=2026-12-04T21:34:33 ArrayJobId=12 ArrayTaskId=1 DerivedExitCode=0:0 ExitCode=0:9
JobId=24 UserId=root(0) GroupId=root(0) Name=wrap JobState=TIMEOUT Partition=debug TimeLimit=1 StartTime=2026-12-04T21:35:44 EndTime=2026-12-04T21:36:45 NodeList=exp-a-node1 NodeCnt=1 ProcCnt=1 WorkDir=/tmp ReservationName= Tres=cpu=1,mem=256M,node=1,billing=1 Account= QOS= WcKey= Cluster=unknown SubmitTime=2026-12-04T21:35:44 EligibleTime=2026-12-04T21:35:44 DerivedExitCode=0:0 ExitCode=0:15
"""


def test_jobcomp_parsed():
    records = commands.parse_jobcomp(JOBCOMP_TEXT)

    assert [(record.task_id, record.state) for record in records] == [
        ("12_1", "PENDING"),
        ("12_1", "FAILED"),
        ("24", "TIMEOUT"),
    ]
    assert (records[1].exit_status, records[1].signal) == (0, 9)
    assert (records[2].exit_status, records[2].signal) == (0, 15)
    assert records[1].end_time - records[1].start_time == 3
    assert {record.source for record in records} == {RecordSource.JOBCOMP}


def test_jobcomp_filter_skips_other_jobs():
    records = commands.parse_jobcomp(JOBCOMP_TEXT, name_filter="skyshift.a.")
    assert [record.job_id for record in records] == ["12", "12"]


# ---- sbatch, scancel, scontrol --------------------------------------------------------------


def test_sbatch_command_maps_request():
    request = SubmitRequest(
        name="skyshift.a.k-1.Never.0.0-1",
        comment="SkyShift Job default/train",
        array="0-1",
        script="#!/bin/bash\n",
        cpus_per_task=4,
        memory_mb=2048,
        gres="gpu:a100:2",
        tmp_disk_mb=10240,
        partition="gpu",
        account="proj",
        qos="high",
        time_limit="1:00:00",
        work_dir="/home/a/out/k-1",
        slurm_output="/home/a/out/k-1/slurm-%A_%a.out",
        requeue=False,
    )

    assert commands.sbatch_command(request) == [
        "sbatch",
        "--parsable",
        "--job-name=skyshift.a.k-1.Never.0.0-1",
        "--comment=SkyShift Job default/train",
        "--array=0-1",
        "--nodes=1",
        "--ntasks=1",
        "--cpus-per-task=4",
        "--chdir=/home/a/out/k-1",
        "--output=/home/a/out/k-1/slurm-%A_%a.out",
        "--open-mode=append",
        "--no-requeue",
        "--mem=2048M",
        "--gres=gpu:a100:2",
        "--tmp=10240M",
        "--partition=gpu",
        "--account=proj",
        "--qos=high",
        "--time=1:00:00",
    ]


def test_sbatch_command_leaves_out_unset_options():
    command = commands.sbatch_command(SubmitRequest(name="n", comment="c", array="0", script="", requeue=True))
    assert "--requeue" in command
    assert not [part for part in command if part.split("=")[0] in ("--mem", "--gres", "--tmp", "--partition", "--time")]


@pytest.mark.parametrize(("output", "job_id"), [("123\n", "123"), ("124;site-a\n", "124")])
def test_sbatch_output_parsed(output, job_id):
    assert commands.parse_sbatch(output) == job_id


@pytest.mark.parametrize("output", ["", "Submitted batch job\n"])
def test_sbatch_output_without_id_rejected(output):
    with pytest.raises(ValueError):
        commands.parse_sbatch(output)


def test_requeue_then_release():
    assert commands.requeue_command("12_1") == ["scontrol", "requeue", "12_1"]
    assert commands.release_command("12_1") == ["scontrol", "update", "JobId=12_1", "StartTime=now"]


PINGS = [
    ("Slurmctld(primary) at vm is UP\n", True),
    (
        "Slurmctld(primary) at vm is DOWN\n*****************************************\n** RESTORE SLURMCTLD DAEMON TO SERVICE **\n",
        False,
    ),
    ("Slurmctld(primary) at a is DOWN\nSlurmctld(backup) at b is UP\n", True),
]


@pytest.mark.parametrize(("output", "up"), PINGS, ids=["up", "down", "backup-up"])
def test_ping_output_parsed(output, up):
    assert commands.parse_ping(output)[0] is up
    assert "Slurmctld(" in commands.parse_ping(output)[1]


def test_show_config_parsed():
    output = "Configuration data as of 2026-12-04T21:40:00\nJobCompLoc              = /var/log/jobcomp.txt\nMinJobAge               = 300 sec\nSchedulerParameters     = (null)\n"
    settings = commands.parse_show_config(output)
    assert settings["JobCompLoc"] == "/var/log/jobcomp.txt"
    assert settings["MinJobAge"] == "300 sec"
