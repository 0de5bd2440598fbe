"""Lease routes for leader election, and the `X-SkyShift-Fence` header of fenced writes.

Controller managers call these routes through `skyshift_core.runtime.leader.LeaderElector`; the
resource routes call `fence_from_request` so that every write can be fenced by a lease.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from skyshift_core.auth.service import requires
from skyshift_core.store import Fence, Store
from skyshift_core.store.leases import FENCE_HEADER, MAX_TTL_SECONDS, MIN_TTL_SECONDS

DEFAULT_TTL_SECONDS = 15

router = APIRouter(tags=["leases"])


class AcquireBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    holder: str
    ttl_seconds: int = Field(default=DEFAULT_TTL_SECONDS, ge=MIN_TTL_SECONDS, le=MAX_TTL_SECONDS)


class HolderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    holder: str


def fence_from_request(request: Request) -> Fence | None:
    """Return the fence named by the request's `X-SkyShift-Fence` header, or None without one."""
    value = request.headers.get(FENCE_HEADER)
    if value is None:
        return None
    return Fence.parse(value)


def _store(request: Request) -> Store:
    return request.app.state.store


def json_response(data: dict) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), media_type="application/json")


@router.get(
    "/api/v1/leases/{name}",
    summary="Read a lease: its holder and remaining time to live",
    dependencies=[Depends(requires("get", "leases"))],
)
async def read_lease(request: Request, name: str) -> Response:
    return json_response((await _store(request).get_lease(name)).to_dict())


@router.post(
    "/api/v1/leases/{name}/acquire",
    summary="Acquire a lease that nobody holds (409 Conflict when another holder has it)",
    dependencies=[Depends(requires("create", "leases"))],
)
async def acquire_lease(request: Request, name: str, body: AcquireBody) -> Response:
    return json_response((await _store(request).acquire_lease(name, body.holder, body.ttl_seconds)).to_dict())


@router.post(
    "/api/v1/leases/{name}/renew",
    summary="Renew the caller's lease (409 LeaseLost when it expired or another holder has it)",
    dependencies=[Depends(requires("update", "leases"))],
)
async def renew_lease(request: Request, name: str, body: HolderBody) -> Response:
    return json_response((await _store(request).renew_lease(name, body.holder)).to_dict())


@router.post(
    "/api/v1/leases/{name}/release",
    summary="Release the caller's lease so another candidate can acquire it at once",
    dependencies=[Depends(requires("delete", "leases"))],
)
async def release_lease(request: Request, name: str, body: HolderBody) -> Response:
    return json_response((await _store(request).release_lease(name, body.holder)).to_dict())
