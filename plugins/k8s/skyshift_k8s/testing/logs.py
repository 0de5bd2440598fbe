"""Container logs written by the simulated kubelet and served by the pods/log endpoint."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

LogKey = tuple[str, str, int]  # (pod uid, container name, restart count of that container)
LogListener = Callable[["LogLine | None"], None]


@dataclass(frozen=True)
class LogLine:
    time: datetime
    text: str  # one line of output, without the trailing newline


@dataclass
class _ContainerLog:
    lines: list[LogLine] = field(default_factory=list)
    finished: bool = False
    listeners: set[LogListener] = field(default_factory=set)


class LogStore:
    """Output of every container instance, kept per restart so that `previous=true` works.

    Followers (the `follow=true` streams) get each new line and then None when the container
    instance has exited.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[LogKey, _ContainerLog] = {}

    def append(self, key: LogKey, text: str, time: datetime | None = None) -> None:
        line = LogLine(time or datetime.now(UTC), text)
        with self._lock:
            log = self._logs.setdefault(key, _ContainerLog())
            log.lines.append(line)
            listeners = list(log.listeners)
        for listener in listeners:
            listener(line)

    def finish(self, key: LogKey) -> None:
        """Mark a container instance as exited and end its followers' streams."""
        with self._lock:
            log = self._logs.setdefault(key, _ContainerLog())
            log.finished = True
            listeners = list(log.listeners)
            log.listeners.clear()
        for listener in listeners:
            listener(None)

    def read(self, key: LogKey) -> tuple[list[LogLine], bool]:
        """Return the lines so far and whether the container instance has exited."""
        with self._lock:
            log = self._logs.get(key, _ContainerLog())
            return list(log.lines), log.finished

    def follow(self, key: LogKey, listener: LogListener) -> tuple[list[LogLine], bool]:
        """Return the lines so far and, unless the instance has exited, subscribe `listener`."""
        with self._lock:
            log = self._logs.setdefault(key, _ContainerLog())
            if not log.finished:
                log.listeners.add(listener)
            return list(log.lines), log.finished

    def unfollow(self, key: LogKey, listener: LogListener) -> None:
        with self._lock:
            log = self._logs.get(key)
            if log is not None:
                log.listeners.discard(listener)

    def forget_pod(self, pod_uid: str) -> None:
        """Drop a deleted pod's logs and end the streams that follow them."""
        with self._lock:
            keys = [key for key in self._logs if key[0] == pod_uid]
            removed = [self._logs.pop(key) for key in keys]
        for log in removed:
            for listener in log.listeners:
                listener(None)

    def forget_pods_except(self, live_pod_uids: set[str]) -> None:
        """Drop the logs of every pod whose uid is not in `live_pod_uids` (deleted pods)."""
        with self._lock:
            gone = {key[0] for key in self._logs if key[0] not in live_pod_uids}
        for pod_uid in gone:
            self.forget_pod(pod_uid)

    def close_all_followers(self) -> None:
        """End every follow stream (used when the HTTP server stops)."""
        with self._lock:
            listeners = [listener for log in self._logs.values() for listener in log.listeners]
            for log in self._logs.values():
                log.listeners.clear()
        for listener in listeners:
            listener(None)
