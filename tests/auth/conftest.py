"""Helpers for the authentication and authorization tests: users with Roles, and clients that act as them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

import httpx
import pytest
from auth_helpers import bearer, create_user


@pytest.fixture
def client_as(api_server: str) -> Iterator[Callable[[str], httpx.Client]]:
    """Return a function that builds an httpx client sending a given token; all are closed afterwards."""
    clients: list[httpx.Client] = []

    def build(token: str) -> httpx.Client:
        client = httpx.Client(base_url=api_server, timeout=30, headers=bearer(token))
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def user_client(api, client_as) -> Callable[..., httpx.Client]:
    """Return a function: `user_client(name, *roles)` creates that user and returns a client acting as it."""

    def build(name: str, *roles: str) -> httpx.Client:
        return client_as(create_user(api, name, roles))

    return build
