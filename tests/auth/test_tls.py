"""TLS for the API server and for etcd client connections, with a throwaway CA made by `cryptography`.

etcd runs here with client TLS (its own certificate, and client certificates required) and, in a
second setup, with TLS and etcd's user/password authentication, all on loopback ports.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cli_helpers import isolated_env  # noqa: F401
import yaml
from auth_helpers import bearer, create_user, set_password
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from typer.testing import CliRunner

from skyshift_core.api.app import ApiSettings
from skyshift_core.api.server import ServerThread
from skyshift_core.auth.bootstrap import bootstrap_admin_token
from skyshift_core.cli.config import ClientConfig
from skyshift_core.cli.main import app
from skyshift_core.client import AsyncSkyShiftClient, SkyShiftClient
from skyshift_core.controllers.manager import ControllerManager
from skyshift_core.errors import ServerUnreachableError, SkyShiftError, UnavailableError
from skyshift_core.local.processes import free_port, reap, stop_process, wait_for_port
from skyshift_core.objects import Namespace
from skyshift_core.store import Store
from skyshift_core.store.tls import EtcdTls

pytestmark = pytest.mark.skipif(
    shutil.which("etcd") is None, reason="etcd is not installed: apt-get install -y etcd-server"
)


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    # A server certificate, signed by `ca`, that names only the host other.example.
    other_host_cert: Path
    other_host_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key) -> Path:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _ca(name: str):
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(ca_key, ca_cert, common_name: str, usage, names: list | None = None) -> tuple:
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    if names is None:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _ca("skyshift test CA")
    server_key, server_cert = _leaf(ca_key, ca_cert, "127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH)
    client_key, client_cert = _leaf(ca_key, ca_cert, "skyshift-api", ExtendedKeyUsageOID.CLIENT_AUTH)
    _, other_cert = _ca("unrelated CA")
    other_host_key, other_host_cert = _leaf(
        ca_key, ca_cert, "other.example", ExtendedKeyUsageOID.SERVER_AUTH, names=[x509.DNSName("other.example")]
    )
    return Pki(
        ca=_write_cert(directory / "ca.pem", ca_cert),
        server_cert=_write_cert(directory / "server.pem", server_cert),
        server_key=_write_key(directory / "server-key.pem", server_key),
        client_cert=_write_cert(directory / "client.pem", client_cert),
        client_key=_write_key(directory / "client-key.pem", client_key),
        other_ca=_write_cert(directory / "other-ca.pem", other_cert),
        other_host_cert=_write_cert(directory / "other-host.pem", other_host_cert),
        other_host_key=_write_key(directory / "other-host-key.pem", other_host_key),
    )


class TlsEtcd:
    """One etcd member on loopback that serves clients over TLS only."""

    def __init__(self, pki: Pki, data_dir: Path, client_cert_auth: bool):
        self.pki = pki
        self.log = data_dir.parent / "etcd.log"
        # Another process may take a free port before etcd binds it; then etcd starts on others.
        for _ in range(3):
            if self._start(data_dir, client_cert_auth):
                return
        raise AssertionError(self.log.read_text())

    def _start(self, data_dir: Path, client_cert_auth: bool) -> bool:
        """Start etcd on two free ports; return False when one was taken before etcd bound it."""
        self.port, peer = free_port(), free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        pki = self.pki
        command = [
            "etcd", "--name", "tls", "--data-dir", str(data_dir),
            "--listen-client-urls", f"https://127.0.0.1:{self.port}",
            "--advertise-client-urls", f"https://127.0.0.1:{self.port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"tls=http://127.0.0.1:{peer}",
            "--cert-file", str(pki.server_cert), "--key-file", str(pki.server_key), "--log-level", "warn",
        ]  # fmt: skip
        if client_cert_auth:
            # etcd 3.4 requires client certificates whenever --trusted-ca-file is set.
            command += ["--client-cert-auth", "--trusted-ca-file", str(pki.ca)]
        with open(self.log, "wb") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if wait_for_port("127.0.0.1", self.port, 20, pid=self.process.pid):
            return True
        self.stop()
        assert "address already in use" in self.log.read_text(), self.log.read_text()
        return False

    def etcdctl(self, *args: str) -> None:
        command = [
            "etcdctl", "--endpoints", f"https://{self.endpoint}", "--cacert", str(self.pki.ca),
            "--cert", str(self.pki.client_cert), "--key", str(self.pki.client_key), *args,
        ]  # fmt: skip
        subprocess.run(
            command, check=True, capture_output=True, timeout=30, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}
        )

    def stop(self) -> None:
        stop_process(self.process.pid)
        reap(self.process.pid)


@pytest.fixture
def mtls_etcd(pki, tmp_path):
    etcd = TlsEtcd(pki, tmp_path / "data", client_cert_auth=True)
    yield etcd
    etcd.stop()


@pytest.fixture
def password_etcd(pki, tmp_path):
    """etcd over TLS with authentication on: user root, password 'etcd root password'."""
    etcd = TlsEtcd(pki, tmp_path / "data", client_cert_auth=False)
    etcd.etcdctl("user", "add", "root:etcd root password")
    etcd.etcdctl("auth", "enable")
    yield etcd
    etcd.stop()


async def test_store_over_mutual_tls(mtls_etcd, pki):
    store = Store(
        [mtls_etcd.endpoint], root="/tls", tls=EtcdTls(str(pki.ca), str(pki.client_cert), str(pki.client_key))
    )
    try:
        created = await store.create(Namespace(metadata={"name": "over-tls"}))
        fetched = await store.get(Namespace, None, "over-tls")
    finally:
        await store.close()

    assert fetched.metadata.uid == created.metadata.uid


async def test_store_without_client_certificate_fails(mtls_etcd, pki):
    store = Store([mtls_etcd.endpoint], root="/tls", deadline=2, tls=EtcdTls(str(pki.ca)))
    try:
        with pytest.raises(SkyShiftError):
            await store.ping()
    finally:
        await store.close()


async def test_store_with_untrusted_server_fails(mtls_etcd, pki):
    tls = EtcdTls(str(pki.other_ca), str(pki.client_cert), str(pki.client_key))
    store = Store([mtls_etcd.endpoint], root="/tls", deadline=2, tls=tls)
    try:
        with pytest.raises(UnavailableError):
            await store.ping()
    finally:
        await store.close()


async def test_store_with_etcd_user_and_password(password_etcd, pki):
    tls = EtcdTls(str(pki.ca))
    store = Store([password_etcd.endpoint], root="/auth", tls=tls, username="root", password="etcd root password")
    wrong = Store([password_etcd.endpoint], root="/auth", deadline=2, tls=tls, username="root", password="wrong")
    try:
        await store.create(Namespace(metadata={"name": "with-password"}))
        assert (await store.get(Namespace, None, "with-password")).metadata.name == "with-password"
        with pytest.raises(SkyShiftError):
            await wrong.ping()
    finally:
        await store.close()
        await wrong.close()


def test_etcd_tls_needs_certificate_and_key_together(pki):
    with pytest.raises(SkyShiftError) as raised:
        EtcdTls(str(pki.ca), cert_file=str(pki.client_cert))
    assert "both a certificate and its key" in raised.value.message


@pytest.fixture
async def https_api(mtls_etcd, pki):
    """An API server serving HTTPS, over etcd with mutual TLS; yields (url, admin token)."""
    settings = ApiSettings(
        etcd_endpoints=[mtls_etcd.endpoint],
        etcd_root="/https",
        etcd_ca_file=str(pki.ca),
        etcd_cert_file=str(pki.client_cert),
        etcd_key_file=str(pki.client_key),
        tls_cert_file=str(pki.server_cert),
        tls_key_file=str(pki.server_key),
    )
    store = Store(settings.etcd_endpoints, root=settings.etcd_root, tls=settings.etcd_tls())
    try:
        token = await bootstrap_admin_token(store)
    finally:
        await store.close()
    server = ServerThread(settings, free_port()).start()
    try:
        yield server.url, token
    finally:
        server.stop()


def test_https_api_with_ca_file(https_api, pki):
    url, token = https_api

    with SkyShiftClient(url, token=token, ca_file=str(pki.ca)) as client:
        created = client.create({"kind": "Job", "metadata": {"name": "secure"}, "spec": {"run": "true"}})
        listed = client.list("jobs")["items"]

    assert url.startswith("https://")
    assert [item["metadata"]["name"] for item in listed] == [created["metadata"]["name"]]


async def test_https_api_async_client(https_api, pki):
    url, token = https_api

    async with AsyncSkyShiftClient(url, token=token, ca_file=str(pki.ca)) as client:
        created = await client.create({"kind": "Job", "metadata": {"name": "async-secure"}, "spec": {"run": "true"}})
        fetched = await client.get("jobs", "async-secure")

    assert fetched["metadata"]["uid"] == created["metadata"]["uid"]


def test_https_api_rejects_untrusted_client(https_api, pki):
    url, token = https_api

    with SkyShiftClient(url, token=token, ca_file=str(pki.other_ca), timeout=5) as client:
        with pytest.raises((ServerUnreachableError, UnavailableError)) as raised:
            client.list("jobs")
    assert "CERTIFICATE_VERIFY_FAILED" in raised.value.message


def test_https_api_refuses_plain_http(https_api):
    url, _ = https_api

    with pytest.raises(httpx.HTTPError):
        httpx.get(url.replace("https://", "http://") + "/healthz", timeout=5)


def run_api_server(*arguments: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `skyshift api-server` on a free port with `arguments`; each case here makes it exit."""
    import sys

    command = [sys.executable, "-m", "skyshift_core.cli.main", "api-server", "--port", str(free_port()), *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def test_api_server_exits_on_untrusted_etcd(mtls_etcd, pki):
    result = run_api_server(
        "--etcd", mtls_etcd.endpoint, "--etcd-cafile", str(pki.other_ca),
        "--etcd-certfile", str(pki.client_cert), "--etcd-keyfile", str(pki.client_key),
    )  # fmt: skip

    assert result.returncode == 1, result.stderr
    assert f"the TLS connection to etcd at {mtls_etcd.endpoint} failed" in result.stderr
    assert "Check --etcd-cafile" in result.stderr
    assert "Traceback" not in result.stderr


def test_api_server_exits_without_etcd_client_certificate(mtls_etcd, pki):
    result = run_api_server("--etcd", mtls_etcd.endpoint, "--etcd-cafile", str(pki.ca))

    assert result.returncode == 1, result.stderr
    assert "--etcd-certfile with --etcd-keyfile" in result.stderr
    assert "Traceback" not in result.stderr


def test_api_server_names_missing_tls_cert(etcd_server, pki, tmp_path):
    missing = tmp_path / "absent.pem"

    result = run_api_server("--etcd", etcd_server.endpoint, "--tls-cert", str(missing), "--tls-key", str(pki.server_key))

    assert result.returncode == 1
    assert f"cannot read the --tls-cert file {str(missing)!r}: no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_api_server_rejects_key_of_other_certificate(etcd_server, pki):
    result = run_api_server(
        "--etcd", etcd_server.endpoint, "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.client_key)
    )

    assert result.returncode == 1
    assert "the key must belong to the certificate" in result.stderr
    assert "Traceback" not in result.stderr


# ---- client errors when TLS fails -----------------------------------------------------------


def test_cli_untrusted_certificate_hint(https_api, pki, isolated_env):
    url, token = https_api

    result = CliRunner().invoke(
        app, ["--server", url, "--token", token, "--certificate-authority", str(pki.other_ca), "get", "jobs"]
    )

    assert result.exit_code == 1
    assert f"cannot verify the TLS certificate of the API server at {url} against the CA file {pki.other_ca}" in (
        result.stderr
    )
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr
    assert "pass --certificate-authority FILE" in result.stderr
    assert "CA file from --certificate-authority" in result.stderr
    assert "skyshift up" not in result.stderr


def test_cli_system_cas_hint(https_api, isolated_env):
    url, token = https_api

    result = CliRunner().invoke(app, ["--server", url, "--token", token, "get", "jobs"])

    assert result.exit_code == 1
    assert "against the system's trusted CAs" in result.stderr
    assert "pass --certificate-authority FILE" in result.stderr


def test_cli_context_ca_named(https_api, pki, isolated_env, monkeypatch: pytest.MonkeyPatch):
    url, token = https_api
    config = ClientConfig(isolated_env / "config.yaml")
    config.set_context("tls", url, user="admin", token=token, certificate_authority=str(pki.other_ca))
    config.save()
    monkeypatch.setenv("SKYSHIFT_CONFIG", str(config.path))

    result = CliRunner().invoke(app, ["get", "jobs"])

    assert result.exit_code == 1
    assert f"CA file from context 'tls' in {config.path}" in result.stderr


@pytest.fixture
def wrong_host_tls(pki):
    """A TLS listener on loopback whose certificate, signed by the test CA, names only other.example."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.other_host_cert, pki.other_host_key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.settimeout(5)
            with connection:
                try:
                    with context.wrap_socket(connection, server_side=True):
                        pass
                except OSError:
                    pass  # The client rejects the certificate during the handshake.

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    stopping.set()
    thread.join(5)
    listener.close()


def test_cli_certificate_for_other_host(wrong_host_tls: str, pki, isolated_env):
    options = ["--server", wrong_host_tls, "--token", "sks_a.00.x", "--certificate-authority", str(pki.ca)]

    result = CliRunner().invoke(app, [*options, "get", "jobs"])

    assert result.exit_code == 1
    assert "mismatch" in result.stderr
    assert "the certificate does not name 127.0.0.1" in result.stderr
    assert "pass --certificate-authority FILE" not in result.stderr


def test_cli_http_to_tls_port_suggests_https(https_api, isolated_env):
    url, token = https_api
    plain = url.replace("https://", "http://")

    result = CliRunner().invoke(app, ["--server", plain, "--token", token, "get", "jobs"])

    assert result.exit_code == 1
    assert f"the server at {plain} closed the connection without sending a response" in result.stderr
    assert f"use {url} instead" in result.stderr
    assert "skyshift up" not in result.stderr


async def test_async_client_http_to_tls_port(https_api):
    url, token = https_api
    plain = url.replace("https://", "http://")

    async with AsyncSkyShiftClient(plain, token=token, timeout=5) as client:
        with pytest.raises(ServerUnreachableError) as raised:
            await client.list("jobs")

    assert f"use {url} instead" in raised.value.message


async def test_async_client_untrusted_certificate(https_api, pki):
    url, token = https_api

    async with AsyncSkyShiftClient(url, token=token, ca_file=str(pki.other_ca), timeout=5) as client:
        with pytest.raises(ServerUnreachableError) as raised:
            await client.list("jobs")

    assert f"cannot verify the TLS certificate of the API server at {url}" in raised.value.message
    assert "pass --certificate-authority FILE" in raised.value.message


# ---- the CA path in the client config -------------------------------------------------------


@pytest.fixture
def https_admin(https_api, pki) -> Iterator[httpx.Client]:
    url, token = https_api
    verify = ssl.create_default_context(cafile=str(pki.ca))
    with httpx.Client(base_url=url, verify=verify, headers=bearer(token), timeout=30) as client:
        yield client


@pytest.mark.parametrize("global_option", [False, True], ids=["login-option", "global-option"])
def test_login_stores_absolute_ca_path(
    https_api, https_admin, pki, isolated_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, global_option: bool
):
    url, _ = https_api
    create_user(https_admin, "root", ("admin",))
    set_password(https_admin, "root", "root password")
    monkeypatch.chdir(pki.ca.parent.parent)
    ca_option = ["--certificate-authority", f"{pki.ca.parent.name}/{pki.ca.name}"]
    login_args = ["login", "--username", "root", "--password-stdin"]
    args = [*ca_option, *login_args] if global_option else [*login_args, *ca_option]

    login = CliRunner().invoke(app, ["--server", url, *args], input="root password\n")
    monkeypatch.chdir(tmp_path)
    whoami = CliRunner().invoke(app, ["whoami"])

    assert login.exit_code == 0, login.output
    stored = yaml.safe_load((isolated_env / ".skyshift" / "config.yaml").read_text())["contexts"][0]
    assert stored["certificate_authority"] == str(pki.ca)
    assert whoami.exit_code == 0, whoami.output
    assert "User:    root" in whoami.output


def test_invite_command_names_ca(https_api, pki, isolated_env):
    url, token = https_api

    options = ["--server", url, "--token", token, "--certificate-authority", str(pki.ca)]

    result = CliRunner().invoke(app, [*options, "invite", "create", "--role", "viewer"])

    assert result.exit_code == 0, result.output
    assert f"The new user runs: skyshift --server {url} --certificate-authority {pki.ca} register --invite ski_" in (
        result.output
    )
    assert f"Give the new user a copy of the CA file {pki.ca}" in result.output


# ---- the controller manager -----------------------------------------------------------------


async def test_controller_manager_logs_tls_cause(https_api, pki, caplog: pytest.LogCaptureFixture):
    url, token = https_api
    caplog.set_level(logging.WARNING, logger="skyshift_core.controllers.manager")
    manager = ControllerManager(url, token=token, ca_file=str(pki.other_ca))
    task = asyncio.create_task(manager.run())
    try:
        deadline = asyncio.get_running_loop().time() + 15
        while "is not ready (attempt 1;" not in caplog.text and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
    finally:
        manager.stop()
        await asyncio.wait_for(task, timeout=10)

    (first,) = [record.getMessage() for record in caplog.records if "(attempt 1;" in record.getMessage()]
    assert "CERTIFICATE_VERIFY_FAILED" in first
    assert f"against the CA file {pki.other_ca}" in first
