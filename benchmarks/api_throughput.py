"""API server throughput against raw etcd, and watch delivery latency, measured in one run.

Starts its own etcd (data on /dev/shm when available) and one API server process on free loopback
ports, then measures with the same concurrency on both sides:
  * raw etcd puts and gets through aetcd, the client the store uses;
  * creates, gets and lists of Jobs through the API server over HTTP;
  * the delay from a write to its arrival at each of N concurrent watchers.

Run: python benchmarks/api_throughput.py [--objects 2000] [--concurrency 16] [--watchers 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aetcd
import httpx

from skyshift_core.auth.bootstrap import bootstrap_admin_token, run_sync
from skyshift_core.local.etcd import EtcdProcess
from skyshift_core.local.processes import free_port, stop_process, wait_for_port
from skyshift_core.store import Store


def cpu_seconds(pid: int) -> float:
    """User and system CPU time that process `pid` has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Return the pids of the direct children of `pid`, such as uvicorn's worker processes."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.extend(int(child) for child in (task / "children").read_text().split())
    return found


class CpuMeter:
    """CPU time per operation of named processes over one measurement, read from /proc."""

    def __init__(self, processes: dict[str, list[int]]):
        self.processes = processes
        self.per_operation: dict[str, dict[str, float]] = {}

    def snapshot(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in self.processes.items()}

    def record(self, measurement: str, before: dict[str, float], count: int) -> None:
        after = self.snapshot()
        self.per_operation[measurement] = {name: (after[name] - before[name]) / count for name in after}


async def run_concurrently(
    count: int, concurrency: int, operation, meter: CpuMeter | None = None, name: str = ""
) -> float:
    """Run operation(i) for i in range(count) with `concurrency` in flight; return operations per second."""
    queue = iter(range(count))

    async def worker() -> None:
        for index in queue:
            await operation(index)

    before = meter.snapshot() if meter else {}
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = count / (time.perf_counter() - start)
    if meter:
        meter.record(name, before, count)
    return rate


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


async def measure_raw(endpoint: str, objects: int, concurrency: int, meter: CpuMeter) -> dict[str, float]:
    host, port = endpoint.split(":")
    payload = json.dumps({"kind": "Job", "metadata": {"name": "x" * 20}, "spec": {"run": "true"}}).encode() * 4
    async with aetcd.Client(host=host, port=int(port)) as client:

        async def put(index: int) -> None:
            await client.put(f"/raw/jobs/default/job-{index}".encode(), payload)

        async def get(index: int) -> None:
            await client.get(f"/raw/jobs/default/job-{index}".encode())

        return {
            "put": await run_concurrently(objects, concurrency, put, meter, "etcd put (raw aetcd)"),
            "get": await run_concurrently(objects, concurrency, get, meter, "etcd get (raw aetcd)"),
        }


class LeanHttpConnection:
    """One kept-alive HTTP/1.1 connection that sends a request and reads its response.

    The load generator shares the two CPUs with the server it measures, so it uses this minimal
    client rather than aiohttp, which spends several times more CPU per request: 170 us against
    about 40 us on the benchmark machine. It sends the same requests (method, path, headers and
    JSON body) and reads every response body in full. It handles only responses with a
    Content-Length, which the API server sends for everything but watches and logs.
    """

    def __init__(self, host: str, port: int, token: str):
        self.host = host
        self.port = port
        self.head = f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> "LeanHttpConnection":
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def request(self, method: str, target: str, data: Any = None) -> tuple[int, bytes]:
        """Send one request and return its status code and body."""
        if data is None:
            head = f"{method} {target} HTTP/1.1\r\n{self.head}\r\n"
            self.writer.write(head.encode())
        else:
            body = json.dumps(data).encode()
            head = f"{method} {target} HTTP/1.1\r\n{self.head}Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            self.writer.write(head.encode() + body)
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        length = None
        for line in header.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"{method} {target}: the response has no Content-Length; this client cannot read it")
        content = await self.reader.readexactly(length)
        if status >= 300:
            raise RuntimeError(f"{method} {target} failed with HTTP {status}: {content[:200]!r}")
        return status, content

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


class LeanHttpPool:
    """Kept-alive `LeanHttpConnection`s, one per request in flight, as aiohttp's pool with `limit` keeps."""

    def __init__(self, connections: list[LeanHttpConnection]):
        self.connections = connections
        self.idle: asyncio.Queue[LeanHttpConnection] = asyncio.Queue()
        for connection in connections:
            self.idle.put_nowait(connection)

    @classmethod
    async def open(cls, host: str, port: int, token: str, size: int) -> "LeanHttpPool":
        return cls([await LeanHttpConnection(host, port, token).connect() for _ in range(size)])

    async def send(self, method: str, target: str, data: Any = None) -> None:
        """Send one request on an idle connection and read its response."""
        connection = await self.idle.get()
        try:
            await connection.request(method, target, data)
        finally:
            self.idle.put_nowait(connection)

    async def close(self) -> None:
        for connection in self.connections:
            await connection.close()


async def measure_api(url: str, token: str, objects: int, concurrency: int, meter: CpuMeter) -> dict[str, float]:
    host, port = url.removeprefix("http://").split(":")
    pool = await LeanHttpPool.open(host, int(port), token, concurrency)
    send = pool.send

    async def create(index: int) -> None:
        body = {"kind": "Job", "metadata": {"name": f"job-{index}"}, "spec": {"run": "true"}}
        await send("POST", "/api/v1/namespaces/default/jobs", body)

    async def get(index: int) -> None:
        await send("GET", f"/api/v1/namespaces/default/jobs/job-{index}")

    async def list_page(index: int) -> None:
        await send("GET", "/api/v1/namespaces/default/jobs?limit=100")

    try:
        return {
            "create": await run_concurrently(objects, concurrency, create, meter, "API create"),
            "get": await run_concurrently(objects, concurrency, get, meter, "API get"),
            "list of 100": await run_concurrently(
                max(objects // 20, 50), concurrency, list_page, meter, "API list of 100"
            ),
        }
    finally:
        await pool.close()


async def measure_watch_latency(url: str, token: str, watchers: int, writes: int) -> list[float]:
    """Open `watchers` watch streams, write `writes` objects, and return every delivery delay in ms."""
    limits = httpx.Limits(max_connections=watchers + 4)
    delays: list[float] = []
    sent_at: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120, headers=bearer(token)) as client:
        await client.post("/api/v1/namespaces", json={"kind": "Namespace", "metadata": {"name": "watched"}})
        start = (await client.get("/api/v1/namespaces/watched/jobs")).json()["metadata"]["resource_version"]
        ready = asyncio.Semaphore(0)

        async def watch() -> None:
            received = 0
            params = {"watch": "true", "resource_version": start, "timeout_seconds": 120}
            async with client.stream("GET", "/api/v1/namespaces/watched/jobs", params=params) as response:
                ready.release()
                async for line in response.aiter_lines():
                    event = json.loads(line)
                    if event["type"] != "ADDED":
                        continue
                    delays.append((time.perf_counter() - sent_at[event["object"]["metadata"]["name"]]) * 1000)
                    received += 1
                    if received == writes:
                        return

        tasks = [asyncio.create_task(watch()) for _ in range(watchers)]
        for _ in range(watchers):
            await ready.acquire()
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=bearer(token)) as writer:
            for index in range(writes):
                name = f"w-{index}"
                sent_at[name] = time.perf_counter()
                body = {"kind": "Job", "metadata": {"name": name}}
                (await writer.post("/api/v1/namespaces/watched/jobs", json=body)).raise_for_status()
                await asyncio.sleep(0.05)
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    return delays


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def admin_token(endpoint: str) -> str:
    """Bootstrap an administrator in etcd and return its token, as the test fixtures do."""

    async def bootstrap() -> str:
        store = Store([endpoint])
        try:
            return await bootstrap_admin_token(store)
        finally:
            await store.close()

    return run_sync(bootstrap)


def start_api_server(endpoint: str, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable, "-c",
        "from skyshift_core.api.app import ApiSettings; from skyshift_core.api.server import serve; "
        f"serve(ApiSettings(etcd_endpoints=[{endpoint!r}]), port={port}, log_level='warning', workers={workers})",
    ]  # fmt: skip
    process = subprocess.Popen(command)
    if not wait_for_port("127.0.0.1", port, 30, pid=process.pid):
        raise RuntimeError("the API server did not start")
    return process, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=2000, help="objects written and read per measurement")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight on both sides")
    parser.add_argument("--watchers", type=int, default=100, help="concurrent watch streams")
    parser.add_argument("--api-workers", type=int, default=1, help="API server worker processes")
    parser.add_argument("--writes", type=int, default=50, help="objects written while the watchers listen")
    args = parser.parse_args()

    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    directory = Path(tempfile.mkdtemp(prefix="skyshift-bench-", dir=base))
    etcd = EtcdProcess(data_dir=directory / "etcd").start()
    api_process, url = start_api_server(etcd.endpoint, args.api_workers)
    try:
        token = admin_token(etcd.endpoint)
        processes = {"load generator": [os.getpid()], "API server": [api_process.pid], "etcd": [etcd.pid]}
        if args.api_workers > 1:
            processes.pop("API server")
            for number, pid in enumerate(children(api_process.pid), 1):
                processes[f"worker {number}"] = [pid]
        meter = CpuMeter(processes)
        raw = asyncio.run(measure_raw(etcd.endpoint, args.objects, args.concurrency, meter))
        api = asyncio.run(measure_api(url, token, args.objects, args.concurrency, meter))
        delays = asyncio.run(measure_watch_latency(url, token, args.watchers, args.writes))
    finally:
        stop_process(api_process.pid)
        etcd.stop()
        shutil.rmtree(directory, ignore_errors=True)

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"objects: {args.objects}, concurrency: {args.concurrency}, API server workers: {args.api_workers}")
    rates = {"etcd put (raw aetcd)": raw["put"], "etcd get (raw aetcd)": raw["get"]}
    rates.update({f"API {name}": rate for name, rate in api.items()})
    columns = list(meter.processes)
    print(f"{'operation':<28}{'per second':>12}   CPU us per operation: " + " / ".join(columns))
    for name, rate in rates.items():
        cpu = " / ".join(f"{meter.per_operation[name][column] * 1e6:.0f}" for column in columns)
        print(f"{name:<28}{rate:>12.0f}   {cpu}")
    print(f"API create / raw put ratio: {api['create'] / raw['put']:.2f} (target >= 0.50)")
    print(f"API get / raw get ratio: {api['get'] / raw['get']:.2f}")
    print(
        f"watch delivery with {args.watchers} watchers, {len(delays)} deliveries: "
        f"p50 {statistics.median(delays):.1f} ms, p99 {percentile(delays, 0.99):.1f} ms, "
        f"max {max(delays):.1f} ms (target p99 < 100 ms)"
    )


if __name__ == "__main__":
    main()
