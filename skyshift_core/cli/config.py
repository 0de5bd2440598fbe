"""The client configuration (`~/.skyshift/config.yaml`, or `$SKYSHIFT_CONFIG`) and how the CLI finds its server.

The file is shaped like a kubeconfig; each context names a server and the credentials for it:

    current_context: local
    contexts:
      - name: local
        server: https://10.0.0.5:50051
        user: admin
        token: sks_admin.0123abcd...            # from skyshift login
        certificate_authority: /path/to/ca.pem  # verifies an https server; optional

It holds tokens, so it is always written with mode 0600. `skyshift up` and `skyshift login` write
it; every other command reads it through `resolve_connection`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from skyshift_core import manifest_yaml
from skyshift_core.client import DEFAULT_SERVER
from skyshift_core.errors import InvalidError

CONFIG_ENV = "SKYSHIFT_CONFIG"
SERVER_ENV = "SKYSHIFT_SERVER"
TOKEN_ENV = "SKYSHIFT_TOKEN"
CA_FILE_ENV = "SKYSHIFT_CA_FILE"
DEFAULT_STATE_DIR = Path("~/.skyshift")
CONFIG_FILE_NAME = "config.yaml"
LOCAL_CONTEXT = "local"


def default_config_path() -> Path:
    """Return `$SKYSHIFT_CONFIG` when set, else `~/.skyshift/config.yaml`."""
    configured = os.environ.get(CONFIG_ENV)
    if configured:
        return Path(configured).expanduser()
    return (DEFAULT_STATE_DIR / CONFIG_FILE_NAME).expanduser()


@dataclass
class Context:
    """A named API server to talk to, and the credentials to send it."""

    name: str
    server: str
    user: str | None = None
    token: str | None = None
    certificate_authority: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "server": self.server}
        for key in ("user", "token", "certificate_authority"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data


@dataclass
class ClientConfig:
    path: Path
    current_context: str | None = None
    contexts: list[Context] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path | None = None) -> ClientConfig:
        """Read the file at `path` (default: `default_config_path()`); a missing file is an empty config."""
        path = path or default_config_path()
        try:
            text = path.read_text()
        except FileNotFoundError:
            return cls(path)
        except OSError as error:
            raise InvalidError(f"cannot read the client config {path}: {error}") from error
        try:
            data = manifest_yaml.load(text) or {}
        except yaml.YAMLError as error:
            raise InvalidError(f"the client config {path} is not valid YAML: {error}; fix or delete it") from error
        if not isinstance(data, dict):
            raise InvalidError(f"the client config {path} must be a mapping with current_context and contexts")
        return cls(
            path, data.get("current_context"), [_parse_context(path, item) for item in data.get("contexts") or []]
        )

    def current(self) -> Context | None:
        """Return the current context; raise InvalidError when current_context names no context."""
        if not self.current_context:
            return None
        for context in self.contexts:
            if context.name == self.current_context:
                return context
        names = ", ".join(context.name for context in self.contexts) or "none"
        raise InvalidError(
            f"the client config {self.path} sets current_context {self.current_context!r}, "
            f"but its contexts are: {names}; fix current_context or run skyshift up again"
        )

    def get(self, name: str) -> Context:
        for context in self.contexts:
            if context.name == name:
                return context
        names = ", ".join(context.name for context in self.contexts) or "none"
        raise InvalidError(f"no context named {name!r} in {self.path}; its contexts are: {names}")

    def set_context(
        self,
        name: str,
        server: str,
        *,
        user: str | None = None,
        token: str | None = None,
        certificate_authority: str | None = None,
    ) -> None:
        """Add or replace the context `name` and make it current."""
        self.contexts = [context for context in self.contexts if context.name != name]
        self.contexts.append(Context(name, server, user, token, certificate_authority))
        self.current_context = name

    def save(self) -> None:
        """Write the file atomically with mode 0600, because it holds tokens."""
        data = {"current_context": self.current_context, "contexts": [context.to_dict() for context in self.contexts]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(descriptor, 0o600)
            os.write(descriptor, yaml.safe_dump(data, sort_keys=False).encode())
        finally:
            os.close(descriptor)
        os.replace(temporary, self.path)


def _parse_context(path: Path, item: Any) -> Context:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(item.get("server"), str):
        raise InvalidError(
            f"the client config {path} has an invalid context {item!r}: expected name and server strings"
        )
    optional = {}
    for key in ("user", "token", "certificate_authority"):
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidError(f"the client config {path} has a context {item['name']!r} whose {key} is not a string")
        optional[key] = value
    return Context(item["name"], item["server"], **optional)


def resolve_server(explicit: str | None = None) -> str:
    """Find the API server URL: `explicit` (--server), then $SKYSHIFT_SERVER, then the config's
    current context, then http://127.0.0.1:50051."""
    if explicit:
        return explicit
    from_env = os.environ.get(SERVER_ENV)
    if from_env:
        return from_env
    context = ClientConfig.load().current()
    if context is not None:
        return context.server
    return DEFAULT_SERVER


@dataclass
class Connection:
    """The server that the CLI sends requests to, and the credentials it sends with them."""

    server: str
    token: str | None = None
    ca_file: str | None = None


def resolve_connection(
    server: str | None = None, token: str | None = None, ca_file: str | None = None
) -> Connection:
    """Find the server as `resolve_server` does, then the credentials.

    The token is `token` (--token), else $SKYSHIFT_TOKEN, else the current context's token. The CA
    file is `ca_file`, else $SKYSHIFT_CA_FILE, else the context's. The context's credentials are
    used only when the server is the context's own, so a token is never sent to a server it was
    not issued for.
    """
    url = resolve_server(server)
    context = ClientConfig.load().current()
    own = context if context is not None and context.server.rstrip("/") == url.rstrip("/") else None
    token = token or os.environ.get(TOKEN_ENV) or (own.token if own else None)
    ca_file = ca_file or os.environ.get(CA_FILE_ENV) or (own.certificate_authority if own else None)
    return Connection(url, token, ca_file)
