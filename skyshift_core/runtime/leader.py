"""Leader election over the API server's leases, so that one controller manager of several acts at a time.

A `LeaderElector` campaigns for a lease (`POST /api/v1/leases/{name}/acquire`), runs the caller's
leading coroutine while it holds the lease, and renews the lease every `renew_every` seconds. It
stops leading when renewal fails for `renew_deadline` seconds, which is shorter than the ttl, so
the leading task is cancelled before etcd can expire the lease and let another candidate in.
Writes sent with `fence_header()` are rejected with LeaseLostError once the lease is lost, which
covers a leader that is paused past its deadline.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import random
import re
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Gauge

from skyshift_core.client import ApiRequest, AsyncSkyShiftClient
from skyshift_core.errors import ConflictError, LeaseLostError, NotFoundError, SkyShiftError

logger = logging.getLogger(__name__)

# client-go's leader election metric, under its name: 1 while this process leads the lease, else 0.
LEADING = Gauge("leader_election_master_status", "1 while this process holds the lease and leads, else 0.", ["name"])

DEFAULT_TTL = 15
# The API server reads this header on every write (skyshift_core.api.leases); its value is `<lease>/<holder>`.
FENCE_HEADER = "X-SkyShift-Fence"
# The API server accepts holder identities of at most this many characters.
_MAX_IDENTITY_LENGTH = 253


class _LeadershipLost(Exception):
    """Raised inside the renew loop when the lease is lost or cannot be renewed in time."""


def default_identity() -> str:
    """Return `<hostname>_<pid>_<random>`, unique per process even across restarts of one host."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "host"
    return f"{host}_{os.getpid()}_{uuid.uuid4().hex[:8]}"[:_MAX_IDENTITY_LENGTH]


class LeaderElector:
    """Campaigns for lease `lease_name` as `identity` and runs a coroutine while it leads.

    Times are in seconds. `ttl` is the etcd lease's time to live, a whole number that etcd 3.4
    with default timing raises to at least 2. The leader renews every `renew_every` (default
    ttl/3) and gives up leading once `renew_deadline` (default 2/3 of the ttl) has passed since
    the start of its last successful renewal. Candidates, and a leader whose renewal failed, try again every
    `retry_every` (default ttl/10). With `release_on_cancel`, cancelling `run` releases the lease
    so another candidate takes over at once; without it, the lease expires after the ttl.

    `identity` must be unique among the candidates: the server treats an acquire by the current
    holder's identity as a retry and grants it, so two processes sharing one identity both lead.
    """

    def __init__(
        self,
        client: AsyncSkyShiftClient,
        lease_name: str,
        identity: str | None = None,
        *,
        ttl: int = DEFAULT_TTL,
        renew_every: float | None = None,
        renew_deadline: float | None = None,
        retry_every: float | None = None,
        release_on_cancel: bool = True,
    ):
        if not isinstance(ttl, int) or ttl < 1:
            raise ValueError(f"invalid ttl {ttl!r}: expected a whole number of seconds >= 1")
        self.client = client
        self.lease_name = lease_name
        # Creates the gauge's sample at 0 unless it exists, so a standby exports 0, as client-go does.
        LEADING.labels(lease_name)
        self.identity = identity or default_identity()
        self.ttl = ttl
        self.renew_every = renew_every if renew_every is not None else ttl / 3
        self.renew_deadline = renew_deadline if renew_deadline is not None else ttl * 2 / 3
        self.retry_every = retry_every if retry_every is not None else ttl / 10
        if not 0 < self.renew_every < self.renew_deadline < ttl:
            raise ValueError(
                f"invalid timing for lease {lease_name!r}: expected 0 < renew_every ({self.renew_every:g}) "
                f"< renew_deadline ({self.renew_deadline:g}) < ttl ({ttl}), so the leader stops before its lease expires"
            )
        if self.retry_every <= 0:
            raise ValueError(f"invalid retry_every {self.retry_every!r}: expected seconds > 0")
        self.release_on_cancel = release_on_cancel
        self._leading = False
        # Loop time at which the last successful acquire or renew request was sent. etcd
        # refreshed the lease after that, so the lease lives at least until this time + ttl.
        self._renewed_at = 0.0

    def __repr__(self) -> str:
        return f"<LeaderElector {self.lease_name} as {self.identity}>"

    @property
    def is_leader(self) -> bool:
        return self._leading

    def fence_header(self) -> dict[str, str]:
        """Return the header that fences a write by this elector's tenure, so the write fails with LeaseLostError once the tenure ends."""
        return {FENCE_HEADER: f"{self.lease_name}/{self.identity}"}

    def fenced_client(self) -> AsyncSkyShiftClient:
        """Build a client to the same server that sends `fence_header()` with every request. The caller closes it."""
        headers = {**self.client.headers, **self.fence_header()}
        return AsyncSkyShiftClient(
            self.client.server_url, self.client.timeout, headers=headers, ca_file=self.client.ca_file
        )

    # ---- lease calls ---------------------------------------------------------------------

    async def _lease_call(self, action: str, timeout: float, **body: Any) -> dict:
        # NOTE: AsyncSkyShiftClient has no lease methods yet, so this sends through its request helpers.
        request = ApiRequest(
            "POST",
            f"/api/v1/leases/{self.lease_name}/{action}",
            headers={"Content-Type": "application/json"},
            body=json.dumps({"holder": self.identity, **body}).encode(),
        )
        # asyncio.timeout keeps a cancellation that arrives with the response, which wait_for drops
        # on Python 3.11, so the renewing loop always stops when it is cancelled.
        async with asyncio.timeout(max(timeout, 0.01)):
            return await self.client._send(request)

    # ---- election ------------------------------------------------------------------------

    async def run(
        self,
        on_started_leading: Callable[[], Awaitable[Any]],
        on_stopped_leading: Callable[[], Any] | None = None,
    ) -> None:
        """Campaign until elected, run `on_started_leading()` as a task while leading, then return.

        The call returns when leadership ends: the lease was lost or could not be renewed in time
        (the leading task is cancelled first), or the leading coroutine returned (the lease is
        released). An exception of the leading coroutine is raised again after the lease is
        released. `on_stopped_leading()` (a function or coroutine function) runs after the leading
        task has ended. Call `run` again to campaign again.
        """
        try:
            await self._campaign()
        except asyncio.CancelledError:
            # An acquire in flight may have succeeded on the server; give that lease back.
            if self.release_on_cancel:
                await self.release()
            raise
        loop = asyncio.get_running_loop()
        self._leading = True
        LEADING.labels(self.lease_name).set(1)
        logger.info(
            "%s is now the leader of lease '%s' (ttl %d s, renewing every %g s); starting the leading task",
            self.identity, self.lease_name, self.ttl, self.renew_every,
        )  # fmt: skip
        leading = loop.create_task(on_started_leading(), name=f"leading-{self.lease_name}")
        renewing = loop.create_task(self._renew_until_lost(), name=f"renew-{self.lease_name}")
        release = False
        try:
            await asyncio.wait({leading, renewing}, return_when=asyncio.FIRST_COMPLETED)
            if renewing.done():
                logger.warning(
                    "%s stopped leading lease '%s': %s; the leading task is cancelled",
                    self.identity, self.lease_name, renewing.exception(),
                )  # fmt: skip
            else:
                release = True
                logger.info("%s: the leading task of lease '%s' ended; releasing the lease", self.identity, self.lease_name)
        except asyncio.CancelledError:
            release = self.release_on_cancel
            logger.info(
                "%s: leader election for lease '%s' was cancelled; %s",
                self.identity, self.lease_name, "releasing the lease" if release else "leaving the lease to expire",
            )  # fmt: skip
            raise
        finally:
            self._leading = False
            LEADING.labels(self.lease_name).set(0)
            await self._cancel(leading)
            await self._cancel(renewing)
            if on_stopped_leading is not None:
                await self._call_stopped(on_stopped_leading)
            if release:
                await self.release()
        if leading.done() and not leading.cancelled() and leading.exception() is not None:
            raise leading.exception()

    async def _campaign(self) -> None:
        loop = asyncio.get_running_loop()
        last_holder = None
        while True:
            sent = loop.time()
            try:
                await self._lease_call("acquire", self.renew_deadline, ttl_seconds=self.ttl)
                self._renewed_at = sent
                return
            except ConflictError as error:
                holder = (error.details or {}).get("holder")
                if holder != last_holder:
                    logger.info(
                        "%s: lease '%s' is held by %s; trying again every %g s",
                        self.identity, self.lease_name, holder, self.retry_every,
                    )  # fmt: skip
                    last_holder = holder
            except (SkyShiftError, asyncio.TimeoutError) as error:
                logger.warning(
                    "%s: could not acquire lease '%s': %s; trying again in %g s",
                    self.identity, self.lease_name, getattr(error, "message", None) or repr(error), self.retry_every,
                )  # fmt: skip
            await asyncio.sleep(self.retry_every * (1 + random.random() / 5))

    async def _renew_until_lost(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(self._renewed_at + self.renew_every - loop.time(), 0))
            deadline = self._renewed_at + self.renew_deadline
            while True:
                sent = loop.time()
                if sent >= deadline:
                    raise _LeadershipLost(f"the lease could not be renewed within {self.renew_deadline:g} s")
                try:
                    await self._lease_call("renew", deadline - sent)
                    self._renewed_at = sent
                    break
                except LeaseLostError as error:
                    raise _LeadershipLost(error.message) from error
                except (SkyShiftError, asyncio.TimeoutError) as error:
                    left = max(deadline - loop.time(), 0.0)
                    logger.warning(
                        "%s: renewing lease '%s' failed: %s; trying again, %.1f s left before giving up leadership",
                        self.identity, self.lease_name, getattr(error, "message", None) or repr(error), left,
                    )  # fmt: skip
                    await asyncio.sleep(max(min(self.retry_every, left), 0))

    async def release(self) -> None:
        """Release the lease if this elector holds it, so another candidate can take over at once."""
        try:
            await self._lease_call("release", self.renew_deadline)
            logger.info("%s released lease '%s'", self.identity, self.lease_name)
        except (NotFoundError, LeaseLostError):
            pass  # Not ours any more: nothing to release.
        except (SkyShiftError, asyncio.TimeoutError) as error:
            logger.warning(
                "%s: could not release lease '%s': %s; it expires within %d s",
                self.identity, self.lease_name, getattr(error, "message", None) or repr(error), self.ttl,
            )  # fmt: skip

    async def _cancel(self, task: asyncio.Task) -> None:
        if task.done():
            return
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=self.ttl)
        if not done:
            logger.error(
                "%s: task %s of lease '%s' ignored cancellation for %d s; leaving it running",
                self.identity, task.get_name(), self.lease_name, self.ttl,
            )  # fmt: skip

    async def _call_stopped(self, callback: Callable[[], Any]) -> None:
        try:
            outcome = callback()
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            logger.exception("%s: on_stopped_leading of lease '%s' failed", self.identity, self.lease_name)
