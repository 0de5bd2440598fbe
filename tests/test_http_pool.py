"""The asyncio HTTP/1.1 connection pool behind AsyncSkyShiftClient, against small loopback servers
that respond as a real server or proxy may: chunked bodies, Connection: close, a kept-alive
connection closed, no response at all."""

from __future__ import annotations

import asyncio

import pytest

from skyshift_core.client import AsyncSkyShiftClient
from skyshift_core.errors import ServerUnreachableError, UnavailableError
from skyshift_core.http_pool import ConnectFailedError, ConnectionLostError, ConnectionPool
from skyshift_core.local.processes import free_port


class ScriptedServer:
    """A loopback server that reads each request and sends back `respond(request_bytes, index)`.

    `respond` returns the raw bytes to send, None to close the connection without a response, or
    (bytes, True) to send the bytes and then close the connection.
    `connections` counts accepted connections, and `requests` keeps every request received.
    """

    def __init__(self, respond):
        self.respond = respond
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def __aenter__(self) -> "ScriptedServer":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                response = self.respond(request, len(self.requests) - 1)
                if response is None:
                    break
                data, close = response if isinstance(response, tuple) else (response, False)
                writer.write(data)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def ok(body: bytes = b'{"ok":true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def test_pool_reuses_one_connection():
    async with ScriptedServer(lambda request, index: ok(b'{"n":%d}' % index)) as server:
        pool = ConnectionPool(server.url)
        try:
            bodies = [(await pool.request("GET", "/x", [], None, 5)).body for _ in range(3)]
        finally:
            pool.close()
    assert bodies == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    assert server.connections == 1


async def test_pool_sends_headers_and_body():
    async with ScriptedServer(lambda request, index: ok()) as server:
        pool = ConnectionPool(server.url)
        try:
            await pool.request("POST", "/api/v1/jobs?limit=1", [("Authorization", "Bearer t")], b'{"a":1}', 5)
            await pool.request("POST", "/empty", [], None, 5)
        finally:
            pool.close()
    first, second = server.requests
    assert first.startswith(b"POST /api/v1/jobs?limit=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n".encode() in first
    assert b"Authorization: Bearer t\r\n" in first
    assert b"Content-Length: 7\r\n" in first
    assert first.endswith(b'\r\n\r\n{"a":1}')
    # A POST without a body still sends Content-Length, because a server may otherwise wait for one.
    assert b"Content-Length: 0\r\n" in second


async def test_pool_reads_chunked_body():
    chunked = (
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\n{\"a\":\r\n3\r\n12}\r\n0\r\n\r\n"
    )
    async with ScriptedServer(lambda request, index: chunked) as server:
        pool = ConnectionPool(server.url)
        try:
            response = await pool.request("GET", "/x", [], None, 5)
            again = await pool.request("GET", "/x", [], None, 5)
        finally:
            pool.close()
    assert (response.status, response.reason, response.body) == (404, "Not Found", b'{"a":12}')
    assert again.body == b'{"a":12}'
    assert server.connections == 1


async def test_pool_reads_body_until_close():
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"
    async with ScriptedServer(lambda request, index: (close, True)) as server:
        pool = ConnectionPool(server.url)
        try:
            response = await pool.request("GET", "/x", [], None, 5)
        finally:
            pool.close()
    assert response.body == b"until the end"


async def test_pool_cut_response_fails():
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"
    async with ScriptedServer(lambda request, index: (cut, True)) as server:
        pool = ConnectionPool(server.url)
        try:
            with pytest.raises(ConnectionLostError, match="closed before the response was complete"):
                await pool.request("GET", "/x", [], None, 5)
        finally:
            pool.close()


async def test_pool_skips_connection_closed_by_server():
    # The server closes each connection after its response, without saying so in a header.
    async with ScriptedServer(lambda request, index: (ok(), True)) as server:
        pool = ConnectionPool(server.url)
        try:
            await pool.request("POST", "/x", [], b"{}", 5)
            await asyncio.sleep(0.05)
            # A POST is never sent twice, so it must not go out on the closed connection.
            assert (await pool.request("POST", "/x", [], b"{}", 5)).status == 200
        finally:
            pool.close()
    assert server.connections == 2


async def test_pool_honours_connection_close():
    async with ScriptedServer(lambda request, index: ok(extra=b"Connection: close\r\n")) as server:
        pool = ConnectionPool(server.url)
        try:
            for _ in range(3):
                assert (await pool.request("GET", "/x", [], None, 5)).status == 200
        finally:
            pool.close()
    assert server.connections == 3


async def test_get_retried_on_closed_connection():
    # The server responds to the first request, then closes the connection on the next one, as a
    # server does when its keep-alive timeout expires while the request is on its way.
    responses = iter([ok(b"1"), None, ok(b"2")])
    async with ScriptedServer(lambda request, index: next(responses)) as server:
        pool = ConnectionPool(server.url)
        try:
            assert (await pool.request("GET", "/x", [], None, 5)).body == b"1"
            assert (await pool.request("GET", "/x", [], None, 5)).body == b"2"
        finally:
            pool.close()
    assert server.connections == 2


async def test_post_not_retried_on_closed_connection():
    responses = iter([ok(b"1"), None, ok(b"2")])
    async with ScriptedServer(lambda request, index: next(responses)) as server:
        pool = ConnectionPool(server.url)
        try:
            await pool.request("POST", "/x", [], b"{}", 5)
            with pytest.raises(ConnectionLostError, match="closed before the response was complete"):
                await pool.request("POST", "/x", [], b"{}", 5)
            # The broken connection is gone; the next request opens a new one.
            assert (await pool.request("POST", "/x", [], b"{}", 5)).body == b"2"
        finally:
            pool.close()
    assert len(server.requests) == 3


async def test_pool_drops_connection_idle_past_keepalive():
    async with ScriptedServer(lambda request, index: ok()) as server:
        pool = ConnectionPool(server.url, keepalive=0.05)
        try:
            await pool.request("GET", "/x", [], None, 5)
            await asyncio.sleep(0.1)
            await pool.request("GET", "/x", [], None, 5)
        finally:
            pool.close()
    assert server.connections == 2


async def test_pool_timeout_closes_connection():
    async def never(reader, writer):
        await reader.read()  # Reads the request and never responds.

    server = await asyncio.start_server(never, "127.0.0.1", 0)
    pool = ConnectionPool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    try:
        with pytest.raises(TimeoutError):
            await pool.request("GET", "/x", [], None, 0.2)
        assert not pool._idle  # The connection that timed out is not reused.
    finally:
        pool.close()
        server.close()


async def test_pool_refused_connection():
    pool = ConnectionPool(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ConnectFailedError):
        await pool.request("GET", "/x", [], None, 5)


async def test_async_client_pool_errors():
    async with AsyncSkyShiftClient(f"http://127.0.0.1:{free_port()}", timeout=2) as client:
        with pytest.raises(ServerUnreachableError, match="start it with 'skyshift up'"):
            await client.get("jobs", "x")
        assert await client.is_ready() is False

    garbage = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nnot"
    async with ScriptedServer(lambda request, index: garbage) as server:
        async with AsyncSkyShiftClient(server.url, timeout=2) as client:
            with pytest.raises(UnavailableError, match="is .* a SkyShift API server"):
                await client.get("jobs", "x")
        # Names with characters that need escaping reach the server percent-encoded.
        async with AsyncSkyShiftClient(server.url, timeout=2) as client:
            with pytest.raises(UnavailableError):
                await client.get("jobs", "a b")
    assert server.requests[-1].startswith(b"GET /api/v1/namespaces/default/jobs/a%20b HTTP/1.1")


async def test_async_client_keeps_server_path():
    garbage = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    async with ScriptedServer(lambda request, index: garbage) as server:
        # A server behind a proxy path: every request goes below that path.
        async with AsyncSkyShiftClient(server.url + "/skyshift/", timeout=2) as client:
            await client.get("jobs", "web")
            await client.list("jobs", label_selector="app=web,tier!=db")
    assert server.requests[0].startswith(b"GET /skyshift/api/v1/namespaces/default/jobs/web HTTP/1.1")
    assert server.requests[1].startswith(b"GET /skyshift/api/v1/namespaces/default/jobs?label_selector=app%3Dweb%2Ctier%21%3Ddb")
