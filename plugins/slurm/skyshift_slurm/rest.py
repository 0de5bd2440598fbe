"""Slurm through slurmrestd, over TCP with a JWT or over a unix socket with local authentication.

The version-specific paths and mappings come from one module per API version (API_VERSIONS);
this module handles HTTP, credentials and errors. The JWT is read from a file or an environment
variable on every request, so a rotated token takes effect without a restart, and it is never
logged or stored in the Cluster object.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

from skyshift_core.cluster_manager import ClusterManagerError
from skyshift_slurm import rest_v0038
from skyshift_slurm.client import PERMANENT_SUBMIT_ERRORS, SlurmClient, SubmitRejected
from skyshift_slurm.records import JobRecord, NodeRecord, SubmitRequest

logger = logging.getLogger(__name__)

API_VERSIONS: dict[str, ModuleType] = {rest_v0038.VERSION: rest_v0038}


class RestClient(SlurmClient):
    """slurmrestd at `url` (http://host:port or unix:///path), speaking API version `api_version`.

    slurmrestd cannot requeue jobs and offers no file access, so restarts resubmit the replica
    (see the manager) and logs need the output directory to be readable on this host.
    """

    supports_requeue = False

    def __init__(
        self,
        url: str,
        api_version: str,
        *,
        token_file: str | None = None,
        token_env: str | None = None,
        user_name: str | None = None,
        timeout: float = 30.0,
    ):
        if api_version not in API_VERSIONS:
            raise ClusterManagerError(
                f"slurmrestd API version {api_version!r} is not supported; supported: {', '.join(API_VERSIONS)}",
                retryable=False,
            )
        self.url = url
        self.api: Any = API_VERSIONS[api_version]
        self.token_file = token_file
        self.token_env = token_env
        self.user_name = user_name
        self.timeout = timeout
        self.description = f"slurmrestd at {url}"
        self._http: httpx.AsyncClient | None = None
        self._default_partition: str | None = None
        self._default_partition_known = False

    async def start(self) -> None:
        if self._http is not None:
            return
        # slurmrestd 22.05 writes a stray header line after some bodies, which would corrupt the
        # next response on a kept-alive connection, so every request gets a new connection.
        limits = httpx.Limits(max_keepalive_connections=0)
        if self.url.startswith("unix://"):
            transport = httpx.AsyncHTTPTransport(uds=self.url[len("unix://") :], limits=limits)
            self._http = httpx.AsyncClient(transport=transport, base_url="http://slurmrestd", timeout=self.timeout)
        else:
            self._http = httpx.AsyncClient(base_url=self.url, timeout=self.timeout, limits=limits)

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def ping(self) -> tuple[bool, str, str]:
        try:
            body = await self._request("GET", self.api.ping_path())
        except ClusterManagerError as error:
            return False, "Unreachable", str(error)
        up, message = self.api.parse_ping(body)
        if up:
            return True, "SlurmctldUp", message
        return (
            False,
            "SlurmctldDown",
            message or "; ".join(self.api.errors(body)) or "slurmrestd reports no controller UP",
        )

    async def list_nodes(self, partition: str | None) -> list[NodeRecord]:
        if partition is None:
            partition = await self._find_default_partition()
        return self.api.parse_nodes(await self._request("GET", self.api.nodes_path()), partition)

    async def list_jobs(self) -> list[JobRecord]:
        # NOTE: the v0.0.38 jobs endpoint filters neither by user nor by name, so every poll
        # transfers the whole queue of the cluster.
        return self.api.parse_jobs(await self._request("GET", self.api.jobs_path()))

    async def submit(self, request: SubmitRequest) -> str:
        body = await self._request("POST", self.api.submit_path(), self.api.submit_body(request), check=False)
        problems = self.api.errors(body)
        if problems or body.get("job_id") is None:
            message = f"job submission to {self.description} failed: {'; '.join(problems) or body}"
            if any(fragment in message for fragment in PERMANENT_SUBMIT_ERRORS):
                raise SubmitRejected(message)
            raise ClusterManagerError(message)
        return self.api.parse_submit(body)

    async def cancel(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            body = await self._request("DELETE", self.api.job_path(job_id), check=False)
            problems = self.api.errors(body)
            if problems and self.api.INVALID_JOB_ID not in self.api.error_numbers(body):
                raise ClusterManagerError(
                    f"cancelling job {job_id} through {self.description} failed: {'; '.join(problems)}"
                )

    def unsupported_fields(self, request: SubmitRequest) -> list[str]:
        return self.api.unsupported_fields(request)

    async def _find_default_partition(self) -> str | None:
        if not self._default_partition_known:
            self._default_partition = self.api.default_partition(await self._request("GET", self.api.partitions_path()))
            self._default_partition_known = True
        return self._default_partition

    def _headers(self) -> dict[str, str]:
        if self.token_file is None and self.token_env is None:
            return {}
        return {"X-SLURM-USER-NAME": self.user_name or "", "X-SLURM-USER-TOKEN": self._read_token()}

    def _read_token(self) -> str:
        if self.token_file is not None:
            path = Path(os.path.expanduser(self.token_file))
            try:
                text = path.read_text()
            except OSError as error:
                raise ClusterManagerError(
                    f"cannot read the slurmrestd token file {path}: {error.strerror}; write a JWT from "
                    "`scontrol token` there"
                ) from error
            where = f"token file {path}"
        else:
            text = os.environ.get(self.token_env or "", "")
            where = f"environment variable {self.token_env}"
        # `scontrol token` prints SLURM_JWT=<token>; both that line and the bare token are accepted.
        token = text.strip().removeprefix("SLURM_JWT=").strip()
        if not token:
            raise ClusterManagerError(f"missing JWT: the {where} is empty; set it to the output of `scontrol token`")
        return token

    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None, check: bool = True
    ) -> dict[str, Any]:
        if self._http is None:
            await self.start()
        assert self._http is not None
        try:
            response = await self._http.request(method, path, json=body, headers=self._headers())
        except httpx.TimeoutException as error:
            raise ClusterManagerError(
                f"{method} {path} on {self.description} timed out after {self.timeout:g} s"
            ) from error
        except httpx.HTTPError as error:
            raise ClusterManagerError(f"{method} {path} on {self.description} failed: {error}") from error
        if response.status_code in (401, 403):
            raise ClusterManagerError(
                f"{self.description} rejected the credentials (HTTP {response.status_code}) for {method} {path}; "
                "check user_name and that the token is current (`scontrol token`)"
            )
        try:
            data = response.json()
        except ValueError as error:
            raise ClusterManagerError(
                f"{method} {path} on {self.description} returned HTTP {response.status_code} without JSON: "
                f"{response.text[:300]!r}"
            ) from error
        if check and (response.status_code >= 400 or self.api.errors(data)):
            problems = "; ".join(self.api.errors(data)) or f"HTTP {response.status_code}"
            raise ClusterManagerError(
                f"{method} {path} on {self.description} failed: {problems}{self._token_hint(problems)}"
            )
        return data

    def _token_hint(self, problems: str) -> str:
        # Measured with Slurm 22.05.8: slurmrestd passes an expired or forged JWT on to slurmctld,
        # which rejects the RPC, and the response contains only "Unspecified error" (HTTP 500).
        if "Unspecified error" in problems and (self.token_file or self.token_env):
            return " (slurmrestd reports this when slurmctld rejects an expired or invalid JWT; check the token)"
        return ""
