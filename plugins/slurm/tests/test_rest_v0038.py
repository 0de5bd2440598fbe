"""slurmrestd v0.0.38 requests and responses, on responses recorded from Slurm 22.05.8 (trimmed to
the fields the mapping reads)."""

from __future__ import annotations

from skyshift_slurm import rest_v0038
from skyshift_slurm.records import SubmitRequest

JOBS_RESPONSE = {
    "errors": [],
    "jobs": [
        # A pending array: one entry for the tasks not started yet.
        {"job_id": 14, "array_job_id": 14, "array_task_id": None, "array_task_string": "2-3", "name": "skyshift.a.k-1.Never.0.0-3",
         "job_state": "PENDING", "state_reason": "Resources", "exit_code": 0, "restart_cnt": 0, "start_time": 0, "end_time": 0, "nodes": ""},
        {"job_id": 15, "array_job_id": 14, "array_task_id": 0, "array_task_string": "", "name": "skyshift.a.k-1.Never.0.0-3",
         "job_state": "FAILED", "state_reason": "NonZeroExitCode", "exit_code": 1024, "restart_cnt": 0,
         "start_time": 1796420066, "end_time": 1796420067, "nodes": "exp-a-node1"},
        {"job_id": 16, "array_job_id": 14, "array_task_id": 1, "array_task_string": "", "name": "skyshift.a.k-1.Never.0.0-3",
         "job_state": "RUNNING", "state_reason": "None", "exit_code": 0, "restart_cnt": 2, "start_time": 1796420066, "end_time": 1796420366,
         "nodes": "exp-a-node1"},
        {"job_id": 20, "array_job_id": 0, "array_task_id": None, "array_task_string": "", "name": "wrap",
         "job_state": "COMPLETED", "state_reason": "None", "exit_code": 0, "restart_cnt": 0, "start_time": 1, "end_time": 2, "nodes": "n"},
    ],
}  # fmt: skip


def test_jobs_mapped_with_pending_array_expanded():
    records = rest_v0038.parse_jobs(JOBS_RESPONSE)

    assert [(record.task_id, record.state, record.reason) for record in records] == [
        ("14_2", "PENDING", "Resources"),
        ("14_3", "PENDING", "Resources"),
        ("14_0", "FAILED", "NonZeroExitCode"),
        ("14_1", "RUNNING", ""),
        ("20", "COMPLETED", ""),
    ]
    # 1024 is the wait status of exit code 4.
    assert records[2].exit_status == 4
    assert records[3].restart_count == 2
    assert records[0].start_time is None


def test_jobs_filtered_by_name_prefix():
    assert {record.name for record in rest_v0038.parse_jobs(JOBS_RESPONSE, "skyshift.a.")} == {
        "skyshift.a.k-1.Never.0.0-3"
    }


NODES_RESPONSE = {
    "nodes": [
        {"name": "exp-a-node1", "state": "idle", "state_flags": ["DRAIN"], "cpus": 2, "alloc_cpus": 0, "idle_cpus": 2,
         "real_memory": 1024, "alloc_memory": 0, "temporary_disk": 0, "gres": "", "gres_used": "", "partitions": ["debug"]},
        {"name": "gpu1", "state": "mixed", "state_flags": [], "cpus": 8, "alloc_cpus": 2, "idle_cpus": 6, "real_memory": 64000,
         "alloc_memory": 4000, "temporary_disk": 50000, "gres": "gpu:a100:4", "gres_used": "gpu:a100:1(IDX:0)", "partitions": ["gpu"]},
    ]
}  # fmt: skip


def test_nodes_mapped():
    records = rest_v0038.parse_nodes(NODES_RESPONSE, partition=None)

    assert [(record.name, record.state, record.flags) for record in records] == [
        ("exp-a-node1", "idle", frozenset({"drain"})),
        ("gpu1", "mixed", frozenset()),
    ]
    gpu = records[1]
    assert (gpu.cpus, gpu.cpus_allocated, gpu.cpus_other, gpu.memory_mb, gpu.memory_allocated_mb, gpu.tmp_disk_mb) == (
        8,
        2,
        0,
        64000,
        4000,
        50000,
    )
    assert (gpu.gres, gpu.gres_used) == ("gpu:a100:4", "gpu:a100:1(IDX:0)")


def test_nodes_filtered_by_partition():
    assert [record.name for record in rest_v0038.parse_nodes(NODES_RESPONSE, partition="gpu")] == ["gpu1"]


def test_default_partition_found():
    body = {"partitions": [{"name": "long", "flags": []}, {"name": "debug", "flags": ["default"]}]}
    assert rest_v0038.default_partition(body) == "debug"
    assert rest_v0038.default_partition({"partitions": []}) is None


def test_ping_parsed():
    up = {"pings": [{"hostname": "vm", "ping": "UP", "status": 0, "mode": "primary"}]}
    down = {"pings": [{"hostname": "vm", "ping": "DOWN", "status": -1, "mode": "primary"}]}
    assert rest_v0038.parse_ping(up) == (True, "slurmctld (primary) at vm is UP")
    assert rest_v0038.parse_ping(down) == (False, "slurmctld (primary) at vm is DOWN")


def test_submit_body():
    request = SubmitRequest(
        name="skyshift.a.k-1.Always.0.0-1",
        comment="SkyShift Job default/web",
        array="0-1",
        script="#!/bin/bash\ntrue\n",
        cpus_per_task=2,
        memory_mb=512,
        gres="gpu:1",
        partition="debug",
        time_limit="1:30",
        requeue=True,
        environment={"PATH": "/usr/bin:/bin"},
    )

    assert rest_v0038.submit_body(request) == {
        "script": "#!/bin/bash\ntrue\n",
        "job": {
            "name": "skyshift.a.k-1.Always.0.0-1",
            "comment": "SkyShift Job default/web",
            "array": "0-1",
            "nodes": [1, 1],
            "tasks": 1,
            "cpus_per_task": 2,
            "current_working_directory": "/tmp",
            "standard_output": "/dev/null",
            "open_mode": "append",
            "requeue": True,
            "environment": {"PATH": "/usr/bin:/bin"},
            "memory_per_node": 512,
            "gres": "gpu:1",
            "partition": "debug",
            # 90 seconds, in whole minutes as v0.0.38 takes them.
            "time_limit": 2,
        },
    }


def test_disk_request_is_reported_unsupported():
    warnings = rest_v0038.unsupported_fields(
        SubmitRequest(name="n", comment="c", array="0", script="", tmp_disk_mb=1024)
    )
    assert warnings == [
        "the disk request (1024 MiB) was not passed to Slurm: slurmrestd's v0.0.38 API has no field for --tmp"
    ]


def test_errors_readable():
    body = {"errors": [{"description": "unable to kill JobId=99999 with signal 9: Invalid job id specified", "error_number": 2017,
                        "error": "Invalid job id specified", "source": "slurm_kill_job"}]}  # fmt: skip
    assert rest_v0038.errors(body) == ["unable to kill JobId=99999 with signal 9: Invalid job id specified"]
    assert rest_v0038.error_numbers(body) == {rest_v0038.INVALID_JOB_ID}


def test_submission_response_parsed():
    assert rest_v0038.parse_submit({"errors": [], "job_id": 14, "step_id": "BATCH"}) == "14"
