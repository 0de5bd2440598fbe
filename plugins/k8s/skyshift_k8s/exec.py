"""Commands run in a replica's container through the pods/exec API (websocket), with `kubernetes.stream`.

`run_command` is one-shot: it returns the command's output and exit code. `run_interactive` wires
the local terminal to the command for `skyshift exec -it`, on a best-effort basis.

`kubernetes.stream` swaps the request function of the ApiClient it is given while it runs, so each
session uses its own ApiClient and never the one shared with the manager's other calls.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import sys
from collections.abc import Iterator
from typing import Any

from kubernetes import client
from kubernetes.stream import stream
from skyshift_core.cluster_manager import ExecResult

from skyshift_k8s.api import KubernetesApi, KubernetesApiError, to_cluster_manager_error
from skyshift_k8s.objects import CONTAINER_NAME

logger = logging.getLogger(__name__)

STDIN_CHANNEL, STDOUT_CHANNEL, STDERR_CHANNEL, RESIZE_CHANNEL = 0, 1, 2, 4
# Seconds a one-shot command may run before it is abandoned.
DEFAULT_EXEC_TIMEOUT_SECONDS = 300.0


def _open_session(
    api_client: client.ApiClient, pod: dict[str, Any], command: list[str], *, tty: bool, stdin: bool
) -> Any:
    metadata = pod["metadata"]
    core = client.CoreV1Api(api_client)
    return stream(
        core.connect_get_namespaced_pod_exec,
        metadata["name"],
        metadata["namespace"],
        command=command,
        container=CONTAINER_NAME,
        stdin=stdin,
        stdout=True,
        # A TTY carries both streams on stdout, and the API rejects a separate stderr with it.
        stderr=not tty,
        tty=tty,
        _preload_content=False,
    )


def _close_stdin(session: Any) -> None:
    # Closing one channel needs the v5 protocol, which kubernetes client releases from 37 speak.
    # With older releases the command gets end of input only when the session ends.
    close_channel = getattr(session, "close_channel", None)
    if close_channel is not None:
        close_channel(STDIN_CHANNEL)


def _exit_code(session: Any) -> int:
    code = session.returncode
    return int(code) if code is not None else 0


def run_command(
    api: KubernetesApi,
    pod: dict[str, Any],
    command: list[str],
    *,
    tty: bool = False,
    stdin: str | None = None,
    timeout_seconds: float = DEFAULT_EXEC_TIMEOUT_SECONDS,
) -> ExecResult:
    """Run `command` in the pod's container and wait for it to end (blocking: call it in an executor).

    `stdin`, when given, is written to the command's standard input, which is then closed.
    Raises KubernetesApiError when the session cannot be opened, for example when the container
    is not running."""
    metadata = pod["metadata"]
    action = f"running {command!r} in pod {metadata['namespace']}/{metadata['name']}"
    api_client = api.new_api_client()
    try:
        try:
            session = _open_session(api_client, pod, command, tty=tty, stdin=stdin is not None)
        except Exception as error:  # The client raises ApiException or websocket errors here.
            raise to_cluster_manager_error(error, action, api.cluster, api.host) from error
        try:
            if stdin is not None:
                if stdin:
                    session.write_stdin(stdin)
                _close_stdin(session)
            session.run_forever(timeout=timeout_seconds)
            if session.is_open():
                raise KubernetesApiError(
                    f"{action} on Kubernetes cluster {api.cluster!r} timed out: the command did not end within "
                    f"{timeout_seconds:g} s",
                    status=None,
                    reason="Timeout",
                )
            stdout = session.read_channel(STDOUT_CHANNEL)
            stderr = session.read_channel(STDERR_CHANNEL)
            return ExecResult(stdout=stdout, stderr=stderr, exit_code=_exit_code(session))
        finally:
            session.close()
    finally:
        api_client.close()


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    """Put the terminal in raw mode, so keys such as Ctrl-C reach the remote command."""
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run_interactive(api: KubernetesApi, pod: dict[str, Any], command: list[str], *, tty: bool, stdin: bool) -> int:
    """Connect this process's stdin, stdout and stderr to `command` in the pod; return its exit code.

    Best effort: with `tty` and a terminal on stdin, the terminal is switched to raw mode and its
    size is sent once at the start (later resizes are not forwarded)."""
    metadata = pod["metadata"]
    action = f"running {command!r} in pod {metadata['namespace']}/{metadata['name']}"
    api_client = api.new_api_client()
    try:
        session = _open_session(api_client, pod, command, tty=tty, stdin=stdin)
    except Exception as error:  # The client raises ApiException or websocket errors here.
        api_client.close()
        raise to_cluster_manager_error(error, action, api.cluster, api.host) from error

    input_fd = sys.stdin.fileno() if stdin else None
    terminal = tty and input_fd is not None and os.isatty(input_fd)
    try:
        if terminal:
            size = shutil.get_terminal_size()
            session.write_channel(RESIZE_CHANNEL, json.dumps({"Width": size.columns, "Height": size.lines}))
        with _raw_terminal(input_fd) if terminal else contextlib.nullcontext():
            _pump(session, input_fd)
        return _exit_code(session)
    finally:
        session.close()
        api_client.close()


def _pump(session: Any, input_fd: int | None) -> None:
    """Copy local input to the session and its output to stdout and stderr until it closes."""

    def copy_output() -> None:
        for channel, target in ((STDOUT_CHANNEL, sys.stdout), (STDERR_CHANNEL, sys.stderr)):
            data = session.read_channel(channel)
            if data:
                target.write(data)
                target.flush()

    while session.is_open():
        session.update(timeout=0.1)
        copy_output()
        if input_fd is None:
            continue
        readable, _, _ = select.select([input_fd], [], [], 0)
        if not readable:
            continue
        chunk = os.read(input_fd, 4096)
        if chunk:
            session.write_stdin(chunk.decode("utf-8", errors="replace"))
        else:
            _close_stdin(session)
            input_fd = None
    copy_output()
