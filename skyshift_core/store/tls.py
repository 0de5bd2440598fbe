"""TLS for the store's etcd connections: aetcd 1.0 opens only plaintext gRPC channels, so `TlsClient`
opens a secure one with a CA bundle and, for etcd's `--client-cert-auth`, a client certificate."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import aetcd
import grpc
from aetcd import rpc, watcher
from aetcd.client import _handle_errors

from skyshift_core.errors import InvalidError


@dataclass(frozen=True)
class EtcdTls:
    """TLS settings for etcd clients; the files are PEM. `server_name` overrides the name checked
    against etcd's certificate, for when endpoints are IP addresses that the certificate does not list."""

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise InvalidError(
                "etcd client TLS needs both a certificate and its key, or neither: "
                f"got certificate {self.cert_file!r} and key {self.key_file!r}"
            )

    def credentials(self) -> grpc.ChannelCredentials:
        """Read the PEM files and return gRPC channel credentials; InvalidError names an unreadable file."""
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file, "etcd CA file"),
            private_key=_read(self.key_file, "etcd client key") if self.key_file else None,
            certificate_chain=_read(self.cert_file, "etcd client certificate") if self.cert_file else None,
        )


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as error:
        raise InvalidError(f"cannot read the {what} {path!r}: {error}") from error


class TlsClient(aetcd.Client):
    """An aetcd client whose channel is a TLS gRPC channel.

    NOTE: `connect` mirrors aetcd 1.0.0's `Client.connect` with `secure_channel` in place of
    `insecure_channel`; check it again when the aetcd pin changes.
    """

    def __init__(self, *, tls: EtcdTls, **settings):
        super().__init__(**settings)
        self._tls = tls
        if tls.server_name:
            self._options = {**self._options, "grpc.ssl_target_name_override": tls.server_name}

    @_handle_errors
    async def connect(self) -> None:
        if self._connected.is_set():
            return
        if self._is_connecting:
            async with asyncio.timeout(self._connect_wait_timeout):
                await self._connected.wait()
            return
        try:
            self._is_connecting = True
            target = f"{self._host}:{self._port}"
            self.channel = rpc.secure_channel(target, self._tls.credentials(), options=self._options.items())
            if self._username is not None and self._password is not None:
                self.auth_stub = rpc.AuthStub(self.channel)
                request = rpc.AuthenticateRequest(name=self._username, password=self._password)
                response = await self.auth_stub.Authenticate(request, timeout=self._timeout)
                self.metadata = (("token", response.token),)
            self.kvstub = rpc.KVStub(self.channel)
            self.clusterstub = rpc.ClusterStub(self.channel)
            self.leasestub = rpc.LeaseStub(self.channel)
            self.maintenancestub = rpc.MaintenanceStub(self.channel)
            self._watcher = watcher.Watcher(rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata)
            self._connected.set()
        finally:
            self._is_connecting = False
