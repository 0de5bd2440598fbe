"""Controllers: workers that take requests from a work queue fed by informers and run a reconciler on each.

The controller manager builds one `Controller` per reconciler and runs it while it leads. A
controller starts its workers only after every one of its informers has listed once, so a
reconciler never acts on a partial cache. It applies the outcomes described in
`skyshift_core.runtime.reconcile`: requeue after a delay, retry with backoff, or record a
terminal error as a `ReconcileError` condition through the status subresource.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from skyshift_core.client import AsyncSkyShiftClient, resolve_model
from skyshift_core.errors import ConflictError, NotFoundError, SkyShiftError
from skyshift_core.objects import Condition, parse_object, set_condition
from skyshift_core.objects.meta import Object
from skyshift_core.runtime.informer import Informer, MapToRequests
from skyshift_core.runtime.reconcile import (
    RECONCILE_ERROR_CONDITION,
    ReconcileFunction,
    Reconciler,
    Request,
    Result,
    TerminalError,
    reset_reconcile_id,
    set_reconcile_id,
)
from skyshift_core.runtime.workqueue import ExponentialBackoff, QueueShutDownError, WorkQueue

logger = logging.getLogger(__name__)

# Reason of the ReconcileError condition once a later reconcile of the object succeeds.
RECONCILED_REASON = "Reconciled"
# Attempts of a condition write that loses a race with another writer of the object.
_CONDITION_WRITE_ATTEMPTS = 3
# Conflicts in a row that log at INFO; from the next one on they log at WARNING.
ROUTINE_CONFLICTS = 3


@dataclass(frozen=True)
class MappedInformer:
    """An informer whose objects concern other objects: each change enqueues `map_to_requests(obj)`.

    For example, a Cluster informer mapped to the requests of the Jobs placed on that cluster.
    """

    informer: Informer
    map_to_requests: MapToRequests


def _has_conditions(model: type[Object]) -> bool:
    field = model.model_fields.get("status")
    status_type = field.annotation if field is not None else None
    return "conditions" in getattr(status_type, "model_fields", {})


class Controller:
    """Runs `reconciler` on the requests its informers enqueue, with `workers` concurrent workers.

    `informers` lists plain informers, whose objects are reconciled themselves, and
    `MappedInformer`s. Informers that are not running yet are started by `run` and stopped when
    it ends; informers shared with other controllers may be started beforehand. Condition writes
    go through `client`, by default the first informer's client (a leader passes a fenced one).
    A reconciler object may define `async def shutdown()`, for work it left running in the
    background; `run` awaits it after the workers have stopped. A controller runs once: after
    `run` returns, build a new one.
    """

    def __init__(
        self,
        name: str,
        reconciler: Reconciler | ReconcileFunction,
        informers: Sequence[Informer | MappedInformer],
        *,
        workers: int = 1,
        client: AsyncSkyShiftClient | None = None,
        rate_limiter: ExponentialBackoff[Request] | None = None,
    ):
        if workers < 1:
            raise ValueError(f"invalid workers {workers!r} for controller {name!r}: expected at least 1")
        if not informers:
            raise ValueError(f"controller {name!r} has no informers: pass at least one informer to feed its queue")
        self.name = name
        self.workers = workers
        self._reconcile: ReconcileFunction = getattr(reconciler, "reconcile", reconciler)
        self._shutdown = getattr(reconciler, "shutdown", None)
        self.queue: WorkQueue[Request] = WorkQueue(name, rate_limiter)
        self.informers: list[Informer] = []
        for source in informers:
            if isinstance(source, MappedInformer):
                source.informer.add_queue(self.queue, source.map_to_requests)
                self.informers.append(source.informer)
            else:
                source.add_queue(self.queue)
                self.informers.append(source)
        # Caches of the kinds this controller reconciles directly, to see their conditions without a GET.
        self._own_caches = {informer.kind: informer for informer in reversed(informers) if isinstance(informer, Informer)}
        self.client = client or self.informers[0].client
        self._started = False

    def __repr__(self) -> str:
        return f"<Controller {self.name}>"

    async def run(self) -> None:
        """Start the informers, wait until all have synced, then run the workers until cancelled."""
        if self._started:
            raise RuntimeError(f"controller {self.name!r} has already run; build a new Controller to run it again")
        self._started = True
        started_here = [informer for informer in self.informers if not informer.running]
        for informer in started_here:
            informer.start()
        workers: list[asyncio.Task] = []
        try:
            logger.info("Controller %s: waiting for %d informers to sync", self.name, len(self.informers))
            await asyncio.gather(*(informer.wait_for_sync() for informer in self.informers))
            logger.info(
                "Controller %s: informers synced, %d requests queued; starting %d workers",
                self.name, len(self.queue), self.workers,
            )  # fmt: skip
            workers = [
                asyncio.get_running_loop().create_task(self._work(), name=f"{self.name}-worker-{index}")
                for index in range(self.workers)
            ]
            await asyncio.gather(*workers)
        finally:
            self.queue.shutdown()
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            if self._shutdown is not None:
                try:
                    await self._shutdown()
                except Exception:  # Stopping goes on; the reconciler's leftovers are lost either way.
                    logger.exception("Controller %s: the reconciler's shutdown failed", self.name)
            for informer in started_here:
                await informer.stop()
            logger.info("Controller %s: stopped", self.name)

    async def _work(self) -> None:
        while True:
            try:
                request = await self.queue.get()
            except QueueShutDownError:
                return
            try:
                await self._process(request)
            except Exception:  # A bug outside the reconciler must not stop this worker.
                logger.exception("Controller %s: processing %s failed unexpectedly; continuing", self.name, request)
            finally:
                self.queue.done(request)

    def _log_extra(self, request: Request, reconcile_id: str) -> dict:
        return {
            "controller": self.name,
            "reconcile_id": reconcile_id,
            "kind": request.kind,
            "namespace": request.namespace,
            "object_name": request.name,
        }

    async def _process(self, request: Request) -> None:
        reconcile_id = uuid.uuid4().hex[:8]
        extra = self._log_extra(request, reconcile_id)
        token = set_reconcile_id(reconcile_id)
        started = time.monotonic()
        try:
            result = await self._reconcile(request)
        except TerminalError as error:
            self.queue.forget(request)
            logger.error(
                "Controller %s, reconcile %s of %s failed permanently: %s: %s; recording condition %s "
                "and not retrying until the object changes",
                self.name, reconcile_id, request, error.reason, error.message, RECONCILE_ERROR_CONDITION,
                extra=extra,
            )  # fmt: skip
            await self._record_condition(
                request, Condition(type=RECONCILE_ERROR_CONDITION, status="True", reason=error.reason, message=error.message)
            )
        except Exception as error:
            delay = self.queue.add_rate_limited(request)
            attempts = self.queue.num_requeues(request)
            # Expected failures (the API or a cluster is unavailable) log their message;
            # anything else is a bug in the reconciler and logs its traceback. A conflict means
            # the object changed since the cache saw it, which is routine until it repeats.
            routine = isinstance(error, ConflictError) and attempts <= ROUTINE_CONFLICTS
            logger.log(
                logging.INFO if routine else logging.WARNING,
                "Controller %s, reconcile %s of %s failed (attempt %d): %s; retrying in %.2f s",
                self.name, reconcile_id, request, attempts,
                error.message if isinstance(error, SkyShiftError) else repr(error), delay,
                exc_info=not isinstance(error, SkyShiftError), extra=extra,
            )  # fmt: skip
        else:
            self.queue.forget(request)
            requeue_after = result.requeue_after if isinstance(result, Result) else None
            logger.debug(
                "Controller %s, reconcile %s of %s done in %.3f s%s",
                self.name, reconcile_id, request, time.monotonic() - started,
                "" if requeue_after is None else f"; reconciling again in {requeue_after:g} s",
                extra=extra,
            )  # fmt: skip
            if requeue_after is not None:
                self.queue.add_after(request, requeue_after)
            await self._clear_reconcile_error(request)
        finally:
            reset_reconcile_id(token)

    async def _clear_reconcile_error(self, request: Request) -> None:
        """After a success, turn a recorded ReconcileError condition to False, when the cache shows one."""
        informer = self._own_caches.get(request.kind)
        cached = informer.get(request.name, request.namespace) if informer is not None else None
        conditions = getattr(getattr(cached, "status", None), "conditions", None) or []
        if any(c.type == RECONCILE_ERROR_CONDITION and c.status == "True" for c in conditions):
            await self._record_condition(
                request, Condition(type=RECONCILE_ERROR_CONDITION, status="False", reason=RECONCILED_REASON)
            )

    async def _record_condition(self, request: Request, condition: Condition) -> None:
        """Write `condition` into the object's status.conditions; failures are logged, not raised."""
        model = resolve_model(request.kind)
        if not _has_conditions(model):
            logger.debug("Controller %s: %s has no status.conditions; not recording %s", self.name, request, condition.type)
            return
        for _ in range(_CONDITION_WRITE_ATTEMPTS):
            try:
                obj = parse_object(await self.client.get(model, request.name, request.namespace), model)
                condition = condition.model_copy(update={"observed_generation": obj.metadata.generation})
                updated = set_condition(obj.status.conditions, condition)
                if [c.model_dump() for c in updated] == [c.model_dump() for c in obj.status.conditions]:
                    return  # Already recorded; writing it again would only wake the watchers.
                obj.status.conditions = updated
                await self.client.update_status(obj)
                return
            except NotFoundError:
                return  # Deleted meanwhile; there is nothing to record on.
            except ConflictError:
                continue  # Someone else wrote the object; read it again.
            except SkyShiftError as error:
                logger.warning(
                    "Controller %s: could not record condition %s=%s on %s: %s; it is recorded on the next failure",
                    self.name, condition.type, condition.status, request, error.message,
                )  # fmt: skip
                return
        logger.warning(
            "Controller %s: condition %s on %s lost %d write races in a row; giving up until the next reconcile",
            self.name, condition.type, request, _CONDITION_WRITE_ATTEMPTS,
        )  # fmt: skip
