"""The batch script, run for real with bash as Slurm would run one array task, and the command
lines of the container runtimes, which cannot run on this machine and are checked word by word."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from skyshift_slurm.script import (
    ContainerSpec,
    apptainer_command,
    batch_script,
    enroot_image,
    enroot_lines,
    exec_command,
    podman_command,
    qualified_image,
    runtime_lines,
)

from skyshift_core.cluster_manager import WorkUnit
from skyshift_core.objects import Job, Volume


def unit(
    run: str, *, envs: dict[str, str] | None = None, indices=(3, 5, 8), replicas: int = 9, **spec: Any
) -> WorkUnit:
    job = Job.model_validate(
        {
            "metadata": {"name": "train", "namespace": "research", "uid": "0c9f2b1e"},
            "spec": {"replicas": replicas, "run": run, "envs": envs or {}, **spec},
        }
    )
    return WorkUnit(job=job, cluster="site-a", replica_indices=indices, total_replicas=replicas, generation=4)


def run_task(script: str, task: int, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "job.sh"
    path.write_text(script)
    environment = {"PATH": os.environ["PATH"], "SLURM_ARRAY_TASK_ID": str(task), "HOME": str(tmp_path)}
    return subprocess.run(["bash", str(path)], env=environment, capture_output=True, text=True, timeout=30, check=False)


def test_task_runs_its_replica_with_skyshift_variables(tmp_path):
    work_dir = tmp_path / "work"
    script, _ = batch_script(
        unit(
            'echo "$SKYSHIFT_JOB $SKYSHIFT_NAMESPACE $SKYSHIFT_CLUSTER $SKYSHIFT_REPLICA_INDEX/$SKYSHIFT_REPLICAS $PWD"'
        ),
        [3, 5, 8],
        str(work_dir),
        "none",
    )

    result = run_task(script, 1, tmp_path)

    # Array task 1 runs the replica at position 1 of (3, 5, 8): replica 5.
    assert result.returncode == 0, result.stderr
    assert (work_dir / "replica-5.out").read_text() == f"train research site-a 5/9 {work_dir}\n"
    assert sorted(path.name for path in work_dir.iterdir()) == ["replica-5.env", "replica-5.out"]


def test_task_keeps_env_values_verbatim(tmp_path):
    envs = {"QUOTED": 'it\'s "here" $HOME `date`', "EMPTY": "", "MULTI": "a\nb"}
    script, _ = batch_script(
        unit('printf "%s|%s|%s" "$QUOTED" "$EMPTY" "$MULTI"', envs=envs), [0], str(tmp_path), "none"
    )

    run_task(script, 0, tmp_path)

    assert (tmp_path / "replica-0.out").read_text() == 'it\'s "here" $HOME `date`||a\nb'


def test_task_appends_to_output_across_attempts(tmp_path):
    script, _ = batch_script(unit("echo attempt"), [0], str(tmp_path), "none")

    run_task(script, 0, tmp_path)
    run_task(script, 0, tmp_path)

    assert (tmp_path / "replica-0.out").read_text() == "attempt\nattempt\n"


def test_task_exit_code_is_the_command_exit_code(tmp_path):
    script, _ = batch_script(unit("echo failing >&2; exit 42"), [0], str(tmp_path), "none")

    result = run_task(script, 0, tmp_path)

    assert result.returncode == 42
    assert (tmp_path / "replica-0.out").read_text() == "failing\n"


def test_task_outside_replica_list_fails(tmp_path):
    script, _ = batch_script(unit("echo never"), [3, 5], str(tmp_path), "none")

    result = run_task(script, 2, tmp_path)

    assert result.returncode == 1
    assert "array task 2 has no replica; replicas: 3 5" in result.stderr


def run_exec(work_dir: Path, index: int, command: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run an exec command as srun would start it: from another directory, with the caller's environment."""
    environment = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    return subprocess.run(
        exec_command(str(work_dir), index, command),
        cwd="/", env=environment, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_exec_gets_replica_variables(tmp_path):
    envs = {"QUOTED": 'it\'s "here" $HOME `date`', "MULTI": "a\nb"}
    work_dir = tmp_path / "work dir"
    script, _ = batch_script(unit("true", envs=envs), [3, 5, 8], str(work_dir), "none")
    run_task(script, 1, tmp_path)

    printed = 'printf "%s|%s|%s|%s|%s" "$QUOTED" "$MULTI" "$SKYSHIFT_REPLICA_INDEX" "$SKYSHIFT_WORK_KEY" "$PWD"'
    result = run_exec(work_dir, 5, ["sh", "-c", printed], tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f'it\'s "here" $HOME `date`|a\nb|5|{unit("true").key}|{work_dir}'
    # The Job's envs may hold secrets.
    assert (work_dir / "replica-5.env").stat().st_mode & 0o777 == 0o600


def test_exec_without_variables_file(tmp_path):
    # Work submitted by an earlier version of the plugin has no variables file.
    printed = 'echo "${SKYSHIFT_REPLICA_INDEX:-unset}"; exit 4'

    result = run_exec(tmp_path / "missing", 0, ["sh", "-c", printed], tmp_path)

    assert (result.returncode, result.stdout, result.stderr) == (4, "unset\n", "")


def test_exec_missing_program_exits_127(tmp_path):
    result = run_exec(tmp_path, 0, ["no-such-program", "x"], tmp_path)

    assert (result.returncode, result.stdout, result.stderr) == (127, "", "no-such-program: command not found\n")


def test_exec_unrunnable_path_exits_126(tmp_path):
    (tmp_path / "notes.txt").write_text("not a program\n")

    result = run_exec(tmp_path, 0, ["./notes.txt"], tmp_path)

    assert result.returncode == 126
    assert "Permission denied" in result.stderr


def test_exec_unsets_callers_oldpwd(tmp_path):
    result = run_exec(tmp_path, 0, ["sh", "-c", 'echo "${OLDPWD-unset} $PWD"'], tmp_path)

    assert result.stdout == f"unset {tmp_path}\n"


def test_exec_keeps_arguments_verbatim(tmp_path):
    result = run_exec(tmp_path, 0, ["printf", "%s|", "two words", "$HOME", "-c"], tmp_path)

    assert result.stdout == "two words|$HOME|-c|"


def test_job_env_may_set_replica_index(tmp_path):
    script, _ = batch_script(
        unit('echo "$SKYSHIFT_REPLICA_INDEX"', envs={"SKYSHIFT_REPLICA_INDEX": "custom"}), [0], str(tmp_path), "none"
    )

    run_task(script, 0, tmp_path)

    assert (tmp_path / "replica-custom.out").read_text() == "custom\n"


def test_host_runtime_warns_about_image_and_volumes():
    volumes = {"data": {"container_dir": "/data", "host_path": "/srv/data"}}
    _, warnings = batch_script(unit("true", image="pytorch/pytorch:2.3.0", volumes=volumes), [0], "/w", "none")

    assert len(warnings) == 2
    assert warnings[0].startswith(
        "image 'pytorch/pytorch:2.3.0' was not used: this cluster's container_runtime is none"
    )
    assert warnings[1].startswith("volumes data were not mounted")


def test_host_runtime_quiet_without_image():
    _, warnings = batch_script(unit("true"), [0], "/w", "none")

    assert warnings == []


def test_container_runtimes_do_not_warn():
    for runtime in ("apptainer", "podman", "enroot"):
        assert batch_script(unit("true"), [0], "/w", runtime)[1] == []


@pytest.mark.parametrize("runtime", ["none", "apptainer", "podman", "enroot"])
def test_script_is_valid_bash(runtime, tmp_path):
    volumes = {
        "scratch": {"container_dir": "/scratch", "type": "empty_dir"},
        "data": {"container_dir": "/d", "host_path": "/srv/d b"},
    }
    script, _ = batch_script(unit("echo hi", volumes=volumes, resources={"gpus": 1}), [0, 1], str(tmp_path), runtime)
    path = tmp_path / "job.sh"
    path.write_text(script)

    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr


# ---- container command lines ---------------------------------------------------------------

RO_DATA = ("data", Volume(container_dir="/data", host_path="/srv/data", read_only=True))
SCRATCH = ("scratch", Volume(container_dir="/scratch", type="empty_dir"))
SCRATCH_SOURCE = "${TMPDIR:-/tmp}/skyshift-$SKYSHIFT_WORK_KEY-$SKYSHIFT_REPLICA_INDEX/scratch"


def words(line: str) -> list[str]:
    """Split a command line as the shell would, leaving variables unexpanded."""
    return shlex.split(line)


def test_apptainer_command():
    spec = ContainerSpec("ubuntu:22.04", "python train.py --epochs 3", ("SKYSHIFT_JOB",), (RO_DATA, SCRATCH), gpus=2)

    assert words(apptainer_command(spec)) == [
        "apptainer", "exec", "--nv",
        "--bind", "/srv/data:/data:ro",
        "--bind", f"{SCRATCH_SOURCE}:/scratch",
        "docker://ubuntu:22.04",
        "/bin/sh", "-c", "python train.py --epochs 3",
    ]  # fmt: skip


def test_apptainer_without_run_uses_runscript():
    assert words(apptainer_command(ContainerSpec("ghcr.io/org/app:1", "", ()))) == [
        "apptainer",
        "run",
        "docker://ghcr.io/org/app:1",
    ]


def test_podman_command():
    spec = ContainerSpec(
        "ubuntu:22.04", "echo 'hi there'", ("SKYSHIFT_JOB", "SKYSHIFT_REPLICA_INDEX"), (RO_DATA,), gpus=1
    )

    assert words(podman_command(spec)) == [
        "podman", "run", "--rm", "--network=host",
        "--env", "SKYSHIFT_JOB", "--env", "SKYSHIFT_REPLICA_INDEX",
        "--volume", "/srv/data:/data:ro",
        "--device", "nvidia.com/gpu=all",
        "docker.io/library/ubuntu:22.04",
        "/bin/sh", "-c", "echo 'hi there'",
    ]  # fmt: skip


def test_enroot_lines():
    spec = ContainerSpec("nvcr.io/nvidia/pytorch:24.01-py3", "python -V", ("SKYSHIFT_JOB",), (RO_DATA,))

    lines = enroot_lines(spec)

    assert words(lines[-3]) == [
        "enroot",
        "import",
        "--output",
        "$image_file",
        "docker://nvcr.io#nvidia/pytorch:24.01-py3",
        "||",
        "exit",
        "$?",
    ]
    assert words(lines[-2]) == ["enroot", "create", "--name", "$container", "$image_file", "||", "exit", "$?"]
    assert words(lines[-1]) == [
        "enroot", "start", "--rw", "--mount", "/srv/data:/data:ro", "--env", "SKYSHIFT_JOB", "$container", "/bin/sh", "-c", "python -V",
    ]  # fmt: skip
    assert any(line.startswith('trap \'enroot remove --force "$container"') for line in lines)


def test_empty_dir_created_and_removed():
    lines, _ = runtime_lines("podman", ContainerSpec("alpine", "true", (), (SCRATCH,)))

    assert words(lines[0]) == ["mkdir", "-p", SCRATCH_SOURCE, "||", "exit", "1"]
    assert lines[1] == """trap 'rm -rf "${TMPDIR:-/tmp}/skyshift-$SKYSHIFT_WORK_KEY-$SKYSHIFT_REPLICA_INDEX"' EXIT"""
    assert lines[2].startswith("podman run")


IMAGES = [
    ("ubuntu", "docker.io/library/ubuntu", "docker://ubuntu"),
    ("ubuntu:22.04", "docker.io/library/ubuntu:22.04", "docker://ubuntu:22.04"),
    ("me/app:1", "docker.io/me/app:1", "docker://me/app:1"),
    ("ghcr.io/org/app:1", "ghcr.io/org/app:1", "docker://ghcr.io#org/app:1"),
    ("localhost/app", "localhost/app", "docker://localhost#app"),
    ("registry:5000/team/app", "registry:5000/team/app", "docker://registry:5000#team/app"),
]


@pytest.mark.parametrize(("image", "qualified", "enroot"), IMAGES, ids=[case[0] for case in IMAGES])
def test_image_references(image, qualified, enroot):
    assert qualified_image(image) == qualified
    assert enroot_image(image) == enroot
