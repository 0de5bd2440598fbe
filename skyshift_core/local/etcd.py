"""Start and stop a single-member etcd for `skyshift up` and for tests, on loopback ports."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from skyshift_core.local.processes import free_port, is_alive, reap, stop_process, wait_for_port

logger = logging.getLogger(__name__)

INSTALL_HINT = "install it with: apt-get install -y etcd-server etcd-client (Debian/Ubuntu)"

# Revisions of history kept by auto-compaction. Watches that fall further behind get 410 Gone
# and list again, so this bounds etcd's disk use without hurting correctness.
DEFAULT_COMPACTION_RETENTION = 10000


def find_etcd() -> str:
    path = shutil.which("etcd")
    if path is None:
        raise FileNotFoundError(f"etcd was not found on PATH; {INSTALL_HINT}, or pass --etcd HOST:PORT")
    return path


# Starts of etcd on freshly chosen ports before giving up, when each finds a port taken.
_PORT_ATTEMPTS = 3


@dataclass
class EtcdProcess:
    """One etcd member on 127.0.0.1 with its data in `data_dir`."""

    data_dir: Path
    client_port: int = 0
    peer_port: int = 0
    name: str = "skyshift"
    compaction_retention: int = DEFAULT_COMPACTION_RETENTION
    pid: int | None = None
    log_path: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def command(self) -> list[str]:
        client_url = f"http://127.0.0.1:{self.client_port}"
        peer_url = f"http://127.0.0.1:{self.peer_port}"
        return [
            find_etcd(),
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"{self.name}={peer_url}",
            "--auto-compaction-mode", "revision",
            "--auto-compaction-retention", str(self.compaction_retention),
            # etcd 3.4 still defaults to the capnslog logger and warns at start-up that it is deprecated.
            "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
        ]  # fmt: skip

    def start(self, timeout: float = 20.0) -> "EtcdProcess":
        """Start etcd and wait until it listens. Ports left at 0 are chosen free; when another
        process takes one of them before etcd binds it, etcd starts again on other free ports."""
        self.data_dir = Path(self.data_dir)
        # Private, as etcd recommends (it warns at every start about a wider mode): the data contains
        # password hashes and token digests.
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self.log_path = self.log_path or self.data_dir.parent / f"{self.data_dir.name}.log"
        chosen = (self.client_port == 0, self.peer_port == 0)
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            self.client_port = self.client_port if not chosen[0] else free_port()
            self.peer_port = self.peer_port if not chosen[1] else free_port()
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            with open(self.log_path, "ab") as log:
                process = subprocess.Popen(
                    self.command(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            self.pid = process.pid
            if wait_for_port("127.0.0.1", self.client_port, timeout, pid=self.pid):
                logger.info("Started etcd (pid %d) on %s with data in %s", self.pid, self.endpoint, self.data_dir)
                return self
            failure = f"did not listen within {timeout:g} s" if is_alive(self.pid) else "exited before it listened"
            self.stop()
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                output = log.read().decode(errors="replace")
            if any(chosen) and "address already in use" in output and attempt < _PORT_ATTEMPTS:
                logger.info("etcd lost a port it was given to another process; starting it on other ports")
                continue
            raise RuntimeError(f"etcd on {self.endpoint} {failure}; its log:\n{output[-2000:]}")
        raise AssertionError("unreachable")  # pragma: no cover

    def is_running(self) -> bool:
        return self.pid is not None and is_alive(self.pid)

    def stop(self) -> None:
        if self.pid is not None:
            stop_process(self.pid)
            reap(self.pid)
            logger.info("Stopped etcd (pid %d)", self.pid)
        self.pid = None

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        import os
        import signal

        if self.pid is not None and is_alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
            while is_alive(self.pid):
                reap(self.pid)
                time.sleep(0.02)
        self.pid = None
