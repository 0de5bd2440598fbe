"""The client configuration (`~/.skyshift/config.yaml`, or `$SKYSHIFT_CONFIG`) and how the CLI finds its server.

The file is shaped like a kubeconfig; each context names a server and the credentials for it:

    current_context: local
    contexts:
      - name: local
        server: https://10.0.0.5:50051
        user: admin
        token: sks_admin.0123abcd...            # from skyshift login
        certificate_authority: /path/to/ca.pem  # verifies an https server; optional
        namespace: group-a                      # default of --namespace; optional

It holds tokens, so it is always written with mode 0600. `skyshift up` and `skyshift login` write
it; every other command reads it through `resolve_connection`. As in a kubeconfig, a relative
certificate_authority path is relative to the directory of the file. `set_context` stores
absolute paths.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
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


class ContextNamespace(str):
    """A namespace taken from the current context, not given with --namespace.

    As in kubectl, it is only a default: a manifest that names its own namespace keeps it, where
    an explicit --namespace that differs is an error."""


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
    # The namespace of commands without --namespace, as a kubeconfig context's namespace is.
    namespace: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "server": self.server}
        for key in ("user", "token", "certificate_authority", "namespace"):
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
            data = manifest_yaml.load(text, str(path)) or {}
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
        """Add or replace the context `name` and make it current; a replaced context keeps its namespace.

        A relative `certificate_authority` is taken relative to the working directory and stored as
        an absolute path, so the context works from any directory.
        """
        if certificate_authority is not None:
            certificate_authority = absolute_path(certificate_authority)
        namespace = next((context.namespace for context in self.contexts if context.name == name), None)
        self.contexts = [context for context in self.contexts if context.name != name]
        self.contexts.append(Context(name, server, user, token, certificate_authority, namespace))
        self.current_context = name

    def certificate_authority(self, context: Context) -> str | None:
        """Return the context's CA file as an absolute path; a relative one is relative to this file's directory."""
        if context.certificate_authority is None:
            return None
        path = Path(context.certificate_authority).expanduser()
        return str(path if path.is_absolute() else self.path.parent.absolute() / path)

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


def absolute_path(path: str) -> str:
    """Return `path` with `~` expanded and made absolute against the working directory (symlinks kept)."""
    return str(Path(path).expanduser().absolute())


def _parse_context(path: Path, item: Any) -> Context:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(item.get("server"), str):
        raise InvalidError(
            f"the client config {path} has an invalid context {item!r}: expected name and server strings"
        )
    optional = {}
    for key in ("user", "token", "certificate_authority", "namespace"):
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidError(f"the client config {path} has a context {item['name']!r} whose {key} is not a string")
        optional[key] = value
    return Context(item["name"], item["server"], **optional)


# The accepted forms of a server URL, quoted at the end of every error about one.
SERVER_URL_FORM = "expected http://HOST:PORT or https://HOST:PORT"


def server_url_problem(url: str) -> str | None:
    """Return what is wrong with an API server URL, or None when the client can use it.

    A path is allowed (a proxy's https://host/skyshift); a query, a fragment or a bad port are not.
    """
    if not url:
        return "the URL is empty"
    if any(character.isspace() for character in url):
        return "the URL contains whitespace"
    scheme, separator, _ = url.partition("://")
    if not separator:
        return "the scheme is missing"
    if scheme.lower() not in ("http", "https"):
        return f"the scheme {scheme!r} is not http or https"
    try:
        parts = urlsplit(url)
    except ValueError:
        # urlsplit rejects only unbalanced brackets here, which is how an IPv6 address is written.
        return "the host has an unbalanced '[' or ']'; write an IPv6 address in brackets, such as [::1]"
    if not parts.hostname:
        return "the host is missing"
    if parts.query or parts.fragment:
        return "the URL must not have a query (?...) or fragment (#...)"
    port_text = _port_text(parts.netloc)
    if port_text is not None:
        if not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
            return f"the port {port_text!r} is not a number from 1 to 65535"
    try:
        httpx.URL(url)
    except httpx.InvalidURL as error:
        return str(error)
    return None


def _port_text(netloc: str) -> str | None:
    """Return the text after the host's ':' in a URL's netloc, or None when it names no port."""
    host_and_port = netloc.rpartition("@")[2]
    if host_and_port.startswith("["):
        host_and_port = host_and_port.partition("]")[2]
    if ":" not in host_and_port:
        return None
    return host_and_port.rpartition(":")[2]


@dataclass(frozen=True)
class ServerChoice:
    """The API server URL the CLI uses, and where it came from, for error messages."""

    url: str
    # "--server", "SKYSHIFT_SERVER", "context 'local' in /root/.skyshift/config.yaml" or the default's reason.
    source: str


def choose_server(explicit: str | None = None, flag: str = "--server") -> ServerChoice:
    """Find and validate the API server URL: `explicit` (the `flag` option), then $SKYSHIFT_SERVER,
    then the client config's current context, then http://127.0.0.1:50051.

    Raises InvalidError when the chosen URL is invalid, when `explicit` is an empty string, and when
    $SKYSHIFT_CONFIG names a file that does not exist, because a default server would then be a guess.
    """
    if explicit is not None:
        if not explicit.strip():
            raise InvalidError(
                f"{flag} is empty: pass a URL such as {DEFAULT_SERVER}, or leave {flag} out to use "
                f"${SERVER_ENV} or the client config"
            )
        return _validated(ServerChoice(explicit.strip(), flag))
    from_env = os.environ.get(SERVER_ENV, "").strip()
    if from_env:
        return _validated(ServerChoice(from_env, SERVER_ENV))

    path = default_config_path()
    if os.environ.get(CONFIG_ENV) and not path.exists():
        raise InvalidError(missing_config_message(path))
    config = ClientConfig.load(path)
    context = config.current()
    if context is not None:
        return _validated(ServerChoice(context.server, f"context {context.name!r} in {path}"))
    if not path.exists():
        return ServerChoice(DEFAULT_SERVER, f"the default, because there is no client config at {path}")
    return ServerChoice(DEFAULT_SERVER, f"the default, because the client config {path} has no current context")


def missing_config_message(path: Path) -> str:
    """Explain that $SKYSHIFT_CONFIG names a missing file, and how to create it."""
    ways = ["'skyshift --server URL login --username NAME' (a running API server)"]
    if path.name == CONFIG_FILE_NAME:
        # skyshift up writes STATE_DIR/config.yaml, so it creates this file only when the name matches.
        ways.insert(0, f"'skyshift up --state-dir {path.parent}' (a local control plane)")
    return (
        f"the client config {path}, named by ${CONFIG_ENV}, does not exist; create it with "
        + " or ".join(ways)
        + f", or unset {CONFIG_ENV} to use {(DEFAULT_STATE_DIR / CONFIG_FILE_NAME).expanduser()}"
    )


def _validated(choice: ServerChoice) -> ServerChoice:
    problem = server_url_problem(choice.url)
    if problem is not None:
        raise InvalidError(f"invalid server URL {choice.url!r} (from {choice.source}): {problem}; {SERVER_URL_FORM}")
    return choice


def resolve_server(explicit: str | None = None) -> str:
    """Return the API server URL that `choose_server` picks."""
    return choose_server(explicit).url


@dataclass
class Connection:
    """The server that the CLI sends requests to, and the credentials it sends with them."""

    server: str
    token: str | None = None
    # An absolute path, or None to trust the system's CAs.
    ca_file: str | None = None
    # Where `server` came from, as `ServerChoice.source` gives it.
    server_source: str = "--server"
    # Where `token` came from: "--token", "$SKYSHIFT_TOKEN" or a context, as for `ca_source`.
    token_source: str | None = None
    # Where `ca_file` came from: "--certificate-authority", "$SKYSHIFT_CA_FILE" or
    # "context 'local' in /root/.skyshift/config.yaml"; None without a CA file.
    ca_source: str | None = None
    # Set when `ca_file` is the certificate_authority of a context of the client config.
    ca_from_context: bool = False


def resolve_connection(
    server: str | None = None, token: str | None = None, ca_file: str | None = None
) -> Connection:
    """Find the server as `choose_server` does, then the credentials.

    The token is `token` (--token), else $SKYSHIFT_TOKEN, else the current context's token. The CA
    file is `ca_file`, else $SKYSHIFT_CA_FILE, else the context's, always as an absolute path. The
    context's credentials are used only when the server is the context's own, so a token is never
    sent to a server it was not issued for. An empty `token` or `ca_file` raises InvalidError, as
    an empty `server` does.
    """
    defaults = {
        "--token": (token, f"${TOKEN_ENV} or the current context's token"),
        "--certificate-authority": (ca_file, f"${CA_FILE_ENV}, the current context's CA or the system's trusted CAs"),
    }
    for flag, (value, default) in defaults.items():
        if value is not None and not value.strip():
            raise InvalidError(f"{flag} is empty: pass a value, or leave {flag} out to use {default}")
    choice = choose_server(server)
    config = ClientConfig.load()
    context = config.current()
    own = context if context is not None and same_server(context.server, choice.url) else None
    connection = Connection(choice.url, server_source=choice.source)
    if token:
        connection.token, connection.token_source = token, "--token"
    elif os.environ.get(TOKEN_ENV):
        connection.token, connection.token_source = os.environ[TOKEN_ENV], f"${TOKEN_ENV}"
    elif own is not None and own.token is not None:
        connection.token, connection.token_source = own.token, f"context {own.name!r} in {config.path}"
    if ca_file:
        connection.ca_file, connection.ca_source = absolute_path(ca_file), "--certificate-authority"
    elif os.environ.get(CA_FILE_ENV):
        connection.ca_file, connection.ca_source = absolute_path(os.environ[CA_FILE_ENV]), f"${CA_FILE_ENV}"
    elif own is not None and own.certificate_authority is not None:
        connection.ca_file = config.certificate_authority(own)
        connection.ca_source = f"context {own.name!r} in {config.path}"
        connection.ca_from_context = True
    return connection


def same_server(first: str, second: str) -> bool:
    """Return True when two server URLs are equal but for surrounding whitespace and trailing slashes."""
    return first.strip().rstrip("/") == second.strip().rstrip("/")
