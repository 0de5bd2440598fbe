"""The connection to one Kubernetes API server: credentials, API clients and error mapping.

The official `kubernetes` client is blocking, so every call goes through `KubernetesApi.call`,
which runs it in asyncio's default executor and returns the response body as plain JSON. Plain
dicts keep the plugin independent of the client's generated models, which changed between
releases 30-35 and 36-37.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException
from skyshift_core.cluster_manager import ClusterManagerError

from skyshift_k8s.config import KubernetesConfig

logger = logging.getLogger(__name__)

# Seconds to connect, and to wait for each read of an ordinary request.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
# Watches and followed logs hold a connection each; the default pool (5 per CPU) may be smaller.
CONNECTION_POOL_SIZE = 32

# HTTP statuses that the same request would get again: retrying without a change cannot succeed.
_PERMANENT_STATUSES = {400, 403, 404, 405, 409, 410, 415, 422}


class KubernetesApiError(ClusterManagerError):
    """A Kubernetes API call failed; `status` is the HTTP status, or None when the server was not reached."""

    def __init__(self, message: str, *, status: int | None, reason: str = "", retryable: bool = True):
        super().__init__(message, retryable=retryable)
        self.status = status
        self.reason = reason


def status_message(error: client.ApiException) -> tuple[str, str]:
    """Return the (reason, message) of a failed call, from its Status body when it has one."""
    try:
        body = json.loads(error.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return body.get("reason") or str(error.reason or ""), body.get("message") or str(error.reason or "")
    return str(error.reason or ""), (error.body or str(error.reason or "")).strip()[:300]


def _unreachable_cause(error: Exception) -> str:
    """Return the last part of a connection error's text, such as `[Errno 111] Connection refused`."""
    text = str(getattr(error, "reason", None) or error)
    return text.rsplit(": ", 1)[-1].rstrip("'\")") or type(error).__name__


def to_cluster_manager_error(error: Exception, action: str, cluster: str, host: str = "") -> KubernetesApiError:
    """Wrap a client exception in a KubernetesApiError that names the call, the cluster and the server."""
    if isinstance(error, client.ApiException):
        reason, message = status_message(error)
        status = error.status if isinstance(error.status, int) and error.status else None
        text = f"{action} on Kubernetes cluster {cluster!r} failed with HTTP {status} {reason}: {message}"
        if status == 401:
            text += "; the credentials in the kubeconfig were rejected: refresh them and try again"
        # Status 0 means the client gave up before a response arrived (for example a read timeout).
        retryable = status is None or status not in _PERMANENT_STATUSES
        return KubernetesApiError(text, status=status, reason=reason, retryable=retryable)
    if isinstance(error, (urllib3.exceptions.HTTPError, OSError)):
        server = f"the API server at {host}" if host else "the API server"
        return KubernetesApiError(
            f"{action} on Kubernetes cluster {cluster!r} failed: {server} is unreachable ({_unreachable_cause(error)})",
            status=None,
            reason="Unreachable",
        )
    return KubernetesApiError(
        f"{action} on Kubernetes cluster {cluster!r} failed: {error}", status=None, reason="Error"
    )


def load_configuration(settings: KubernetesConfig) -> client.Configuration:
    """Build a client configuration from the kubeconfig file or the in-cluster service account.

    Raises ClusterManagerError when the file is missing or invalid or the context does not exist.
    """
    # type.__call__ creates a fresh Configuration instead of a copy of the process-wide default.
    configuration = type.__call__(client.Configuration)
    try:
        if settings.in_cluster:
            config.load_incluster_config(client_configuration=configuration)
        else:
            path = Path(settings.kubeconfig or "").expanduser()
            if not path.is_file():
                raise ClusterManagerError(
                    f"kubeconfig {str(path)!r} does not exist or is not a file on this machine; the skylet "
                    "reads it where the controller manager runs, so copy it there or fix the Cluster's "
                    "spec.config.kubeconfig"
                )
            config.load_kube_config(
                config_file=str(path),
                context=settings.context,
                client_configuration=configuration,
                persist_config=False,
            )
    except (ConfigException, OSError, ValueError, TypeError) as error:
        raise ClusterManagerError(f"cannot load {settings.describe_source()}: {error}") from error
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    # Callers retry with their own backoff (the skylet's cycle, the informers), so urllib3 does not.
    configuration.retries = 0
    return configuration


class KubernetesApi:
    """API clients for one cluster and a helper to call them without blocking the event loop."""

    def __init__(self, cluster: str, configuration: client.Configuration):
        self.cluster = cluster
        self.configuration = configuration
        self.api_client = client.ApiClient(configuration)
        self.core = client.CoreV1Api(self.api_client)
        self.batch = client.BatchV1Api(self.api_client)
        self.apps = client.AppsV1Api(self.api_client)
        # GET /api (discovery) and GET /version.
        self.core_api = client.CoreApi(self.api_client)
        self.version = client.VersionApi(self.api_client)

    @property
    def host(self) -> str:
        return self.configuration.host

    def new_api_client(self) -> client.ApiClient:
        """Return a separate ApiClient, for `kubernetes.stream`, which swaps the request function
        of the client it uses while a websocket call runs and so must not share it."""
        return client.ApiClient(self.configuration)

    def close(self) -> None:
        self.api_client.close()

    def call_sync(self, function: Callable[..., Any], *args: Any, action: str, raw: bool = False, **kwargs: Any) -> Any:
        """Call an API method and return its JSON body (None for an empty body), or with `raw` its
        bytes; raise KubernetesApiError."""
        kwargs.setdefault("_request_timeout", (CONNECT_TIMEOUT, READ_TIMEOUT))
        try:
            response = function(*args, _preload_content=False, **kwargs)
            data = response.data
        except Exception as error:  # Every failure of the client library becomes one error type here.
            raise to_cluster_manager_error(error, action, self.cluster, self.host) from error
        if raw:
            return data or b""
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return data.decode(errors="replace")

    async def call(
        self, function: Callable[..., Any], *args: Any, action: str, raw: bool = False, **kwargs: Any
    ) -> Any:
        """Run `call_sync` in asyncio's default executor, so that it does not block the event loop."""
        bound = functools.partial(self.call_sync, function, *args, action=action, raw=raw, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(None, bound)

    def list_all_sync(self, function: Callable[..., Any], *args: Any, action: str, **kwargs: Any) -> tuple[list, str]:
        """List every object, 500 per page; return the items and the list's resourceVersion."""
        items: list[dict[str, Any]] = []
        token = None
        while True:
            page_kwargs = dict(kwargs, limit=500)
            if token:
                page_kwargs["_continue"] = token
            body = self.call_sync(function, *args, action=action, **page_kwargs) or {}
            items.extend(body.get("items") or [])
            metadata = body.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                return items, metadata.get("resourceVersion") or ""

    async def list_all(self, function: Callable[..., Any], *args: Any, action: str, **kwargs: Any) -> list[dict]:
        """Run `list_all_sync` in asyncio's default executor; return only the items."""
        bound = functools.partial(self.list_all_sync, function, *args, action=action, **kwargs)
        items, _ = await asyncio.get_running_loop().run_in_executor(None, bound)
        return items
