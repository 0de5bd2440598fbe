"""HTTP clients for the SkyShift API: `SkyShiftClient` (blocking, for the CLI and scripts) and
`AsyncSkyShiftClient` (asyncio, for controllers).

Both send and return plain JSON dicts, build the same Kubernetes-style paths, and raise the core's
exceptions (`skyshift_core.errors`) mapped from the server's Status responses by `error_from_status`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Self
from urllib.parse import quote, urlencode, urlsplit

import httpx

from skyshift_core import __version__
from skyshift_core.errors import (
    AlreadyExistsError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    GoneError,
    InvalidError,
    LeaseLostError,
    NotFoundError,
    PluginError,
    RequestEntityTooLargeError,
    RequestTimeoutError,
    ServerUnreachableError,
    SkyShiftError,
    TooManyRequestsError,
    UnauthorizedError,
    UnavailableError,
    UnsupportedMediaTypeError,
)
from skyshift_core.http_pool import ConnectFailedError, ConnectionPool, HttpResponse, NoResponseError
from skyshift_core.objects import Object, resolve_kind
from skyshift_core.objects.meta import DEFAULT_NAMESPACE

if TYPE_CHECKING:
    import aiohttp

logger = logging.getLogger(__name__)

DEFAULT_SERVER = "http://127.0.0.1:50051"
# Seconds allowed for one request, connecting included; watches apply it only to connecting.
DEFAULT_TIMEOUT = 30.0
# Seconds a watch may go without receiving a line before it fails. The API server sends a
# bookmark every 10 s on an idle stream by default, so silence this long means the connection is dead.
DEFAULT_WATCH_IDLE_TIMEOUT = 60.0
# Page size of `list_all`; 500 is kubectl's default chunk size.
DEFAULT_PAGE_SIZE = 500
# Idle seconds before the async client drops a kept-alive connection. uvicorn closes idle
# connections after 5 s, and reusing one it has closed fails with "connection reset".
KEEPALIVE_SECONDS = 3.0

# Characters left as they are in a request path: RFC 3986's unreserved and sub-delims, ':', '@' and '/'.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"

PatchType = Literal["merge", "json"]
PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
}

# Status.reason -> exception class, for the reasons the API server sends.
_ERRORS_BY_REASON: dict[str, type[SkyShiftError]] = {
    cls.reason: cls
    for cls in (
        InvalidError,
        BadRequestError,
        NotFoundError,
        AlreadyExistsError,
        ConflictError,
        GoneError,
        UnavailableError,
        PluginError,
        LeaseLostError,
        UnauthorizedError,
        ForbiddenError,
        TooManyRequestsError,
        UnsupportedMediaTypeError,
        RequestTimeoutError,
        RequestEntityTooLargeError,
    )
}
_ERRORS_BY_REASON["Gone"] = GoneError
# HTTP status -> exception class, for responses without a known Status reason.
_ERRORS_BY_CODE: dict[int, type[SkyShiftError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    422: InvalidError,
    413: RequestEntityTooLargeError,
    415: UnsupportedMediaTypeError,
    429: TooManyRequestsError,
    503: UnavailableError,
    504: RequestTimeoutError,
}


def error_from_status(status: Mapping[str, Any], http_code: int | None = None) -> SkyShiftError:
    """Build the core exception for a Status body (`{"kind": "Status", "code", "reason", "message"}`).

    The reason picks the class. When the reason is unknown, the HTTP code picks it, and any other code
    gives a plain SkyShiftError whose `status_code` is that code. The message is the server's, unchanged.
    """
    code = status.get("code") if isinstance(status.get("code"), int) else http_code
    reason = status.get("reason") if isinstance(status.get("reason"), str) else ""
    message = status.get("message") if isinstance(status.get("message"), str) else ""
    details = status.get("details") if isinstance(status.get("details"), dict) else None
    cls = _ERRORS_BY_REASON.get(reason) or _ERRORS_BY_CODE.get(code or 0) or SkyShiftError
    error = cls(message or f"the API server returned HTTP {code} ({reason or 'no reason given'})", details=details)
    if cls is SkyShiftError and code:
        # Keep the real code on the instance so callers can still tell a 500 from a 502.
        error.status_code = code
        error.reason = reason or error.reason
    return error


def error_from_response(response: httpx.Response) -> SkyShiftError:
    """Map an HTTP error response to a core exception, from its Status body when it has one."""
    request = response.request
    return error_from_body(request.method, str(request.url), response.status_code, response.content, response.reason_phrase)


def error_from_body(method: str, url: str, status_code: int, content: bytes, reason_phrase: str = "") -> SkyShiftError:
    """Map an HTTP error (status code and raw body) to a core exception, from its Status body when it has one."""
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return error_from_status(body, status_code)

    # Not a Status: a route that does not exist, a proxy in between, or another server on the port.
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"] if isinstance(body["detail"], str) else json.dumps(body["detail"])
    else:
        detail = content.decode("utf-8", "replace").strip()[:200] or reason_phrase
    message = f"{method} {url} failed with HTTP {status_code}: {detail}"
    return error_from_status({"code": status_code, "message": message}, status_code)


# Parts of OpenSSL's error when a server responds to the TLS ClientHello with bytes that are not a TLS record,
# as a plain-HTTP server does: "[SSL: WRONG_VERSION_NUMBER] wrong version number" before OpenSSL 3.2.0,
# "[SSL] record layer failure" from 3.2.0 on.
_PLAIN_REPLY_MARKERS = ("WRONG_VERSION_NUMBER", "record layer failure")


def _causes(error: BaseException) -> Iterator[BaseException]:
    """Yield `error` and every exception it wraps.

    httpx, aiohttp and `http_pool` each wrap the `ssl.SSLError`, so callers search the whole chain.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        # aiohttp keeps the underlying error in `os_error` or `certificate_error` rather than in the chain.
        pending.extend(
            [
                current.__cause__,
                current.__context__,
                getattr(current, "os_error", None),
                getattr(current, "certificate_error", None),
            ]
        )


def _is_plain_http_reply(error: BaseException) -> bool:
    """Return True when a connection failed because a server without TLS responded to the TLS handshake."""
    return any(marker in str(cause) for cause in _causes(error) for marker in _PLAIN_REPLY_MARKERS)


def _find_verification_failure(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """Return the certificate verification failure behind a connection error, or None."""
    for cause in _causes(error):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
    return None


def _is_disconnect_without_response(error: BaseException) -> bool:
    """Return True when httpx reports that the server closed the connection before any byte of a response.

    An HTTPS server does this when it is sent plain HTTP, which is no TLS handshake. (`http_pool`
    raises NoResponseError instead.)
    """
    return any("Server disconnected without sending a response" in str(cause) for cause in _causes(error))


def parse_watch_line(line: str) -> tuple[str, dict[str, Any]] | None:
    """Decode one line of a watch stream into (type, object); raise the mapped error for an ERROR event.

    Returns None for a blank line. An ERROR event with code 410 raises GoneError: the caller must
    list again and watch from the list's resource_version.
    """
    if not line.strip():
        return None
    try:
        event = json.loads(line)
    except ValueError as error:
        raise UnavailableError(f"the watch stream sent a line that is not JSON: {line[:200]!r}") from error
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("type"), str)
        or not isinstance(event.get("object"), dict)
    ):
        raise UnavailableError(f"the watch stream sent an event without type and object: {line[:200]!r}")
    if event["type"] == "ERROR":
        raise error_from_status(event["object"])
    return event["type"], event["object"]


def resolve_model(kind: str | type[Object]) -> type[Object]:
    """Return the kind's model; `kind` is a model class or any name `resolve_kind` accepts (`jobs`, `jb`, `Job`)."""
    if isinstance(kind, type) and issubclass(kind, Object):
        return kind
    return resolve_kind(kind)


def manifest_dict(obj: Mapping[str, Any] | Object) -> dict[str, Any]:
    """Return a manifest as a JSON-ready dict; objects are dumped as the API server would."""
    if isinstance(obj, Object):
        return obj.model_dump(mode="json")
    if not isinstance(obj, Mapping):
        raise InvalidError(f"expected a manifest mapping or an Object, got {type(obj).__name__}")
    return dict(obj)


def selector_text(selector: str | Mapping[str, str] | None) -> str | None:
    """Return a label selector in the string syntax; a mapping means every key equals its value."""
    if selector is None or isinstance(selector, str):
        return selector or None
    return ",".join(f"{key}={value}" for key, value in selector.items()) or None


@dataclass
class ApiRequest:
    """One HTTP request to the API, built once and sent by either client."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


def _dry(request: ApiRequest, dry_run: bool) -> ApiRequest:
    """Mark a create or update as a server-side dry run: every check runs, nothing is stored."""
    if dry_run:
        request.params["dryRun"] = "All"
    return request


def _log_warning(text: str) -> None:
    logger.warning("The API server warns: %s", text)


_WARNING = re.compile(r'^\s*\d{3}\s+\S+\s+"((?:[^"\\]|\\.)*)"')


def parse_warnings(values: list[str]) -> list[str]:
    """Return the texts of HTTP Warning header values such as `299 - "text"`; other values are kept whole."""
    texts = []
    for value in values:
        match = _WARNING.match(value)
        texts.append(re.sub(r"\\(.)", r"\1", match.group(1)) if match else value.strip())
    return texts


class _ClientBase:
    """Paths, request bodies and error mapping shared by the blocking and the asyncio client."""

    def __init__(
        self,
        server_url: str = DEFAULT_SERVER,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        ca_file: str | None = None,
    ):
        server_url = server_url.strip().rstrip("/")
        if not server_url.startswith(("http://", "https://")):
            raise InvalidError(
                f"invalid server URL {server_url!r}: expected http://HOST:PORT, for example {DEFAULT_SERVER}"
            )
        self.server_url = server_url
        self.timeout = timeout
        self.headers = {"Accept": "application/json", "User-Agent": f"skyshift-client/{__version__}"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        # Extra headers sent with every request, such as a leader's X-SkyShift-Fence.
        self.headers.update(headers or {})
        # PEM bundle of the CAs that may sign an https server's certificate; None trusts the system's.
        self.ca_file = ca_file
        self._ssl_context: ssl.SSLContext | None = None
        # Called with the text of each warning that the server sends with a response, such as a
        # probable typo in a cluster manager's name. The CLI prints them, as kubectl does.
        self.on_warning: Callable[[str], None] = _log_warning

    def ssl_context(self) -> ssl.SSLContext | None:
        """Return the TLS context that trusts `ca_file`, or None to use the system's trusted CAs."""
        if self.ca_file is None or self._ssl_context is not None:
            return self._ssl_context
        try:
            self._ssl_context = ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as error:
            # The details let a caller say where the path came from, as the CLI does.
            raise InvalidError(
                f"cannot load the CA file {self.ca_file!r}: {error}; "
                "pass a PEM file with the CA that signed the API server's certificate",
                details={"ca_file": self.ca_file, "reason": str(error)},
            ) from error
        return self._ssl_context

    # ---- transport errors -------------------------------------------------------------------

    def _unreachable_error(self, error: BaseException) -> ServerUnreachableError:
        if self.server_url.startswith("https://") and _is_plain_http_reply(error):
            plain_url = "http://" + self.server_url.removeprefix("https://")
            return ServerUnreachableError(
                f"the server at {self.server_url} does not speak TLS: its response to the TLS handshake was "
                f"not TLS, most likely plain HTTP ({error}); try {plain_url} instead",
                details={"cause": "plain-http-reply"},
            )
        verification_failure = _find_verification_failure(error)
        if verification_failure is not None:
            return self._verification_error(verification_failure)
        return ServerUnreachableError(
            f"cannot reach the SkyShift API server at {self.server_url}: {error}; "
            "start it with 'skyshift up' or pass --server"
        )

    def _verification_error(self, error: ssl.SSLCertVerificationError) -> ServerUnreachableError:
        """Build the error for a failed verification of the server's certificate, with the fix for its cause."""
        reason = error.verify_message or str(error)
        trusted = f"the CA file {self.ca_file}" if self.ca_file else "the system's trusted CAs"
        host = urlsplit(self.server_url).hostname
        if "mismatch" in reason:
            # OpenSSL's "Hostname mismatch" and "IP address mismatch": the CA is fine, the name is not.
            advice = (
                f"the certificate does not name {host}; connect with a host name or address that the certificate "
                "lists, or issue a certificate that names this one"
            )
        elif "expired" in reason or "not yet valid" in reason:
            advice = "renew the server's certificate, or check this machine's clock"
        else:
            advice = (
                "pass --certificate-authority FILE with the CA that signed the server's certificate, "
                "or set certificate_authority in the client config context"
            )
        return ServerUnreachableError(
            f"cannot verify the TLS certificate of the API server at {self.server_url} against {trusted}: "
            f"{error}; {advice}",
            details={"cause": "certificate-verify-failed", "ca_file": self.ca_file},
        )

    def _disconnect_error(self, error: BaseException) -> ServerUnreachableError:
        tls_url = "https://" + self.server_url.removeprefix("http://")
        return ServerUnreachableError(
            f"the server at {self.server_url} closed the connection without sending a response ({error}); "
            f"an HTTPS server does that when sent plain HTTP, so if this one serves HTTPS, use {tls_url} instead",
            details={"cause": "no-response"},
        )

    def _timeout_error(self, request: ApiRequest) -> UnavailableError:
        return UnavailableError(
            f"{request.method} {self.server_url}{request.path} timed out after {self.timeout:g} s; "
            "the API server or etcd may be overloaded, retry later"
        )

    # ---- paths ----------------------------------------------------------------------------

    @staticmethod
    def _namespace(model: type[Object], namespace: str | None) -> str | None:
        if not model.namespaced:
            return None
        return namespace or DEFAULT_NAMESPACE

    def collection_path(self, model: type[Object], namespace: str | None, all_namespaces: bool = False) -> str:
        """Return the path of a kind's collection: one namespace, all namespaces, or cluster-scoped."""
        if model.namespaced and not all_namespaces:
            return f"/api/v1/namespaces/{self._namespace(model, namespace)}/{model.plural}"
        return f"/api/v1/{model.plural}"

    def item_path(self, model: type[Object], namespace: str | None, name: str, subresource: str | None = None) -> str:
        if not name:
            raise InvalidError(f"a {model.singular} name is required, got an empty string")
        path = f"{self.collection_path(model, namespace)}/{name}"
        return f"{path}/{subresource}" if subresource else path

    # ---- requests -------------------------------------------------------------------------

    def _json_request(self, method: str, path: str, data: Any, content_type: str = "application/json") -> ApiRequest:
        return ApiRequest(method, path, headers={"Content-Type": content_type}, body=json.dumps(data).encode())

    def _get_request(self, kind: str | type[Object], name: str, namespace: str | None) -> ApiRequest:
        return ApiRequest("GET", self.item_path(resolve_model(kind), namespace, name))

    def _list_request(
        self,
        kind: str | type[Object],
        namespace: str | None,
        all_namespaces: bool,
        label_selector: str | Mapping[str, str] | None,
        limit: int | None,
        continue_token: str | None,
        field_selector: str | None = None,
    ) -> ApiRequest:
        params: dict[str, str] = {}
        selector = selector_text(label_selector)
        if selector:
            params["label_selector"] = selector
        if field_selector:
            params["field_selector"] = field_selector
        if limit:
            params["limit"] = str(limit)
        if continue_token:
            params["continue"] = continue_token
        return ApiRequest("GET", self.collection_path(resolve_model(kind), namespace, all_namespaces), params)

    def _manifest_target(
        self, obj: Mapping[str, Any] | Object, namespace: str | None
    ) -> tuple[type[Object], dict, str | None]:
        data = manifest_dict(obj)
        kind = data.get("kind")
        if not isinstance(kind, str) or not kind:
            raise InvalidError("the manifest has no 'kind'; set kind, for example kind: Job")
        model = resolve_kind(kind)
        metadata = data.get("metadata") if isinstance(data.get("metadata"), Mapping) else {}
        return model, data, namespace or metadata.get("namespace")

    @staticmethod
    def _object_request(method: str, path: str, obj: Object) -> ApiRequest:
        # pydantic's serializer writes the same JSON document as `model_dump(mode="json")` followed
        # by `json.dumps`, in a fraction of the time; controllers send objects on every write.
        return ApiRequest(method, path, headers={"Content-Type": "application/json"}, body=obj.model_dump_json().encode())

    def _create_request(self, obj: Mapping[str, Any] | Object, namespace: str | None) -> ApiRequest:
        if isinstance(obj, Object):
            path = self.collection_path(resolve_kind(obj.kind), namespace or obj.metadata.namespace)
            return self._object_request("POST", path, obj)
        model, data, namespace = self._manifest_target(obj, namespace)
        return self._json_request("POST", self.collection_path(model, namespace), data)

    def _update_request(
        self, obj: Mapping[str, Any] | Object, namespace: str | None, subresource: str | None
    ) -> ApiRequest:
        if isinstance(obj, Object):
            path = self.item_path(resolve_kind(obj.kind), namespace or obj.metadata.namespace, obj.metadata.name, subresource)
            return self._object_request("PUT", path, obj)
        model, data, namespace = self._manifest_target(obj, namespace)
        name = data["metadata"].get("name") if isinstance(data.get("metadata"), Mapping) else None
        if not isinstance(name, str) or not name:
            raise InvalidError("the manifest has no metadata.name; an update needs the name of the object to replace")
        return self._json_request("PUT", self.item_path(model, namespace, name, subresource), data)

    def _patch_request(
        self,
        kind: str | type[Object],
        name: str,
        patch: Any,
        namespace: str | None,
        patch_type: PatchType,
        subresource: str | None,
    ) -> ApiRequest:
        content_type = PATCH_CONTENT_TYPES.get(patch_type)
        if content_type is None:
            raise InvalidError(f"invalid patch_type {patch_type!r}: expected one of {', '.join(PATCH_CONTENT_TYPES)}")
        if patch_type == "json" and not isinstance(patch, list):
            raise InvalidError(
                'a JSON patch must be a list of operations, like [{"op": "replace", "path": ..., "value": ...}]'
            )
        if patch_type == "merge" and not isinstance(patch, Mapping):
            raise InvalidError("a merge patch must be a mapping")
        path = self.item_path(resolve_model(kind), namespace, name, subresource)
        return self._json_request("PATCH", path, patch if isinstance(patch, list) else dict(patch), content_type)

    def _delete_request(
        self, kind: str | type[Object], name: str, namespace: str | None, resource_version: str | None,
        uid: str | None = None,
    ) -> ApiRequest:
        params = {"resource_version": str(resource_version)} if resource_version else {}
        path = self.item_path(resolve_model(kind), namespace, name)
        if uid is None:
            return ApiRequest("DELETE", path, params)
        request = self._json_request("DELETE", path, {"preconditions": {"uid": uid}})
        request.params.update(params)
        return request

    def _watch_request(
        self,
        kind: str | type[Object],
        namespace: str | None,
        all_namespaces: bool,
        resource_version: str | None,
        label_selector: str | Mapping[str, str] | None,
        timeout_seconds: int | None,
        field_selector: str | None = None,
    ) -> ApiRequest:
        request = self._list_request(kind, namespace, all_namespaces, label_selector, None, None, field_selector)
        request.params["watch"] = "true"
        if resource_version:
            request.params["resource_version"] = str(resource_version)
        if timeout_seconds:
            request.params["timeout_seconds"] = str(int(timeout_seconds))
        return request

    # ---- responses ------------------------------------------------------------------------

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise error_from_response(response)
        try:
            return response.json()
        except ValueError as error:
            raise UnavailableError(
                f"{response.request.method} {response.request.url} returned a body that is not JSON: "
                f"{response.text[:200]!r}; is {response.request.url.host}:{response.request.url.port} a SkyShift API server?"
            ) from error

    def _transport_error(self, request: ApiRequest, error: httpx.TransportError) -> SkyShiftError:
        """Map an httpx failure below HTTP to UnavailableError; refused connections get the start hint."""
        if isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout)):
            return self._unreachable_error(error)
        if isinstance(error, httpx.TimeoutException):
            return self._timeout_error(request)
        if self.server_url.startswith("http://") and _is_disconnect_without_response(error):
            return self._disconnect_error(error)
        return UnavailableError(f"{request.method} {self.server_url}{request.path} failed: {error!r}")

    def _watch_error(
        self, request: ApiRequest, error: httpx.TransportError, idle_timeout: float | None
    ) -> SkyShiftError:
        if isinstance(error, httpx.ReadTimeout):
            return UnavailableError(
                f"the watch on {self.server_url}{request.path} received nothing for {idle_timeout:g} s; "
                "watch again from the last resource_version"
            )
        if isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout)):
            return self._transport_error(request, error)
        return UnavailableError(
            f"the watch on {self.server_url}{request.path} was cut: {error}; watch again from the last resource_version"
        )

    def _watch_timeout(self, idle_timeout: float | None) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, read=idle_timeout)


class SkyShiftClient(_ClientBase):
    """A blocking client for the SkyShift API.

    `kind` arguments take a model class or any name `skyshift get` accepts (`jobs`, `job`, `jb`, `Job`).
    For namespaced kinds, a namespace of None means `default`, except where a manifest names its own.
    Every method raises a `skyshift_core.errors` exception: the server's Status mapped by reason,
    or ServerUnreachableError / UnavailableError when the server cannot be reached or times out.
    """

    def __init__(
        self,
        server_url: str = DEFAULT_SERVER,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        ca_file: str | None = None,
    ):
        super().__init__(server_url, timeout, token, headers, ca_file)
        self._http = httpx.Client(
            base_url=self.server_url, timeout=timeout, headers=self.headers, verify=self.ssl_context() or True
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(self, request: ApiRequest) -> Any:
        try:
            response = self._http.request(
                request.method, request.path, params=request.params, headers=request.headers, content=request.body
            )
        except httpx.TransportError as error:
            raise self._transport_error(request, error) from error
        for warning in parse_warnings(response.headers.get_list("warning")):
            self.on_warning(warning)
        return self._decode(response)

    def is_ready(self) -> bool:
        """Return True when `GET /readyz` returns 200, that is, the server runs and reaches etcd."""
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def server_version(self) -> str:
        """Return the API server's version, read from its OpenAPI document."""
        info = self._send(ApiRequest("GET", "/openapi.json")).get("info", {})
        return str(info.get("version", "unknown"))

    def get(self, kind: str | type[Object], name: str, namespace: str | None = None) -> dict[str, Any]:
        return self._send(self._get_request(kind, name, namespace))

    def list(
        self,
        kind: str | type[Object],
        namespace: str | None = None,
        *,
        all_namespaces: bool = False,
        label_selector: str | Mapping[str, str] | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        field_selector: str | None = None,
    ) -> dict[str, Any]:
        """Return one page: `{"kind": "JobList", "metadata": {"resource_version", "continue"?}, "items": [...]}`."""
        return self._send(
            self._list_request(kind, namespace, all_namespaces, label_selector, limit, continue_token, field_selector)
        )

    def list_all(
        self,
        kind: str | type[Object],
        namespace: str | None = None,
        *,
        all_namespaces: bool = False,
        label_selector: str | Mapping[str, str] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        field_selector: str | None = None,
    ) -> dict[str, Any]:
        """List every page and return one list body; all pages read etcd at the first page's revision."""
        result = self.list(
            kind, namespace, all_namespaces=all_namespaces, label_selector=label_selector, limit=page_size,
            field_selector=field_selector,
        )
        token = result["metadata"].pop("continue", None)
        while token:
            page = self.list(
                kind, namespace, all_namespaces=all_namespaces, label_selector=label_selector,
                limit=page_size, continue_token=token, field_selector=field_selector,
            )  # fmt: skip
            result["items"].extend(page["items"])
            token = page["metadata"].get("continue")
        return result

    def create(
        self, obj: Mapping[str, Any] | Object, namespace: str | None = None, *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Create an object; the namespace comes from `namespace`, else the manifest, else `default`.
        With `dry_run`, the server checks it and returns it as it would be stored, storing nothing."""
        return self._send(_dry(self._create_request(obj, namespace), dry_run))

    def update(
        self, obj: Mapping[str, Any] | Object, namespace: str | None = None, *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Replace spec, labels and annotations (PUT); the server keeps status. A metadata.resource_version
        in `obj` is a precondition: ConflictError when the stored object has changed since. `dry_run` as
        for `create`."""
        return self._send(_dry(self._update_request(obj, namespace, None), dry_run))

    def update_status(self, obj: Mapping[str, Any] | Object, namespace: str | None = None) -> dict[str, Any]:
        """Replace only the status (PUT on the status subresource), with the same precondition as `update`."""
        return self._send(self._update_request(obj, namespace, "status"))

    def patch(
        self,
        kind: str | type[Object],
        name: str,
        patch: Mapping[str, Any] | list[dict[str, Any]],
        namespace: str | None = None,
        *,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Apply an RFC 7396 merge patch (a mapping) or an RFC 6902 JSON patch (a list, `patch_type="json"`)."""
        return self._send(self._patch_request(kind, name, patch, namespace, patch_type, subresource))

    def delete(
        self,
        kind: str | type[Object],
        name: str,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        uid: str | None = None,
    ) -> dict[str, Any]:
        """Delete an object and return its last state.

        With resource_version, only that version is deleted, and with uid, only the object of that uid.
        Otherwise the call raises ConflictError."""
        return self._send(self._delete_request(kind, name, namespace, resource_version, uid))

    def watch(
        self,
        kind: str | type[Object],
        namespace: str | None = None,
        *,
        all_namespaces: bool = False,
        resource_version: str | None = None,
        label_selector: str | Mapping[str, str] | None = None,
        timeout_seconds: int | None = None,
        field_selector: str | None = None,
        bookmarks: bool = False,
        idle_timeout: float | None = DEFAULT_WATCH_IDLE_TIMEOUT,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (type, object) for every change after `resource_version`: ADDED, MODIFIED, DELETED.

        Without a resource_version the current objects come first as ADDED. BOOKMARK events are
        yielded only with `bookmarks=True`. Raises GoneError when the version has been compacted
        (list again and watch from the list's resource_version), and UnavailableError when the
        stream is cut or stays silent for `idle_timeout` seconds. The generator ends when the
        server ends the stream, after `timeout_seconds` when given.
        """
        request = self._watch_request(
            kind, namespace, all_namespaces, resource_version, label_selector, timeout_seconds, field_selector
        )
        try:
            with self._http.stream(
                "GET", request.path, params=request.params, timeout=self._watch_timeout(idle_timeout)
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(response)
                for line in response.iter_lines():
                    event = parse_watch_line(line)
                    if event is None or (event[0] == "BOOKMARK" and not bookmarks):
                        continue
                    yield event
        except httpx.TransportError as error:
            raise self._watch_error(request, error, idle_timeout) from error


    def call(self, method: str, path: str, body: Any = None, params: Mapping[str, str] | None = None) -> Any:
        """Send one request to an API path (such as `/api/v1/whoami`), with a JSON body when given.

        Returns the decoded JSON response; raises the mapped exception for an error status."""
        if body is None:
            request = ApiRequest(method, path)
        else:
            request = self._json_request(method, path, body)
        request.params = dict(params or {})
        return self._send(request)

    def explain_job(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        """The Job's last scheduling cycle: verdicts per cluster, scores and the division."""
        path = self.item_path(resolve_model("Job"), namespace or "default", name, "explain")
        return self._send(ApiRequest("GET", path))

    def job_logs(
        self,
        name: str,
        namespace: str | None = None,
        *,
        replica: int | None = None,
        follow: bool = False,
        tail: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield `{"replica", "cluster", "line"}` (or `{"cluster", "error"}`) for each output line."""
        path = self.item_path(resolve_model("Job"), namespace or "default", name, "logs")
        params: dict[str, Any] = {"follow": "true" if follow else "false"}
        if replica is not None:
            params["replica"] = replica
        if tail is not None:
            params["tail"] = tail
        request = ApiRequest("GET", path, params=params)
        try:
            with self._http.stream("GET", path, params=params, timeout=self._watch_timeout(None)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(response)
                for line in response.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.TransportError as error:
            raise self._transport_error(request, error) from error

class AsyncSkyShiftClient(_ClientBase):
    """The asyncio twin of SkyShiftClient: the same methods and errors, as coroutines.

    `watch` is an async generator. Close the client with `await client.aclose()` or `async with`.
    Requests go through `skyshift_core.http_pool`, a lean pool of kept-alive HTTP/1.1 connections:
    controllers send thousands of requests, and it spends about 40 us of CPU on each, against
    135 us for aiohttp and several times that for httpx. Watches use aiohttp.
    """

    def __init__(
        self,
        server_url: str = DEFAULT_SERVER,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        ca_file: str | None = None,
    ):
        super().__init__(server_url, timeout, token, headers, ca_file)
        self._http: aiohttp.ClientSession | None = None
        self._pool: ConnectionPool | None = None
        self._base_path = urlsplit(self.server_url).path

    def _session(self) -> aiohttp.ClientSession:
        # Created on first use, inside the event loop that will use it. Only watches use it, so
        # aiohttp is imported here: importing it with this module slowed every CLI command.
        import aiohttp

        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(
                    limit=100, ssl=self.ssl_context() or True, keepalive_timeout=KEEPALIVE_SECONDS
                ),
            )
        return self._http

    def _connections(self) -> ConnectionPool:
        # Created on first use, inside the event loop that will use it.
        if self._pool is None:
            self._pool = ConnectionPool(self.server_url, self.ssl_context(), limit=100, keepalive=KEEPALIVE_SECONDS)
        return self._pool

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _url(self, request: ApiRequest) -> str:
        return self.server_url + request.path

    def _target(self, request: ApiRequest) -> str:
        # A server URL with a path, such as a proxy's https://host/skyshift, prefixes every request.
        target = quote(self._base_path + request.path, safe=_PATH_SAFE)
        return f"{target}?{urlencode(request.params)}" if request.params else target

    async def _exchange(self, request: ApiRequest) -> HttpResponse:
        """Send one request through the connection pool and return the whole response."""
        headers = [*self.headers.items(), *request.headers.items()]
        try:
            return await self._connections().request(
                request.method, self._target(request), headers, request.body, self.timeout
            )
        except ConnectFailedError as error:
            raise self._unreachable_error(error) from error
        except TimeoutError as error:
            raise self._timeout_error(request) from error
        except OSError as error:
            if isinstance(error, NoResponseError) and self.server_url.startswith("http://"):
                raise self._disconnect_error(error) from error
            raise UnavailableError(f"{request.method} {self.server_url}{request.path} failed: {error}") from error

    async def _send(self, request: ApiRequest) -> Any:
        response = await self._exchange(request)
        if response.status >= 400:
            raise error_from_body(request.method, self._url(request), response.status, response.body, response.reason)
        try:
            return json.loads(response.body)
        except ValueError as error:
            raise UnavailableError(
                f"{request.method} {self._url(request)} returned a body that is not JSON: {response.body[:200]!r}; "
                f"is {self.server_url} a SkyShift API server?"
            ) from error

    def _aiohttp_watch_error(self, request: ApiRequest, error: BaseException) -> SkyShiftError:
        """Map an aiohttp failure of a watch to UnavailableError; refused connections get the start hint."""
        import aiohttp

        if isinstance(error, aiohttp.ClientConnectorError):
            return self._unreachable_error(error)
        if isinstance(error, asyncio.TimeoutError):
            return UnavailableError(
                f"the watch on {self.server_url}{request.path} received nothing in time; "
                "watch again from the last resource_version"
            )
        return UnavailableError(
            f"the watch on {self.server_url}{request.path} was cut: {error!r}; watch again from the last resource_version"
        )

    async def is_ready(self) -> bool:
        """Return True when `GET /readyz` returns 200, that is, the server runs and reaches etcd."""
        try:
            await self.check_ready()
        except SkyShiftError:
            return False
        return True

    async def check_ready(self) -> None:
        """Return when `GET /readyz` returns 200; otherwise raise the reason, such as ServerUnreachableError
        for a failed TLS verification, or UnavailableError with the status and body that /readyz returned."""
        response = await self._exchange(ApiRequest("GET", "/readyz"))
        if response.status != 200:
            detail = response.body.decode("utf-8", "replace").strip()[:200] or response.reason
            raise UnavailableError(f"GET {self.server_url}/readyz returned HTTP {response.status}: {detail}")

    async def call(self, method: str, path: str, body: Any = None, params: Mapping[str, str] | None = None) -> Any:
        """Send one request to an API path (such as `/api/v1/whoami`); see `SkyShiftClient.call`."""
        request = ApiRequest(method, path) if body is None else self._json_request(method, path, body)
        request.params = dict(params or {})
        return await self._send(request)

    async def server_version(self) -> str:
        """Return the API server's version, read from its OpenAPI document."""
        info = (await self._send(ApiRequest("GET", "/openapi.json"))).get("info", {})
        return str(info.get("version", "unknown"))

    async def get(self, kind: str | type[Object], name: str, namespace: str | None = None) -> dict[str, Any]:
        return await self._send(self._get_request(kind, name, namespace))

    async def list(
        self,
        kind: str | type[Object],
        namespace: str | None = None,
        *,
        all_namespaces: bool = False,
        label_selector: str | Mapping[str, str] | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        field_selector: str | None = None,
    ) -> dict[str, Any]:
        """Return one page: `{"kind": "JobList", "metadata": {"resource_version", "continue"?}, "items": [...]}`."""
        return await self._send(
            self._list_request(kind, namespace, all_namespaces, label_selector, limit, continue_token, field_selector)
        )

    async def list_all(
        self,
        kind: str | type[Object],
        namespace: str | None = None,
        *,
        all_namespaces: bool = False,
        label_selector: str | Mapping[str, str] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        field_selector: str | None = None,
    ) -> dict[str, Any]:
        """List every page and return one list body; all pages read etcd at the first page's revision."""
        result = await self.list(
            kind, namespace, all_namespaces=all_namespaces, label_selector=label_selector, limit=page_size,
            field_selector=field_selector,
        )
        token = result["metadata"].pop("continue", None)
        while token:
            page = await self.list(
                kind, namespace, all_namespaces=all_namespaces, label_selector=label_selector,
                limit=page_size, continue_token=token, field_selector=field_selector,
            )  # fmt: skip
            result["items"].extend(page["items"])
            token = page["metadata"].get("continue")
        return result

    async def create(
        self, obj: Mapping[str, Any] | Object, namespace: str | None = None, *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Create an object; the namespace comes from `namespace`, else the manifest, else `default`.
        With `dry_run`, the server checks it and returns it as it would be stored, storing nothing."""
        return await self._send(_dry(self._create_request(obj, namespace), dry_run))

    async def update(
        self, obj: Mapping[str, Any] | Object, namespace: str | None = None, *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Replace spec, labels and annotations (PUT); the server keeps status. A metadata.resource_version
        in `obj` is a precondition: ConflictError when the stored object has changed since. `dry_run` as
        for `create`."""
        return await self._send(_dry(self._update_request(obj, namespace, None), dry_run))

    async def update_status(self, obj: Mapping[str, Any] | Object, namespace: str | None = None) -> dict[str, Any]:
        """Replace only the status (PUT on the status subresource), with the same precondition as `update`."""
        return await self._send(self._update_request(obj, namespace, "status"))

    async def patch(
        self,
        kind: str | type[Object],
        name: str,
        patch: Mapping[str, Any] | list[dict[str, Any]],
        namespace: str | None = None,
        *,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Apply an RFC 7396 merge patch (a mapping) or an RFC 6902 JSON patch (a list, `patch_type="json"`)."""
        return await self._send(self._patch_request(kind, name, patch, namespace, patch_type, subresource))

    async def delete(
        self,
        kind: str | type[Object],
        name: str,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        uid: str | None = None,
    ) -> dict[str, Any]:
        """Delete an object and return its last state.

        With resource_version, only that version is deleted, and with uid, only the object of that uid.
        Otherwise the call raises ConflictError."""
        return await self._send(self._delete_request(kind, name, namespace, resource_version, uid))

    async def watch(
        self,
        kind: str | type[Object],
        namespace: str | None = None,
        *,
        all_namespaces: bool = False,
        resource_version: str | None = None,
        label_selector: str | Mapping[str, str] | None = None,
        timeout_seconds: int | None = None,
        field_selector: str | None = None,
        bookmarks: bool = False,
        idle_timeout: float | None = DEFAULT_WATCH_IDLE_TIMEOUT,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Yield (type, object) for every change after `resource_version`; see `SkyShiftClient.watch`."""
        request = self._watch_request(
            kind, namespace, all_namespaces, resource_version, label_selector, timeout_seconds, field_selector
        )
        import aiohttp

        url = self._url(request)
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout, sock_read=idle_timeout)
        try:
            async with self._session().get(url, params=request.params, timeout=timeout) as response:
                if response.status >= 400:
                    raise error_from_body("GET", url, response.status, await response.read(), response.reason or "")
                # Lines can be longer than aiohttp's readline limit (large objects), so split by hand.
                pending = b""
                async for chunk in response.content.iter_any():
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        event = parse_watch_line(line.decode())
                        if event is None or (event[0] == "BOOKMARK" and not bookmarks):
                            continue
                        yield event
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise self._aiohttp_watch_error(request, error) from error
