"""The controller runtime: informers, work queues, the reconciler contract, controllers and leader election.

Controllers built on it talk only to the API server, through `skyshift_core.client.AsyncSkyShiftClient`.
"""

from skyshift_core.runtime.controller import Controller, MappedInformer
from skyshift_core.runtime.informer import DEFAULT_RESYNC_PERIOD, Informer
from skyshift_core.runtime.leader import LeaderElector
from skyshift_core.runtime.reconcile import (
    RECONCILE_ERROR_CONDITION,
    Reconciler,
    Request,
    Result,
    TerminalError,
    current_reconcile_id,
)
from skyshift_core.runtime.workqueue import ExponentialBackoff, QueueShutDownError, WorkQueue

__all__ = [
    "DEFAULT_RESYNC_PERIOD",
    "RECONCILE_ERROR_CONDITION",
    "Controller",
    "ExponentialBackoff",
    "Informer",
    "LeaderElector",
    "MappedInformer",
    "QueueShutDownError",
    "Reconciler",
    "Request",
    "Result",
    "TerminalError",
    "WorkQueue",
    "current_reconcile_id",
]
