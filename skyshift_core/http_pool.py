"""A small asyncio HTTP/1.1 client with kept-alive connections, for the controllers' API requests.

Controllers send two or more requests per reconcile, thousands per second under load, on the same
two CPUs as the API server and etcd. On the benchmark machine aiohttp spent about 135 us of CPU on
one such request and this client about 40 us. It does only what the API client needs: one server,
no cookies, no redirects, no proxies and no compression. Responses are parsed by httptools (llhttp, the parser
uvicorn uses), which handles Content-Length, chunked bodies and keep-alive.

This pool serves requests whose response is read whole. The async client's watches still go
through aiohttp.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

# Methods that RFC 9110 defines as idempotent: sending one of them again after a connection was
# lost before any response byte arrived cannot apply it twice.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class ConnectFailedError(OSError):
    """A new connection to the server could not be opened (refused, unreachable, TLS handshake)."""


class ConnectionLostError(OSError):
    """The connection closed or broke before the whole response arrived."""


class NoResponseError(ConnectionLostError):
    """A new connection closed before any byte of the response arrived.

    Unlike a kept-alive connection, which the server may close at any time, a new one closed this
    way points to a server that does not speak HTTP/1.1 in the clear, such as an HTTPS server.
    """


@dataclass
class HttpResponse:
    status: int
    reason: str
    headers: list[tuple[bytes, bytes]]
    body: bytes


class _Connection(asyncio.Protocol):
    """One connection; carries one request at a time and parses its response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[HttpResponse] | None = None
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._headers_done = False
        self._body: list[bytes] = []
        # Whether any byte of the current response arrived. When the connection breaks before
        # that, a request with an idempotent method may be sent again on another connection.
        self.received = False

    # ---- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ConnectionLostError("the server switched protocols, which this client does not support"))
        except httptools.HttpParserError as error:
            self._fail(ConnectionLostError(f"the server sent a response that is not valid HTTP/1.1: {error}"))

    def eof_received(self) -> bool:
        # The server has closed its side, so the connection cannot carry another request. A
        # response without Content-Length or chunked encoding ends here. Any other is cut short.
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done() and self._headers_done and self._body_until_close():
            self._waiter = None
            waiter.set_result(self._response())
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        reason = f": {exc}" if exc else ""
        self._fail(ConnectionLostError(f"the connection to the server closed before the response was complete{reason}"))

    # ---- httptools callbacks ---------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter = self._waiter
        self._waiter = None
        if not self.parser.should_keep_alive():
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(self._response())

    def _response(self) -> HttpResponse:
        return HttpResponse(self.parser.get_status_code(), self._reason.decode("latin-1"), self._headers, b"".join(self._body))

    def _body_until_close(self) -> bool:
        """Tell whether the response's body is delimited by the end of the connection."""
        names = {name.lower() for name, _ in self._headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    # ---- requests --------------------------------------------------------------------------

    def send(self, data: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[HttpResponse]:
        """Write one request and return the future of its response."""
        self._waiter = loop.create_future()
        self._reason = b""
        self._headers = []
        self._headers_done = False
        self._body = []
        self.received = False
        self.transport.write(data)
        return self._waiter

    def _fail(self, error: Exception) -> None:
        waiter = self._waiter
        self._waiter = None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class ConnectionPool:
    """Kept-alive HTTP/1.1 connections to one server (`http://` or `https://` URL).

    `request` sends one request and returns the whole response. At most `limit` connections are
    open at once. A connection idle for `keepalive` seconds is closed rather than reused, so
    `keepalive` must be shorter than the server's own keep-alive timeout (uvicorn's is 5 s).
    """

    def __init__(self, server_url: str, ssl_context: ssl.SSLContext | None = None, limit: int = 100, keepalive: float = 3.0):
        parts = urlsplit(server_url)
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = parts.netloc.rpartition("@")[2]
        self.ssl_context = (ssl_context or ssl.create_default_context()) if self.tls else None
        self.keepalive = keepalive
        self._idle: deque[_Connection] = deque()
        self._slots = asyncio.Semaphore(limit)
        self._open: set[_Connection] = set()

    async def request(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None, timeout: float
    ) -> HttpResponse:
        """Send `method target` with `headers` and `body`; raise TimeoutError after `timeout` seconds,
        ConnectFailedError when no connection can be opened, ConnectionLostError when one breaks
        (NoResponseError when a new one closes before any byte of the response)."""
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {self.host_header}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in headers)
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}\r\n")
        lines.append("\r\n")
        data = "".join(lines).encode("latin-1") + (body or b"")
        async with asyncio.timeout(timeout), self._slots:
            while True:
                connection, reused = await self._connection()
                try:
                    response = await connection.send(data, asyncio.get_running_loop())
                except ConnectionLostError as error:
                    self._open.discard(connection)
                    if reused and not connection.received and method in IDEMPOTENT_METHODS:
                        continue  # The server closed a kept-alive connection as the request went out.
                    if not reused and not connection.received:
                        raise NoResponseError(f"{error}; no byte of a response arrived on a new connection") from error
                    raise
                except BaseException:
                    connection.close()  # Cancelled or timed out mid-response: the connection is unusable.
                    self._open.discard(connection)
                    raise
                if connection.closed:
                    self._open.discard(connection)
                else:
                    connection.idle_since = time.monotonic()
                    self._idle.append(connection)
                return response

    async def _connection(self) -> tuple[_Connection, bool]:
        """Return a kept-alive connection that is still open and fresh, or a new one."""
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since < self.keepalive:
                return connection, True
            connection.close()
            self._open.discard(connection)
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                _Connection, self.host, self.port, ssl=self.ssl_context,
                server_hostname=self.host if self.tls else None,
            )  # fmt: skip
        except (OSError, ssl.SSLError) as error:
            raise ConnectFailedError(str(error) or type(error).__name__) from error
        self._open.add(connection)
        return connection, False

    def close(self) -> None:
        """Close every connection, idle or busy."""
        for connection in self._open:
            connection.close()
        self._open.clear()
        self._idle.clear()
