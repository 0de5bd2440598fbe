"""Job latency through SkyShift against plain sbatch on the same local Slurm cluster, in one run.

Starts one single-node Slurm cluster (LocalSlurmCluster, with its own munged), its own etcd, API
server and controller manager (skylet poll interval 1 s, the default) on free loopback ports,
attaches the cluster with `interface: cli`, and measures:
  * submit to running: `sleep 2` from just before `sbatch` until `squeue` reports RUNNING, and from
    just before the API create until the Job's phase is Running;
  * submit to completed: `true` from just before `sbatch` until `squeue` reports COMPLETED, and
    from just before the API create until the Job's phase is Succeeded;
  * a batch of N Jobs created through the API with C requests in flight. It is timed until every
    create has returned (accepted), every Job is placed, every Job has a Slurm job id, Slurm runs
    every job, and every Job is Running or Succeeded. The same N jobs go through `sbatch` (C in
    flight) for comparison.
Trials alternate sbatch and SkyShift, after one untimed warm-up of each, and each starts after a
random wait (see --jitter in main). Both sides poll every 50 ms and take the time at
which a poll's response arrives. A SkyShift poll also lists the Slurm queue, so each trial
records when the placement, the Slurm job and its states, and the skylet's task states first
appeared. From these the table derives SkyShift's own share of a trial, which excludes the time
the job spends in Slurm.
Everything started here is stopped by PID at the end.

Run: python benchmarks/slurm_latency.py [--repetitions 10] [--batch 100]
Needs root, Slurm and munge (scripts/install-slurm.sh) and etcd (etcd-server).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from skyshift_slurm.localcluster import LocalSlurmCluster

from skyshift_core.client import AsyncSkyShiftClient
from skyshift_core.controllers.skylet import DEFAULT_POLL_INTERVAL
from skyshift_core.errors import NotFoundError
from skyshift_core.local.etcd import EtcdProcess
from skyshift_core.local.processes import free_port, is_alive, stop_process, wait_for_port

CLUSTER = "bench"
NAMESPACE = "default"
RESOURCES = {"cpus": 1, "memory": "64Mi"}
# Seconds any single wait may take before the benchmark gives up; a deadline, not an expectation.
DEADLINE = 120.0
# Progress of a SkyShift trial: stages seen in the Job's status, and the state of its Slurm job as
# squeue lists it, in pipeline order.
STAGES = (
    "placed", "slurm job listed", "submitted", "slurm running", "task running", "slurm completed", "task succeeded",
)  # fmt: skip
# The Slurm state that each measure waits for, as a stage of a SkyShift trial.
SLURM_TARGETS = {"RUNNING": "slurm running", "COMPLETED": "slurm completed"}


@dataclass
class Trial:
    """Seconds from submission until the target state, and until each SkyShift stage was first seen."""

    seconds: float
    stages: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Statistics and output
# ---------------------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least `fraction` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def describe_machine(cluster: LocalSlurmCluster) -> str:
    cpu_model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    debian = Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?"
    # With SLURM_CONF set, because a Slurm command without a configuration looks for one in DNS.
    slurm = cluster.run(["sinfo", "-V"], check=False).stdout.strip()
    etcd = subprocess.run(["etcd", "--version"], capture_output=True, text=True, check=False).stdout.splitlines()
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs ({cpu_model}), {memory_kib / 1024 / 1024:.0f} GiB, "
        f"Debian {debian}, Python {platform.python_version()}, {slurm or 'Slurm ?'}, "
        f"{etcd[0] if etcd else 'etcd ?'}"
    )


def own_seconds(trial: Trial, slurm_target: str) -> float | None:
    """SkyShift's own share of a trial: from the API create until Slurm lists the job, plus from
    Slurm's target state until the Job's phase shows it; None if a stage was not seen."""
    listed = trial.stages.get("slurm job listed")
    reached = trial.stages.get(SLURM_TARGETS[slurm_target])
    if listed is None or reached is None:
        return None
    return listed + trial.seconds - reached


def print_latency_table(results: dict[str, dict[str, list[Trial]]], slurm_targets: dict[str, str]) -> None:
    print()
    print(
        f"{'measure':<30}{'sbatch p50':>11}{'p90':>8}{'SkyShift p50':>14}{'p90':>8}{'added p50':>11}{'own p50':>9}{'p90':>8}"
    )
    for measure, sides in results.items():
        sbatch = [trial.seconds for trial in sides["sbatch"]]
        skyshift = [trial.seconds for trial in sides["skyshift"]]
        added = statistics.median(skyshift) - statistics.median(sbatch)
        own = [
            value for trial in sides["skyshift"] if (value := own_seconds(trial, slurm_targets[measure])) is not None
        ]
        own_text = f"{statistics.median(own):>8.2f}s{percentile(own, 0.9):>7.2f}s" if own else f"{'-':>9}{'-':>8}"
        print(
            f"{measure:<30}{statistics.median(sbatch):>10.2f}s{percentile(sbatch, 0.9):>7.2f}s"
            f"{statistics.median(skyshift):>13.2f}s{percentile(skyshift, 0.9):>7.2f}s{added:>10.2f}s{own_text}"
        )
    print("added: SkyShift's median minus sbatch's median (target: at most 1 s)")
    print("own: per SkyShift trial, create until Slurm lists the job plus Slurm's state until the Job's phase shows it")
    print()
    print("SkyShift trials, seconds from the API create until each stage was first seen (p50 / p90):")
    for measure, sides in results.items():
        print(f"  {measure}:")
        for stage in STAGES:
            values = [trial.stages[stage] for trial in sides["skyshift"] if stage in trial.stages]
            if values:
                print(f"    {stage:<20}{statistics.median(values):>7.2f}{percentile(values, 0.9):>7.2f}")


def print_batch_table(count: int, concurrency: int, sbatch: dict[str, float], skyshift: dict[str, float]) -> None:
    print()
    print(
        f"batch of {count} jobs (`sleep 10`), {concurrency} submissions in flight, seconds from the first submission:"
    )
    print(f"{'milestone':<40}{'sbatch':>10}{'SkyShift':>10}")
    milestones = (
        "all accepted",
        "all placed",
        "all submitted to Slurm",
        "all running in Slurm",
        "all running or succeeded",
    )
    for milestone in milestones:
        left = f"{sbatch[milestone]:.2f}" if milestone in sbatch else "-"
        right = f"{skyshift[milestone]:.2f}" if milestone in skyshift else "-"
        print(f"{milestone:<40}{left:>10}{right:>10}")


# ---------------------------------------------------------------------------------------------
# Plain sbatch
# ---------------------------------------------------------------------------------------------


async def run_command(cluster: LocalSlurmCluster, *command: str) -> str:
    """Run a Slurm command against `cluster` and return its stdout; raise RuntimeError on failure."""
    process = await asyncio.create_subprocess_exec(
        *command, env=cluster.env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed with status {process.returncode}: {stderr.decode().strip()}")
    return stdout.decode()


async def sbatch(cluster: LocalSlurmCluster, run: str, output_dir: Path) -> str:
    """Submit `run` as one plain batch job with the resources of the SkyShift Jobs; return its job id."""
    output = await run_command(
        cluster, "sbatch", "--parsable", "--job-name=baseline", "--cpus-per-task=1", "--mem=64M",
        f"--output={output_dir}/baseline-%j.out", f"--wrap={run}",
    )  # fmt: skip
    return output.strip().split(";")[0]


async def slurm_states(cluster: LocalSlurmCluster, job_ids: list[str]) -> dict[str, str]:
    """Return each job's state from one squeue call, ended jobs included while slurmctld keeps them."""
    output = await run_command(cluster, "squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i %T")
    return dict(line.split() for line in output.splitlines() if line.strip())


async def sbatch_trial(cluster: LocalSlurmCluster, run: str, target: str, interval: float, output_dir: Path) -> Trial:
    """Time one plain job from just before sbatch until squeue first reports `target`, then wait for its end."""
    started = time.perf_counter()
    job_id = await sbatch(cluster, run, output_dir)
    seconds = None
    deadline = started + DEADLINE
    while time.perf_counter() < deadline:
        state = (await slurm_states(cluster, [job_id])).get(job_id, "")
        reached = state == target or (target == "RUNNING" and state in ("COMPLETING", "COMPLETED"))
        if seconds is None and reached:
            seconds = time.perf_counter() - started
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            if seconds is None:
                raise RuntimeError(f"Slurm job {job_id} ({run!r}) ended {state} without reaching {target}")
            return Trial(seconds)
        await asyncio.sleep(interval)
    raise RuntimeError(f"Slurm job {job_id} ({run!r}) did not end within {DEADLINE:.0f} s")


async def sbatch_batch(
    cluster: LocalSlurmCluster, count: int, concurrency: int, interval: float, output_dir: Path
) -> dict[str, float]:
    started = time.perf_counter()
    queue = iter(range(count))
    job_ids: list[str] = []

    async def submit_all() -> None:
        for _ in queue:
            job_ids.append(await sbatch(cluster, "sleep 10", output_dir))

    await asyncio.gather(*(submit_all() for _ in range(concurrency)))
    milestones = {"all accepted": time.perf_counter() - started}
    milestones["all submitted to Slurm"] = milestones["all accepted"]
    deadline = started + DEADLINE
    while time.perf_counter() < deadline:
        states = await slurm_states(cluster, job_ids)
        if all(states.get(job_id) in ("RUNNING", "COMPLETING", "COMPLETED") for job_id in job_ids):
            milestones["all running in Slurm"] = time.perf_counter() - started
            milestones["all running or succeeded"] = milestones["all running in Slurm"]
            break
        await asyncio.sleep(interval)
    else:
        raise RuntimeError(f"the {count} sbatch jobs were not all running within {DEADLINE:.0f} s")
    await run_command(cluster, "scancel", *job_ids)
    await wait_for_empty_queue(cluster)
    return milestones


async def wait_for_empty_queue(cluster: LocalSlurmCluster) -> None:
    deadline = time.perf_counter() + DEADLINE
    while time.perf_counter() < deadline:
        if not (await run_command(cluster, "squeue", "-h", "-o", "%i")).split():
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"cluster {cluster.name} still has jobs in its queue after {DEADLINE:.0f} s")


# ---------------------------------------------------------------------------------------------
# SkyShift
# ---------------------------------------------------------------------------------------------


def job_manifest(name: str, run: str) -> dict[str, Any]:
    return {
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"replicas": 1, "run": run, "restart_policy": "Never", "resources": RESOURCES},
    }


def stages_seen(status: dict[str, Any]) -> set[str]:
    """Return the progress stages that a Job's status shows."""
    seen = set()
    if status.get("placement"):
        seen.add("placed")
    for share in (status.get("clusters") or {}).values():
        if share.get("manager_job_ids"):
            seen.add("submitted")
        states = {task.get("state") for task in (share.get("tasks") or {}).values()}
        if "Running" in states or "Succeeded" in states:
            seen.add("task running")
        if "Succeeded" in states:
            seen.add("task succeeded")
    return seen


async def slurm_stages(cluster: LocalSlurmCluster, uid: str) -> set[str]:
    """Return the progress stages of the Slurm job whose name carries the Job uid `uid`, from one squeue call."""
    output = await run_command(cluster, "squeue", "-h", "-t", "all", "-o", "%j %T")
    seen = set()
    for line in output.splitlines():
        job_name, _, state = line.partition(" ")
        if uid not in job_name:
            continue
        seen.add("slurm job listed")
        if state in ("RUNNING", "COMPLETING", "COMPLETED"):
            seen.add("slurm running")
        if state == "COMPLETED":
            seen.add("slurm completed")
    return seen


async def skyshift_trial(
    client: AsyncSkyShiftClient, cluster: LocalSlurmCluster, name: str, run: str, target: str, interval: float
) -> Trial:
    """Time one Job from just before the API create until its phase is `target`, then delete it once it ended.

    Each poll also lists the Slurm queue, so the trial records when Slurm itself knew the job and
    its states, which separates SkyShift's own delays from the time the job spends in Slurm."""
    started = time.perf_counter()
    uid = (await client.create(job_manifest(name, run), NAMESPACE))["metadata"]["uid"]
    trial: Trial | None = None
    stages: dict[str, float] = {}
    deadline = started + DEADLINE
    while time.perf_counter() < deadline:
        job, slurm = await asyncio.gather(client.get("Job", name, NAMESPACE), slurm_stages(cluster, uid))
        status = job["status"]
        now = time.perf_counter() - started
        for stage in stages_seen(status) | slurm:
            stages.setdefault(stage, now)
        phase = status.get("phase")
        if trial is None and (phase == target or phase == "Succeeded"):
            trial = Trial(now, stages)
        if phase == "Failed":
            raise RuntimeError(f"Job {name} ({run!r}) failed: {status.get('conditions')}")
        if phase == "Succeeded":
            assert trial is not None
            await delete_jobs(client, [name])
            return trial
        await asyncio.sleep(interval)
    raise RuntimeError(f"Job {name} ({run!r}) did not succeed within {DEADLINE:.0f} s; last status: {status}")


async def delete_jobs(client: AsyncSkyShiftClient, names: list[str]) -> None:
    for name in names:
        try:
            await client.delete("Job", name, NAMESPACE)
        except NotFoundError:
            pass


async def skyshift_batch(
    client: AsyncSkyShiftClient, cluster: LocalSlurmCluster, count: int, concurrency: int, interval: float
) -> dict[str, float]:
    names = [f"batch-{index:04d}" for index in range(count)]
    queue = iter(names)
    uids: set[str] = set()
    started = time.perf_counter()

    async def create_all() -> None:
        for name in queue:
            uids.add((await client.create(job_manifest(name, "sleep 10"), NAMESPACE))["metadata"]["uid"])

    await asyncio.gather(*(create_all() for _ in range(concurrency)))
    milestones = {"all accepted": time.perf_counter() - started}
    checks = {
        "all placed": lambda status: "placed" in stages_seen(status),
        "all submitted to Slurm": lambda status: "submitted" in stages_seen(status),
        "all running or succeeded": lambda status: status.get("phase") in ("Running", "Succeeded"),
    }
    deadline = started + DEADLINE
    while len(milestones) < 2 + len(checks):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the {count} Jobs did not all run within {DEADLINE:.0f} s; reached: {milestones}")
        listing, queue_output = await asyncio.gather(
            client.list_all("Job", NAMESPACE), run_command(cluster, "squeue", "-h", "-t", "all", "-o", "%j %T")
        )
        now = time.perf_counter() - started
        items = [item for item in listing["items"] if item["metadata"]["name"] in names]
        for milestone, check in checks.items():
            if milestone not in milestones and len(items) == count and all(check(item["status"]) for item in items):
                milestones[milestone] = now
        # A SkyShift job name carries the work key, which starts with the Job's uid.
        running = {
            job_name.split(".")[2].rsplit("-", 1)[0]
            for job_name, _, state in (line.partition(" ") for line in queue_output.splitlines())
            if job_name.startswith("skyshift.") and state in ("RUNNING", "COMPLETING", "COMPLETED")
        }
        if "all running in Slurm" not in milestones and uids <= running:
            milestones["all running in Slurm"] = now
        await asyncio.sleep(interval)
    await delete_jobs(client, names)
    return milestones


async def attach_cluster(client: AsyncSkyShiftClient, cluster: LocalSlurmCluster, output_dir: Path) -> None:
    config = {"interface": "cli", "slurm_conf": str(cluster.slurm_conf), "output_dir": str(output_dir)}
    await client.create(
        {"kind": "Cluster", "metadata": {"name": CLUSTER}, "spec": {"manager": "slurm", "config": config}}
    )
    deadline = time.perf_counter() + DEADLINE
    while time.perf_counter() < deadline:
        status = (await client.get("Cluster", CLUSTER))["status"]
        if status.get("phase") == "READY":
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"Cluster {CLUSTER} did not become READY within {DEADLINE:.0f} s; last status: {status}")


# ---------------------------------------------------------------------------------------------
# Control plane
# ---------------------------------------------------------------------------------------------


def skyshift_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "skyshift_core.cli.main", *arguments]


@dataclass
class ControlPlane:
    """etcd, an API server and a controller manager started by this benchmark."""

    etcd: EtcdProcess
    processes: list[subprocess.Popen]
    url: str
    token: str

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_process(process.pid)
        self.etcd.stop()


def start_control_plane(directory: Path, etcd_dir: Path, log_level: str, poll_interval: float) -> ControlPlane:
    etcd = EtcdProcess(data_dir=etcd_dir).start()
    processes: list[subprocess.Popen] = []
    plane = ControlPlane(etcd, processes, "", "")
    try:
        api_port = free_port()
        plane.url = f"http://127.0.0.1:{api_port}"
        with open(directory / "api-server.log", "ab") as log:
            processes.append(subprocess.Popen(
                skyshift_command("api-server", "--etcd", etcd.endpoint, "--port", str(api_port), "--log-level", log_level,
                                 "--audit-log", str(directory / "audit.log")),
                stdout=log, stderr=subprocess.STDOUT,
            ))  # fmt: skip
        if not wait_for_port("127.0.0.1", api_port, 30, pid=processes[0].pid):
            raise RuntimeError(f"the API server did not start; see {directory / 'api-server.log'}")

        credentials = directory / "credentials"
        subprocess.run(
            skyshift_command("bootstrap", "--etcd", etcd.endpoint, "--server", plane.url, "--output-dir", str(credentials)),
            check=True, capture_output=True,
        )  # fmt: skip
        config = yaml.safe_load((credentials / "config.yaml").read_text())
        (admin,) = [context for context in config["contexts"] if context["name"] == "admin"]
        plane.token = admin["token"]

        manager_config = directory / "controller-manager.yaml"
        manager_config.write_text(yaml.safe_dump({"skylet": {"poll_interval": poll_interval}}))
        with open(directory / "controller-manager.log", "ab") as log:
            processes.append(subprocess.Popen(
                skyshift_command("controller-manager", "--server", plane.url, "--config", str(manager_config),
                                 "--token-file", str(credentials / "controller-manager.token"), "--log-level", log_level),
                stdout=log, stderr=subprocess.STDOUT,
            ))  # fmt: skip
    except BaseException:
        plane.stop()
        raise
    return plane


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


async def measure(args: argparse.Namespace, cluster: LocalSlurmCluster, plane: ControlPlane, output_dir: Path) -> None:
    interval = args.interval
    jitter = random.Random(args.seed)
    async with AsyncSkyShiftClient(plane.url, token=plane.token, timeout=30) as client:
        await attach_cluster(client, cluster, output_dir / "skyshift")

        measures = {"submit to running (sleep 2)": ("sleep 2", "RUNNING", "Running"),
                    "submit to completed (true)": ("true", "COMPLETED", "Succeeded")}  # fmt: skip
        results: dict[str, dict[str, list[Trial]]] = {name: {"sbatch": [], "skyshift": []} for name in measures}
        for position, (measure_name, (run, slurm_target, phase_target)) in enumerate(measures.items()):
            # One untimed trial of each side warms up the commands, the skylet and the API server's caches.
            await sbatch_trial(cluster, run, slurm_target, interval, output_dir)
            await skyshift_trial(client, cluster, f"warmup-{position}", run, phase_target, interval)
            for repetition in range(args.repetitions):
                sides = results[measure_name]
                await asyncio.sleep(jitter.uniform(0, args.jitter))
                sides["sbatch"].append(await sbatch_trial(cluster, run, slurm_target, interval, output_dir))
                await asyncio.sleep(jitter.uniform(0, args.jitter))
                name = f"latency-{position}-{repetition:03d}"
                trial = await skyshift_trial(client, cluster, name, run, phase_target, interval)
                sides["skyshift"].append(trial)
                slurm_seconds = trial.stages.get(SLURM_TARGETS[slurm_target], float("nan"))
                own = own_seconds(trial, slurm_target)
                print(
                    f"{measure_name}, repetition {repetition + 1}: sbatch {sides['sbatch'][-1].seconds:.2f} s; "
                    f"SkyShift {trial.seconds:.2f} s, its Slurm job {slurm_target} at {slurm_seconds:.2f} s, "
                    f"own {own if own is not None else float('nan'):.2f} s",
                    flush=True,
                )

        await wait_for_empty_queue(cluster)
        sbatch_milestones = await sbatch_batch(cluster, args.batch, args.concurrency, args.batch_interval, output_dir)
        skyshift_milestones = await skyshift_batch(client, cluster, args.batch, args.concurrency, args.batch_interval)

    print()
    print(f"machine: {describe_machine(cluster)}")
    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(f"repetitions: {args.repetitions} per side and measure, polling every {interval * 1000:.0f} ms, "
          f"random wait of up to {args.jitter:g} s before each trial (seed {args.seed}); "
          f"skylet poll interval {args.skylet_poll_interval:g} s")  # fmt: skip
    print_latency_table(results, {name: slurm_target for name, (_, slurm_target, _) in measures.items()})
    print_batch_table(args.batch, args.concurrency, sbatch_milestones, skyshift_milestones)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repetitions", type=int, default=10, help="timed trials per side and measure")
    parser.add_argument("--batch", type=int, default=100, help="Jobs (and sbatch jobs) in the batch measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="submissions in flight in the batch measurement")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between polls of one job's state")
    parser.add_argument(
        "--batch-interval", type=float, default=0.2, help="seconds between polls of the whole batch (one list each)"
    )
    # Trials run back to back showed the same Slurm start delay and the same skylet poll lag in
    # every trial, locked to the trials' rhythm. A random wait before each trial spreads the
    # submissions over the phases of Slurm's scheduling, which may defer a batch job by up to
    # batch_sched_delay (slurm.conf(5), 3 s by default), and of the skylet's poll.
    parser.add_argument(
        "--jitter", type=float, default=3.0, help="max seconds of random wait before each trial (0 turns it off)"
    )
    parser.add_argument(
        "--skylet-poll-interval",
        type=float,
        default=DEFAULT_POLL_INTERVAL,
        help=f"seconds between skylet cycles (default: {DEFAULT_POLL_INTERVAL:g}, the controller manager's default)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the random waits")
    parser.add_argument("--log-level", default="warning", help="log level of the API server and controller manager")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("Error: this benchmark starts Slurm daemons and must run as root")

    # munged runs as user munge and needs search rights on every parent of its directory, so the
    # directory that mkdtemp creates with mode 0700 is opened up to 0755.
    directory = Path(tempfile.mkdtemp(prefix="skyshift-slurm-bench-", dir="/var/tmp"))
    directory.chmod(0o755)
    output_dir = directory / "output"
    output_dir.mkdir()
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    etcd_dir = Path(tempfile.mkdtemp(prefix="skyshift-slurm-bench-etcd-", dir=shm))

    # Every job needs one CPU, so the node fits the whole batch at once plus the latency jobs.
    # slurm.conf declares these CPUs and this memory, so they need not exist on this machine.
    cpus = args.batch + 8
    cluster = LocalSlurmCluster("skyshift-bench", directory / "cluster", cpus=cpus, memory_mb=cpus * 256,
                                munge_dir=directory / "munge")  # fmt: skip
    plane = None
    try:
        cluster.start()
        plane = start_control_plane(directory, etcd_dir / "data", args.log_level, args.skylet_poll_interval)
        asyncio.run(measure(args, cluster, plane, output_dir))
        for process in plane.processes:
            if not is_alive(process.pid):
                raise RuntimeError(f"{shlex.join(process.args)} exited with {process.poll()} during the run")
    finally:
        if plane is not None:
            plane.stop()
        cluster.stop()
        shutil.rmtree(etcd_dir, ignore_errors=True)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
