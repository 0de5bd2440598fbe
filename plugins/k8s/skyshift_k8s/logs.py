"""Replica output through the pods/log API, for `KubernetesClusterManager.logs`.

Without follow, each replica's log is read once with timestamps and the lines of all replicas are
merged in time order. With follow, one thread per replica streams its pod's log as lines arrive,
from the moment the pod's container starts. A poll loop looks for pods that have not started yet.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from skyshift_k8s.api import KubernetesApi, KubernetesApiError
from skyshift_k8s.objects import CONTAINER_NAME
from skyshift_k8s.states import is_terminal, share_finished, share_pods_by_replica

logger = logging.getLogger(__name__)

# Returns the share's workloads (none once it is deleted) and its pods.
FindWork = Callable[[], Awaitable[tuple[list[dict[str, Any]], list[dict[str, Any]]]]]

# RFC 3339 time at the start of a line read with timestamps=true, such as 2024-05-01T10:00:00.123456789Z.
_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d) (.*)$", re.DOTALL)
_END = object()


def container_started(pod: dict[str, Any] | None) -> bool:
    """Tell whether the pod's container has run, so that the pods/log API has a log for it."""
    if pod is None:
        return False
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != CONTAINER_NAME:
            continue
        state = status.get("state") or {}
        return "running" in state or "terminated" in state or bool((status.get("lastState") or {}).get("terminated"))
    return False


def split_timestamp(line: str) -> tuple[tuple[str, str], str]:
    """Split a timestamped log line into a sort key and the text; lines without a time sort first."""
    match = _TIMESTAMP.match(line)
    if match is None:
        return ("", ""), line
    # Kubernetes drops trailing zeros of the fraction, so pad it before comparing.
    return (match.group(1), (match.group(2) or "").ljust(9, "0")), match.group(4)


async def read_logs(
    api: KubernetesApi, replicas: dict[int, dict[str, Any] | None], tail: int | None
) -> list[tuple[int, str]]:
    """Read the current log of each replica's pod; return (replica, line) pairs in time order."""

    async def read_one(index: int, pod: dict[str, Any]) -> list[tuple[tuple[str, str], int, int, str]]:
        metadata = pod["metadata"]
        arguments: dict[str, Any] = {"container": CONTAINER_NAME, "timestamps": True}
        if tail is not None:
            arguments["tail_lines"] = tail
        try:
            data = await api.call(
                api.core.read_namespaced_pod_log, metadata["name"], metadata["namespace"], raw=True,
                action=f"reading the log of pod {metadata['namespace']}/{metadata['name']}", **arguments,
            )  # fmt: skip
        except KubernetesApiError as error:
            if error.status == 400:  # The container has not started yet (or is waiting to restart).
                logger.debug("No log yet for replica %d: %s", index, error)
                return []
            raise
        lines = data.decode("utf-8", errors="replace").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        entries = []
        for position, line in enumerate(lines):
            key, text = split_timestamp(line)
            entries.append((key, index, position, text))
        return entries

    started = [(index, pod) for index, pod in sorted(replicas.items()) if container_started(pod)]
    results = await asyncio.gather(*(read_one(index, pod) for index, pod in started))
    merged = sorted(entry for entries in results for entry in entries)
    return [(index, text) for _, index, _, text in merged]


class _PodLogStream:
    """A thread that follows one pod's log and hands each line to the event loop."""

    def __init__(
        self, api: KubernetesApi, index: int, pod: dict[str, Any], tail: int | None, emit: Callable[[Any], None]
    ):
        self.api = api
        self.index = index
        self.pod = pod
        self.tail = tail
        self.emit = emit
        self.stopping = threading.Event()
        self.response: Any = None
        self.thread = threading.Thread(target=self._run, name=f"follow-log-{index}", daemon=True)

    def _run(self) -> None:
        metadata = self.pod["metadata"]
        arguments: dict[str, Any] = {"container": CONTAINER_NAME, "follow": True}
        if self.tail is not None:
            arguments["tail_lines"] = self.tail
        try:
            # No timeout, because a replica may print nothing for hours (and client releases from 36
            # accept no timeout for reading alone). stop() ends the stream instead.
            self.response = self.api.core.read_namespaced_pod_log(
                metadata["name"], metadata["namespace"], _preload_content=False, **arguments
            )
            buffer = b""
            for chunk in self.response.stream(amt=None, decode_content=False):
                if self.stopping.is_set():
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self.emit((self.index, line.decode("utf-8", errors="replace")))
            if buffer and not self.stopping.is_set():
                self.emit((self.index, buffer.decode("utf-8", errors="replace")))
        except Exception as error:  # A cut connection or a deleted pod ends this replica's stream.
            if not self.stopping.is_set():
                logger.info("Following the log of pod %s/%s ended: %s", metadata["namespace"], metadata["name"], error)
        finally:
            if self.response is not None:
                self.response.close()
                self.response.release_conn()
            self.emit((self.index, _END))

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        response = self.response
        sock = getattr(getattr(response, "connection", None), "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # Already closed.


async def follow_logs(
    api: KubernetesApi, find_work: FindWork, selected: list[int], tail: int | None, poll_seconds: float
) -> AsyncIterator[tuple[int, str]]:
    """Yield (replica, line) as the replicas in `selected` write output, until every one of them has
    ended (or finished without starting) or the work is deleted.

    A replica whose pod has not started is looked for again every `poll_seconds`. Following
    ends at the end of a container's run: a container restarted later is not followed."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def emit(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:
            pass  # The event loop is closed, so no consumer reads the lines any more.

    streams: dict[int, _PodLogStream] = {}
    ended: set[int] = set()
    try:
        while True:
            if len(streams) < len(selected):
                workloads, pods = await find_work()
                if not workloads:
                    return  # Deleted while being followed.
                replicas = share_pods_by_replica(workloads, pods)
                for index in selected:
                    pod = replicas.get(index)
                    if index in streams or index in ended:
                        continue
                    if container_started(pod):
                        streams[index] = _PodLogStream(api, index, pod, tail, emit)
                        streams[index].start()
                    elif (pod is not None and is_terminal(pod)) or share_finished(workloads):
                        # Finished without running, for example an image that never pulled.
                        ended.add(index)
            if len(ended) >= len(selected):
                return

            timeout = poll_seconds if len(streams) < len(selected) else None
            # asyncio.timeout keeps a cancellation that arrives with an item, which wait_for drops on 3.11.
            try:
                async with asyncio.timeout(timeout):
                    item = await queue.get()
            except TimeoutError:
                continue
            while True:
                index, line = item
                if line is _END:
                    ended.add(index)
                else:
                    yield index, line
                if queue.empty():
                    break
                item = queue.get_nowait()
    finally:
        for stream in streams.values():
            stream.stop()
