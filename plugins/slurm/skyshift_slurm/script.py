"""The batch script of one job array, and the command line that runs a replica in its container.

The manager calls `batch_script` on submit. Each array task of the script finds its global
replica index from SLURM_ARRAY_TASK_ID and exports SkyShift's variables and the Job's envs. It
sends its output to `<work dir>/replica-<index>.out` and runs the Job's `run` command, on the
host (`container_runtime: none`) or in the Job's image with apptainer, podman or enroot. It also
writes those variables to `<work dir>/replica-<index>.env`, which the commands of `skyshift exec`
load through `exec_command`.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from skyshift_core.cluster_manager import WorkUnit
from skyshift_core.objects import Volume
from skyshift_core.objects.job import DEFAULT_IMAGE

REPLICA_VARIABLE = "SKYSHIFT_REPLICA_INDEX"
# Directory of a replica's empty_dir volumes; removed when the replica ends.
SCRATCH_DIRECTORY = '"${TMPDIR:-/tmp}/skyshift-$SKYSHIFT_WORK_KEY-$SKYSHIFT_REPLICA_INDEX"'


@dataclass(frozen=True)
class ContainerSpec:
    """The parts of a Job that a container command line uses, already validated by the core."""

    image: str
    run: str
    environment_names: tuple[str, ...]
    volumes: tuple[tuple[str, Volume], ...] = ()
    gpus: int = 0


def output_file(work_dir: str, replica_index: int | str) -> str:
    """Return the path of a replica's output file in a work directory."""
    return f"{work_dir}/replica-{replica_index}.out"


def environment_file(work_dir: str, replica_index: int | str) -> str:
    """Return the path of the file with a replica's exported variables."""
    return f"{work_dir}/replica-{replica_index}.env"


def exec_command(work_dir: str, replica_index: int, command: list[str]) -> list[str]:
    """Wrap `command` so that it runs in the replica's work directory with its variables, as the
    replica's own command does. Work submitted before the variables file existed runs without it."""
    # A name without a slash is looked up in PATH, where bash's own message for a miss would name
    # this wrapper. A path is left to exec, whose errors differ for a missing file and one that cannot run.
    setup = (
        'cd -- "$1" 2>/dev/null; unset OLDPWD; if [ -r "$2" ]; then . "$2"; fi; shift 2; '
        'case "$1" in */*) ;; *) command -v -- "$1" >/dev/null || { echo "$1: command not found" >&2; exit 127; };; '
        'esac; exec "$@"'
    )
    return ["bash", "-c", setup, "skyshift-exec", work_dir, environment_file(work_dir, replica_index), *command]


def batch_script(unit: WorkUnit, indices: Sequence[int], work_dir: str, runtime: str) -> tuple[str, list[str]]:
    """Return the batch script for an array whose task N runs replica `indices[N]`, and warnings
    about parts of the Job this runtime cannot honour."""
    job = unit.job
    environment = unit.environment(indices[0])
    spec = ContainerSpec(
        image=job.spec.image,
        run=job.spec.run,
        environment_names=tuple(environment),
        volumes=tuple(sorted(job.spec.volumes.items())),
        gpus=job.spec.resources.gpus,
    )
    lines = [
        "#!/bin/bash",
        f"# Written by SkyShift for Job {job.metadata.namespace or 'default'}/{job.metadata.name}, work {unit.key}.",
        "# Array task N runs the replica at position N of replica_indices.",
        f"replica_indices=({' '.join(str(index) for index in indices)})",
        "task=${SLURM_ARRAY_TASK_ID:-0}",
        'if [ "$task" -ge "${#replica_indices[@]}" ]; then',
        '    echo "skyshift: array task $task has no replica; replicas: ${replica_indices[*]}" >&2',
        "    exit 1",
        "fi",
        f"export SKYSHIFT_WORK_KEY={shlex.quote(unit.key)}",
    ]

    # The Job's envs may override SkyShift's variables, as WorkUnit.environment orders them; the
    # replica index is per task unless the Job sets it itself.
    for name, value in environment.items():
        if name == REPLICA_VARIABLE and name not in job.spec.envs:
            lines.append(f'export {REPLICA_VARIABLE}="${{replica_indices[$task]}}"')
        else:
            lines.append(f"export {name}={shlex.quote(value)}")

    exported = " ".join(f'{name} "${name}"' for name in ("SKYSHIFT_WORK_KEY", *environment))
    variables_file = environment_file("$work_dir", "${" + REPLICA_VARIABLE + "}")
    lines += [
        f"work_dir={shlex.quote(work_dir)}",
        'mkdir -p "$work_dir" && cd "$work_dir" || exit 1',
        "# For the commands of `skyshift exec`, which run as later steps of this job. The file may",
        "# hold secrets from the Job's envs, so only its owner may read it.",
        f"(umask 077 && printf 'export %s=%q\\n' {exported} >\"{variables_file}\")",
        f'exec >>"$work_dir/replica-${REPLICA_VARIABLE}.out" 2>&1',
    ]
    body, warnings = runtime_lines(runtime, spec)
    lines += body
    return "\n".join(lines) + "\n", warnings


def runtime_lines(runtime: str, spec: ContainerSpec) -> tuple[list[str], list[str]]:
    """Return the script lines that run the replica under `runtime`, and warnings."""
    if runtime == "none":
        return _host_lines(spec)
    if runtime == "apptainer":
        return _with_scratch(spec, apptainer_command(spec)), []
    if runtime == "podman":
        return _with_scratch(spec, podman_command(spec)), []
    if runtime == "enroot":
        return enroot_lines(spec), []
    raise ValueError(f"unknown container runtime {runtime!r}: expected none, apptainer, podman or enroot")


def apptainer_command(spec: ContainerSpec) -> str:
    """`apptainer exec docker://IMAGE /bin/sh -c RUN`, binding volumes, with --nv for GPUs.

    apptainer passes the task's environment into the container, so SkyShift's variables and the
    Job's envs need no flags. Without a run command the image's own runscript runs.
    """
    words = ["apptainer", "exec" if spec.run else "run"]
    if spec.gpus:
        words.append("--nv")
    for source, volume in _mounts(spec):
        words += ["--bind", f"{source}:{_quote(volume.container_dir)}{':ro' if volume.read_only else ''}"]
    words.append(shlex.quote(f"docker://{spec.image}"))
    if spec.run:
        words += ["/bin/sh", "-c", shlex.quote(spec.run)]
    return " ".join(words)


def podman_command(spec: ContainerSpec) -> str:
    """`podman run --rm --network=host --env NAME ... IMAGE /bin/sh -c RUN`.

    `--env NAME` without a value copies the variable from the task's environment. The image is
    written fully qualified (docker.io/library/ubuntu:22.04) because podman may prompt for a
    short name's registry. GPUs come through CDI (`nvidia.com/gpu=all`), which within a Slurm
    allocation are the GPUs Slurm assigned.
    """
    words = ["podman", "run", "--rm", "--network=host"]
    for name in spec.environment_names:
        words += ["--env", name]
    for source, volume in _mounts(spec):
        words += ["--volume", f"{source}:{_quote(volume.container_dir)}{':ro' if volume.read_only else ''}"]
    if spec.gpus:
        words += ["--device", "nvidia.com/gpu=all"]
    words.append(shlex.quote(qualified_image(spec.image)))
    if spec.run:
        words += ["/bin/sh", "-c", shlex.quote(spec.run)]
    return " ".join(words)


def enroot_lines(spec: ContainerSpec) -> list[str]:
    """Import the image as a squashfs file, create a container from it, start it, and remove both
    when the replica ends. enroot writes a registry as `docker://REGISTRY#PATH`."""
    start = ["enroot", "start", "--rw"]
    for source, volume in _mounts(spec):
        start += ["--mount", f"{source}:{_quote(volume.container_dir)}{':ro' if volume.read_only else ''}"]
    for name in spec.environment_names:
        start += ["--env", name]
    if spec.gpus:
        # enroot's NVIDIA hook exposes the GPUs named in NVIDIA_VISIBLE_DEVICES.
        start += ["--env", "NVIDIA_VISIBLE_DEVICES"]
    start.append('"$container"')
    if spec.run:
        start += ["/bin/sh", "-c", shlex.quote(spec.run)]
    lines = [
        'container="skyshift-$SKYSHIFT_WORK_KEY-$SKYSHIFT_REPLICA_INDEX"',
        'image_file="${TMPDIR:-/tmp}/$container.sqsh"',
    ]
    if spec.gpus:
        lines.append('export NVIDIA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-all}"')
    cleanup = 'enroot remove --force "$container" >/dev/null 2>&1; rm -f "$image_file"'
    if _mounts(spec, empty_only=True):
        cleanup += f"; rm -rf {SCRATCH_DIRECTORY}"
        lines += _scratch_directories(spec)
    lines += [
        f"trap '{cleanup}' EXIT",
        f'enroot import --output "$image_file" {shlex.quote(enroot_image(spec.image))} || exit $?',
        'enroot create --name "$container" "$image_file" || exit $?',
        " ".join(start),
    ]
    return lines


def qualified_image(image: str) -> str:
    """Return an image reference with its registry, as Docker resolves it: `ubuntu:22.04` is
    `docker.io/library/ubuntu:22.04`, `me/app` is `docker.io/me/app`."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return image
    if not rest:
        return f"docker.io/library/{image}"
    return f"docker.io/{image}"


def enroot_image(image: str) -> str:
    """Return enroot's form of an image: `docker://ubuntu:22.04`, `docker://nvcr.io#nvidia/pytorch:24.01-py3`."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return f"docker://{first}#{rest}"
    return f"docker://{image}"


def _host_lines(spec: ContainerSpec) -> tuple[list[str], list[str]]:
    warnings = []
    # The default image is there for container backends: a Job that names no image, as Slurm users
    # write them, expects its command to run on the node and gets no warning.
    if spec.image != DEFAULT_IMAGE:
        warnings.append(
            f"image {spec.image!r} was not used: this cluster's container_runtime is none, so the command runs "
            "directly on the Slurm node; set container_runtime to apptainer, podman or enroot to run it in the image"
        )
    if spec.volumes:
        names = ", ".join(name for name, _ in spec.volumes)
        warnings.append(
            f"volumes {names} were not mounted: with container_runtime none there is no container to mount them in"
        )
    if not spec.run:
        warnings.append("the Job has no run command, so each replica exits at once with code 0")
        return ["exit 0"], warnings
    return [f"exec /bin/sh -c {shlex.quote(spec.run)}"], warnings


def _with_scratch(spec: ContainerSpec, command: str) -> list[str]:
    """Run `command` as the task's last step, with empty_dir volumes created first and removed after."""
    if not _mounts(spec, empty_only=True):
        return [f"exec {command}"]
    return [*_scratch_directories(spec), f"trap 'rm -rf {SCRATCH_DIRECTORY}' EXIT", command]


def _scratch_directories(spec: ContainerSpec) -> list[str]:
    sources = [source for source, _ in _mounts(spec, empty_only=True)]
    return [f"mkdir -p {' '.join(sources)} || exit 1"]


def _mounts(spec: ContainerSpec, empty_only: bool = False) -> list[tuple[str, Volume]]:
    """Return (shell word for the source, volume) pairs; empty_dir sources are in the scratch directory."""
    mounts = []
    for name, volume in spec.volumes:
        if volume.type == "empty_dir":
            mounts.append((f"{SCRATCH_DIRECTORY}/{_quote(name)}", volume))
        elif not empty_only:
            mounts.append((_quote(volume.host_path or ""), volume))
    return mounts


def _quote(text: str) -> str:
    """Quote a path for the shell, or leave it bare when it needs no quoting (keeps `a:b` words readable)."""
    return text if shlex.quote(text) == text else shlex.quote(text)
