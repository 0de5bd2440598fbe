"""The client configuration (`~/.skyshift/config.yaml`, or `$SKYSHIFT_CONFIG`) and how the CLI finds its server.

The file is shaped like a kubeconfig, so credentials can be added to a context later:

    current_context: local
    contexts:
      - name: local
        server: http://127.0.0.1:50051

`skyshift up` writes it; every other command reads it through `resolve_server`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from skyshift_core.client import DEFAULT_SERVER
from skyshift_core.errors import InvalidError

CONFIG_ENV = "SKYSHIFT_CONFIG"
SERVER_ENV = "SKYSHIFT_SERVER"
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
    """A named API server to talk to."""

    name: str
    server: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "server": self.server}


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
            data = yaml.safe_load(text) or {}
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

    def set_context(self, name: str, server: str) -> None:
        """Add or replace the context `name` and make it current."""
        self.contexts = [context for context in self.contexts if context.name != name]
        self.contexts.append(Context(name, server))
        self.current_context = name

    def save(self) -> None:
        data = {"current_context": self.current_context, "contexts": [context.to_dict() for context in self.contexts]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(yaml.safe_dump(data, sort_keys=False))
        os.replace(temporary, self.path)


def _parse_context(path: Path, item: Any) -> Context:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(item.get("server"), str):
        raise InvalidError(
            f"the client config {path} has an invalid context {item!r}: expected name and server strings"
        )
    return Context(item["name"], item["server"])


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
