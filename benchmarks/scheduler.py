"""Scheduler throughput and latency with many clusters and a large backlog of pending Jobs.

Starts its own etcd and API server on free loopback ports, creates N clusters (status written
directly, READY with fixed capacity, no backend behind them) and M pending one-replica Jobs while no
scheduler runs, then starts `skyshift controller-manager` with only the scheduler enabled and
measures:
  * placement decisions per second, each including its conditional etcd write, from the first
    placement to the last (and, for reference, from the controller manager's start, which adds
    its startup and the listing of every Job);
  * p50 and p99 of the scheduling cycle (filter, score, divide) and of the whole decision
    (cycle plus write), from the controller manager's Prometheus histograms;
  * the controller manager's peak resident memory (VmHWM);
  * the CPU time that the API server, the controller manager and etcd each spend per decision,
    which varies less between runs on a shared machine than the rate does.

Run: python benchmarks/scheduler.py [--clusters 100] [--jobs 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import yaml

from skyshift_core.controllers.manager import DEFAULT_SCHEDULER_WORKERS
from skyshift_core.local.etcd import EtcdProcess
from skyshift_core.local.processes import free_port, stop_process, wait_for_port


def quantile_from_histogram(text: str, metric: str, quantile: float, label: str = "") -> float:
    """Estimate a quantile from Prometheus histogram buckets by linear interpolation, in seconds."""
    buckets = []
    for line in text.splitlines():
        if line.startswith(f"{metric}_bucket{{") and label in line:
            bound = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    total = buckets[-1][1]
    target = quantile * total
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= target:
            if bound == float("inf"):
                return previous_bound
            fraction = (target - previous_count) / (count - previous_count) if count > previous_count else 0
            return previous_bound + fraction * (bound - previous_bound)
        previous_bound, previous_count = bound, count
    return previous_bound


async def populate(url: str, token: str, clusters: int, jobs: int, nodes_per_cluster: int, cpus_per_node: int) -> None:
    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(url, connector=connector, headers=bearer(token)) as session:

        async def send(method: str, path: str, body: dict) -> None:
            async with session.request(method, path, json=body) as response:
                if response.status >= 300:
                    raise RuntimeError(f"{method} {path} failed: {response.status} {await response.text()}")

        now = datetime.now(timezone.utc).isoformat()
        node = {"cpus": cpus_per_node, "memory": cpus_per_node * 4096}
        nodes = {f"node-{index}": {"capacity": node, "allocatable": node} for index in range(nodes_per_cluster)}
        for index in range(clusters):
            name = f"cluster-{index:03d}"
            labels = {"region": ["us", "eu", "ap"][index % 3], "tier": ["gold", "silver"][index % 2]}
            await send("POST", "/api/v1/clusters", {"kind": "Cluster", "metadata": {"name": name, "labels": labels},
                                                    "spec": {"manager": "benchmark", "config": {}}})
            status = {"phase": "READY", "nodes": nodes, "observed_time": now,
                      "conditions": [{"type": "Ready", "status": "True", "reason": "Benchmark"}]}
            await send("PATCH", f"/api/v1/clusters/{name}/status", {"status": status})

        queue = iter(range(jobs))

        async def create_jobs() -> None:
            for index in queue:
                body = {"kind": "Job", "metadata": {"name": f"job-{index:05d}"},
                        "spec": {"replicas": 1, "run": "true", "resources": {"cpus": 1, "memory": 512}}}
                await send("POST", "/api/v1/namespaces/default/jobs", body)

        await asyncio.gather(*(create_jobs() for _ in range(32)))


async def count_placed(url: str, token: str) -> int:
    """Count placed Jobs in one consistent listing, listing again if its snapshot was compacted."""
    async with aiohttp.ClientSession(url, headers=bearer(token)) as session:
        while True:
            placed, token = 0, None
            while True:
                params = {"limit": "2000"}
                if token:
                    params["continue"] = token
                async with session.get("/api/v1/namespaces/default/jobs", params=params) as response:
                    page = await response.json()
                if response.status == 410:
                    break  # The snapshot was compacted between pages: start over.
                if response.status != 200:
                    raise RuntimeError(f"listing Jobs failed: {response.status} {page}")
                placed += sum(1 for item in page["items"] if item["status"]["placement"])
                token = page["metadata"].get("continue")
                if not token:
                    return placed


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def bootstrap_credentials(etcd_endpoint: str, url: str, directory: Path) -> tuple[str, Path]:
    """Run `skyshift bootstrap`; return the administrator's token and the controller manager's token file."""
    subprocess.run(
        [sys.executable, "-m", "skyshift_core.cli.main", "bootstrap", "--etcd", etcd_endpoint, "--server", url,
         "--output-dir", str(directory)],
        check=True, capture_output=True,
    )
    config = yaml.safe_load((directory / "config.yaml").read_text())
    (admin,) = [context for context in config["contexts"] if context["name"] == "admin"]
    return admin["token"], directory / "controller-manager.token"


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return response.read().decode()
    except OSError:
        return ""  # Not serving yet.


def cpu_seconds(pid: int) -> float:
    """User and system CPU time that process `pid` has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def counter_value(text: str, metric: str, label: str) -> float:
    for line in text.splitlines():
        if line.startswith(metric) and label in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--nodes-per-cluster", type=int, default=4)
    parser.add_argument("--cpus-per-node", type=int, default=32)
    parser.add_argument(
        "--workers", type=int, default=None,
        help=f"scheduler workers in the controller manager (default: its own, {DEFAULT_SCHEDULER_WORKERS})",
    )  # fmt: skip
    args = parser.parse_args()

    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    directory = Path(tempfile.mkdtemp(prefix="skyshift-sched-bench-", dir=base))
    etcd = EtcdProcess(data_dir=directory / "etcd").start()
    api_port = free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "skyshift_core.cli.main", "api-server", "--etcd", etcd.endpoint, "--port", str(api_port),
         "--log-level", "warning"],
    )
    url = f"http://127.0.0.1:{api_port}"
    manager = None
    try:
        if not wait_for_port("127.0.0.1", api_port, 30, pid=api.pid):
            raise RuntimeError("the API server did not start")
        token, token_file = bootstrap_credentials(etcd.endpoint, url, directory / "credentials")
        started = time.perf_counter()
        asyncio.run(populate(url, token, args.clusters, args.jobs, args.nodes_per_cluster, args.cpus_per_node))
        print(f"created {args.clusters} clusters and {args.jobs} pending jobs in {time.perf_counter() - started:.1f} s")

        config = directory / "controller-manager.yaml"
        scheduler = {"workers": args.workers} if args.workers else {}
        config.write_text(yaml.safe_dump({"controllers": ["scheduler"], "scheduler": scheduler}))
        metrics_port = free_port()
        manager = subprocess.Popen(
            [sys.executable, "-m", "skyshift_core.cli.main", "controller-manager", "--server", url, "--config", str(config),
             "--metrics-port", str(metrics_port), "--log-level", "warning", "--token-file", str(token_file)],
        )
        # Progress comes from the controller manager's own counter of committed placements, which is
        # far cheaper than listing every Job and so does not slow down what is measured.
        start = time.perf_counter()
        placed = 0
        processes = {"API server": api.pid, "controller manager": manager.pid, "etcd": etcd.pid}
        cpu_at_first: dict[str, float] = {}
        first: tuple[float, int] | None = None  # (time, placements) at the first scrape that saw any
        while placed < args.jobs:
            time.sleep(0.2)
            if manager.poll() is not None:
                raise RuntimeError(f"the controller manager exited with {manager.returncode}")
            metrics = scrape(metrics_port)
            placed = int(counter_value(metrics, "skyshift_scheduler_decision_duration_seconds_count", 'result="placed"'))
            if placed and first is None:
                first = (time.perf_counter(), placed)
                cpu_at_first = {name: cpu_seconds(pid) for name, pid in processes.items()}
        elapsed = time.perf_counter() - start
        cpu_used = {name: cpu_seconds(pid) - cpu_at_first.get(name, 0.0) for name, pid in processes.items()}
        placing = elapsed - (first[0] - start) if first else elapsed
        placed_while_placing = args.jobs - (first[1] if first else 0)
        listed = asyncio.run(count_placed(url, token))
        if listed != args.jobs:
            raise RuntimeError(f"the scheduler counted {placed} placements but {listed} Jobs are placed")
        peak = peak_rss_mib(manager.pid)
    finally:
        if manager is not None:
            stop_process(manager.pid)
        stop_process(api.pid)
        etcd.stop()
        shutil.rmtree(directory, ignore_errors=True)

    cycle = "skyshift_scheduler_cycle_duration_seconds"
    decision = "skyshift_scheduler_decision_duration_seconds"
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"clusters: {args.clusters}, jobs: {args.jobs}, scheduler workers: {args.workers or DEFAULT_SCHEDULER_WORKERS}")
    print(f"placed {args.jobs} jobs in {elapsed:.1f} s from controller manager start, including its startup "
          f"and informer sync: {args.jobs / elapsed:.0f} decisions/s")
    print(f"from the first placement seen to the last ({placed_while_placing} jobs in {placing:.1f} s, "
          f"scraped every 0.2 s): {placed_while_placing / placing:.0f} decisions/s (target >= 500)")
    print(f"cycle (filter, score, divide): p50 {quantile_from_histogram(metrics, cycle, 0.5) * 1000:.2f} ms, "
          f"p99 {quantile_from_histogram(metrics, cycle, 0.99) * 1000:.2f} ms (target p99 < 20 ms)")
    print(f"decision (cycle + status write): p50 {quantile_from_histogram(metrics, decision, 0.5, 'placed') * 1000:.2f} ms, "
          f"p99 {quantile_from_histogram(metrics, decision, 0.99, 'placed') * 1000:.2f} ms")
    print(f"controller manager peak resident memory: {peak:.0f} MiB (target < 300 MiB)")
    shares = ", ".join(f"{name} {seconds / placed_while_placing * 1000:.2f}" for name, seconds in cpu_used.items())
    total = sum(cpu_used.values()) / placed_while_placing * 1000
    print(f"CPU per decision from the first placement to the last, ms: {shares}; together {total:.2f}")


if __name__ == "__main__":
    main()
