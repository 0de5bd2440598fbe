"""Process helpers that work on machines whose PID 1 does not reap orphans.

`kill -0` succeeds on a zombie, so liveness is read from /proc/PID/status instead.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on `host` now (another process may still take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def is_alive(pid: int) -> bool:
    """True when the process exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    for line in status.splitlines():
        if line.startswith("State:"):
            return "Z" not in line.split()[1]
    return True


def reap(pid: int) -> None:
    """Collect the exit status of our own child, if it is one, so it does not stay a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_process(pid: int, timeout: float = 10.0) -> bool:
    """Send SIGTERM, wait up to `timeout` seconds, then SIGKILL. Return True if it was running."""
    if not is_alive(pid):
        reap(pid)
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap(pid)
        if not is_alive(pid):
            return True
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    for _ in range(100):
        reap(pid)
        if not is_alive(pid):
            break
        time.sleep(0.05)
    return True


def wait_for_port(host: str, port: int, timeout: float, pid: int | None = None) -> bool:
    """Wait until something accepts TCP connections on host:port; stop early if `pid` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid is not None and not is_alive(pid):
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
