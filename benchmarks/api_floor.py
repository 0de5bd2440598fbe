"""The least CPU that an API create can cost in Python on this machine, for reading api_throughput.py.

`api_throughput.py` compares the API server's create rate with raw etcd puts. This script measures
two servers that do only the unavoidable part of a create, with the same load generator, the same
concurrency and the same etcd client, in one run next to the raw puts:

  * `protocol`: an asyncio protocol on uvloop that parses HTTP/1.1 with httptools. It validates
    the body as a Job with pydantic and encodes it. It writes the Job with the API server's
    conditional create, one etcd transaction through aetcd, and responds with 201 and the
    encoded object in one write;
  * `uvicorn`: the same work as a bare ASGI application under uvicorn (uvloop and httptools).

Neither authenticates, authorizes, audits, counts metrics, fills in metadata or handles anything
but a POST with a Content-Length. They are measuring instruments, not servers to deploy. The
SkyShift API server does all of that on top of this work, so it spends more CPU per create.

Run: python benchmarks/api_floor.py [--objects 4000] [--concurrency 16] [--rounds 2]
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
from pathlib import Path

import aetcd
from aetcd import rpc

from api_throughput import CpuMeter, LeanHttpPool, measure_raw, run_concurrently
from skyshift_core.local.etcd import EtcdProcess
from skyshift_core.local.processes import free_port, stop_process, wait_for_port
from skyshift_core.objects import Job

CREATE_PATH = "/api/v1/namespaces/default/jobs"


class FloorCreate:
    """Validate a Job, encode it and store it with a conditional create: the work of every create."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.client: aetcd.Client | None = None

    async def connect(self) -> None:
        host, port = self.endpoint.split(":")
        self.client = aetcd.Client(host=host, port=int(port))
        await self.client.connect()

    async def __call__(self, body: bytes) -> tuple[int, bytes]:
        job = Job.model_validate_json(body)
        value = job.model_dump_json().encode()
        key = f"/skyshift/jobs/default/{job.metadata.name}".encode()
        created = rpc.Compare(key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0)
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value))
        request = rpc.TxnRequest(compare=[created], success=[put], failure=[])
        response = await self.client.kvstub.Txn(request, timeout=10.0, metadata=self.client.metadata)
        return (201, value) if response.succeeded else (409, b'{"reason":"AlreadyExists"}')


class FloorProtocol(asyncio.Protocol):
    """An HTTP/1.1 protocol over httptools, with one task per request and one write per response."""

    create: FloorCreate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        import httptools

        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body, self.body = b"".join(self.body), []
        asyncio.get_running_loop().create_task(self.respond(body))

    async def respond(self, body: bytes) -> None:
        status, content = await self.create(body)
        head = b"HTTP/1.1 %d \r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % (status, len(content))
        self.transport.write(head + content)


def serve_protocol(endpoint: str, port: int) -> None:
    import uvloop

    async def main() -> None:
        FloorProtocol.create = FloorCreate(endpoint)
        await FloorProtocol.create.connect()
        server = await asyncio.get_running_loop().create_server(FloorProtocol, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


def serve_uvicorn(endpoint: str, port: int) -> None:
    import uvicorn

    create = FloorCreate(endpoint)

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await create.connect()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        status, content = await create(b"".join(chunks))
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")


SERVERS = {"protocol": serve_protocol, "uvicorn": serve_uvicorn}


async def measure_creates(port: int, objects: int, concurrency: int, meter: CpuMeter, name: str) -> float:
    pool = await LeanHttpPool.open("127.0.0.1", port, "unused", concurrency)

    async def create(index: int) -> None:
        body = {"kind": "Job", "metadata": {"name": f"{name}-{index}"}, "spec": {"run": "true"}}
        await pool.send("POST", CREATE_PATH, body)

    try:
        await run_concurrently(min(300, objects), concurrency, lambda index: create(objects + index))  # warm up
        return await run_concurrently(objects, concurrency, create, meter, name)
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=4000, help="objects written per measurement")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight on both sides")
    parser.add_argument("--rounds", type=int, default=2, help="measurements of each side, interleaved")
    parser.add_argument("--serve", choices=sorted(SERVERS), help=argparse.SUPPRESS)
    parser.add_argument("--etcd", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        SERVERS[args.serve](args.etcd, args.port)
        return

    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    directory = Path(tempfile.mkdtemp(prefix="skyshift-floor-", dir=base))
    etcd = EtcdProcess(data_dir=directory / "etcd").start()
    servers: dict[str, tuple[subprocess.Popen, int]] = {}
    try:
        for mode in SERVERS:
            port = free_port()
            command = [sys.executable, __file__, "--serve", mode, "--etcd", etcd.endpoint, "--port", str(port)]
            servers[mode] = (subprocess.Popen(command), port)
            if not wait_for_port("127.0.0.1", port, 30, pid=servers[mode][0].pid):
                raise RuntimeError(f"the {mode} floor server did not start")
        processes = {"load generator": [os.getpid()], "etcd": [etcd.pid]}
        processes.update({f"{mode} server": [process.pid] for mode, (process, _) in servers.items()})
        meter = CpuMeter(processes)
        rows: list[tuple[str, float, float, dict[str, float]]] = []
        for round_number in range(1, args.rounds + 1):
            raw = asyncio.run(measure_raw(etcd.endpoint, args.objects, args.concurrency, meter))["put"]
            rows.append((f"raw put, round {round_number}", raw, 1.0, meter.per_operation["etcd put (raw aetcd)"]))
            for mode, (_, port) in servers.items():
                name = f"{mode}{round_number}"
                rate = asyncio.run(measure_creates(port, args.objects, args.concurrency, meter, name))
                rows.append((f"{mode} create, round {round_number}", rate, rate / raw, meter.per_operation[name]))
    finally:
        for process, _ in servers.values():
            stop_process(process.pid)
        etcd.stop()
        shutil.rmtree(directory, ignore_errors=True)

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"objects: {args.objects}, concurrency: {args.concurrency}")
    columns = list(processes)
    print(f"{'measurement':<28}{'per second':>11}{'/ raw put':>10}   CPU us per operation: " + " / ".join(columns))
    for label, rate, ratio, cpu in rows:
        used = " / ".join(f"{cpu[column] * 1e6:.0f}" for column in columns)
        print(f"{label:<28}{rate:>11.0f}{ratio:>10.2f}   {used}")


if __name__ == "__main__":
    main()
