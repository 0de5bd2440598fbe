"""The pods/exec endpoint over websocket, with the v4/v5 channel protocols of kube-apiserver.

Each binary frame starts with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 error (a JSON
`Status` sent once when the command ends), 4 resize. v5.channel.k8s.io adds channel 255, with
which the client closes its stdin. The command is simulated by the kubelet's shell simulator,
so `echo`, `sleep`, `exit`, `cat`, `env` and the other commands of `shell.py` work.

With tty=true the session behaves as a terminal in its default mode would: a carriage return
typed on stdin reaches the command as a newline (ICRNL), each newline of the output goes out as
carriage return and newline (ONLCR), and stderr is merged into stdout. Typed input is not echoed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from typing import TYPE_CHECKING, Any

from fastapi import WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from . import errors
from .resources import PODS

if TYPE_CHECKING:
    from .fake_apiserver import FakeApiServer

logger = logging.getLogger(__name__)

V4_PROTOCOL = "v4.channel.k8s.io"
V5_PROTOCOL = "v5.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255

# NOTE: with stdin=true the simulated command starts once the client closes stdin (v5 channel 255),
# closes the websocket, or sends nothing for this long, because the simulator needs all of stdin
# up front. Interactive sessions that wait for output before writing more input do not work.
STDIN_IDLE_SECONDS = 0.5


def _exit_status(command: list[str], exit_code: int) -> dict[str, Any]:
    if exit_code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command {command}, exit code {exit_code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
    }


def _flag(websocket: WebSocket, name: str) -> bool:
    return websocket.query_params.get(name, "false") in ("true", "True", "1", "t", "T", "TRUE")


async def _deny(websocket: WebSocket, error: errors.ApiError) -> None:
    try:
        await websocket.send_denial_response(JSONResponse(error.to_status(), status_code=error.code))
    except RuntimeError:
        await websocket.close(code=1008, reason=error.message[:120])


async def _read_stdin(websocket: WebSocket, protocol: str, server: FakeApiServer) -> str:
    chunks: list[bytes] = []
    while True:
        try:
            message = await asyncio.wait_for(websocket.receive(), timeout=STDIN_IDLE_SECONDS)
        except TimeoutError:
            break
        if message["type"] == "websocket.disconnect":
            break
        data = message.get("bytes") or (message.get("text") or "").encode()
        if not data:
            continue
        if data[0] == CLOSE and protocol == V5_PROTOCOL:
            if data[1:2] == bytes([STDIN]):
                break
        elif data[0] == STDIN:
            chunks.append(data[1:])
        elif data[0] == RESIZE:
            try:
                server.exec_resizes.append(json.loads(data[1:]))
            except ValueError as error:
                logger.warning("Exec session sent a resize message that is not JSON (%r): %s", data[1:], error)
    return b"".join(chunks).decode(errors="replace")


async def handle_exec(server: FakeApiServer, websocket: WebSocket) -> None:
    """Serve one exec session; errors before the upgrade get a plain HTTP Status response."""
    namespace, name = websocket.path_params["namespace"], websocket.path_params["name"]
    requested = [p.strip() for value in websocket.scope.get("subprotocols", []) for p in value.split(",")]
    protocol = next((p for p in requested if p in (V5_PROTOCOL, V4_PROTOCOL)), None)
    command = websocket.query_params.getlist("command")
    try:
        if protocol is None:
            raise errors.bad_request(
                f"unsupported exec subprotocols {requested}: request {V5_PROTOCOL} or {V4_PROTOCOL}"
            )
        if not command:
            raise errors.bad_request("you must specify at least 1 command")
        pod = server.store.get(PODS, namespace, name)
        container = websocket.query_params.get("container") or pod["spec"]["containers"][0]["name"]
        if server.kubelet is None:
            raise errors.bad_request(
                f"pod {name} cannot run commands: no simulated kubelet is attached to the fake API server"
            )
        server.kubelet.check_exec_target(pod, container)
    except errors.ApiError as err:
        await _deny(websocket, err)
        return

    await websocket.accept(subprotocol=protocol)
    tty = _flag(websocket, "tty")
    send_stdout, send_stderr = _flag(websocket, "stdout"), _flag(websocket, "stderr")
    stdin = await _read_stdin(websocket, protocol, server) if _flag(websocket, "stdin") else ""
    if tty:
        stdin = stdin.replace("\r", "\n")
    run = server.kubelet.simulate_exec(pod, container, command, stdin)
    try:
        elapsed = 0.0
        for output in run.outputs:
            if output.offset > elapsed:
                await asyncio.sleep(output.offset - elapsed)
                elapsed = output.offset
            channel = STDOUT if output.stream == "stdout" or tty else STDERR
            if (channel == STDOUT and send_stdout) or (channel == STDERR and send_stderr):
                text = output.text + "\n"
                await websocket.send_bytes(bytes([channel]) + (text.replace("\n", "\r\n") if tty else text).encode())
        if math.isinf(run.duration):
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
            return
        await asyncio.sleep(max(0.0, run.duration - elapsed))
        await websocket.send_bytes(bytes([ERROR]) + json.dumps(_exit_status(command, run.exit_code or 0)).encode())
        await websocket.close()
    except (WebSocketDisconnect, RuntimeError) as err:
        logger.debug("Exec session in pod %s/%s ended early: %s", namespace, name, err)
