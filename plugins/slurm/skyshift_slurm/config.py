"""Validation of a Slurm cluster's `spec.config` and of a Job's `spec.backend.slurm` section.

`SlurmClusterManager.validate_config` calls `parse_config` when a Cluster is applied, and
`SlurmClusterManager.validate_job_settings` calls `parse_job_settings` when a Job is applied.
Every error is a ConfigError whose message names the field, the value and the expected form.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from skyshift_core.cluster_manager import ConfigError

INTERFACES = ("cli", "ssh", "rest")
CONTAINER_RUNTIMES = ("none", "apptainer", "podman", "enroot")
DEFAULT_API_VERSION = "v0.0.38"
# Kept in step with skyshift_slurm.rest.API_VERSIONS; a test checks that the two agree.
SUPPORTED_API_VERSIONS = ("v0.0.38",)
DEFAULT_MAX_RESTARTS = 3
# The kubelet's first container restart delay, doubled on each later restart (see states.py).
DEFAULT_RESTART_BACKOFF_SECONDS = 10.0
DEFAULT_COMMAND_TIMEOUT_SECONDS = 30.0
DEFAULT_SSH_PORT = 22
# Output goes below this directory plus the cluster name, in the submitting user's home for
# cli and ssh. slurmrestd gives no way to learn a home directory, so rest uses /tmp.
DEFAULT_OUTPUT_DIR = "~/.skyshift/slurm"
DEFAULT_REST_OUTPUT_DIR = "/tmp/skyshift-slurm"

COMMON_FIELDS = (
    "interface",
    "partition",
    "account",
    "qos",
    "time_limit",
    "container_runtime",
    "output_dir",
    "max_restarts",
    "restart_backoff_seconds",
    "command_timeout_seconds",
)
INTERFACE_FIELDS = {
    "cli": ("slurm_conf",),
    "ssh": ("host", "port", "user", "identity_file", "known_hosts", "slurm_conf"),
    "rest": ("url", "api_version", "token_file", "token_env", "user_name"),
}
JOB_FIELDS = ("partition", "account", "qos", "time_limit")

# Slurm names (partitions, accounts, QOS, users): letters, digits and a few separators. A leading
# '-' is rejected so that no value can be read as a command-line option.
_SLURM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$|^\[[0-9A-Fa-f:.]+\]$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Slurm's time formats: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
# days-hours:minutes and days-hours:minutes:seconds (sbatch(1), --time).
_TIME_LIMIT = re.compile(r"^(?:(\d+)-(\d+)(?::(\d+)(?::(\d+))?)?|(\d+)(?::(\d+)(?::(\d+))?)?)$")
_UNLIMITED = ("UNLIMITED", "INFINITE")


@dataclass(frozen=True)
class SlurmConfig:
    """A validated Slurm cluster config. Optional fields are None when the config leaves them out."""

    interface: str = "cli"
    # cli: this machine's slurm.conf; ssh: the path on the login node.
    slurm_conf: str | None = None
    # ssh
    host: str | None = None
    port: int = DEFAULT_SSH_PORT
    user: str | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    # rest
    url: str | None = None
    api_version: str = DEFAULT_API_VERSION
    token_file: str | None = None
    token_env: str | None = None
    user_name: str | None = None
    # Defaults for every job, which a Job's spec.backend.slurm may override.
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit: str | None = None
    container_runtime: str = "none"
    output_dir: str | None = None
    max_restarts: int = DEFAULT_MAX_RESTARTS
    restart_backoff_seconds: float = DEFAULT_RESTART_BACKOFF_SECONDS
    command_timeout_seconds: float = DEFAULT_COMMAND_TIMEOUT_SECONDS

    def to_dict(self) -> dict[str, Any]:
        """Return the normalized config with only this interface's fields; accepted again unchanged."""
        allowed = set(COMMON_FIELDS) | set(INTERFACE_FIELDS[self.interface])
        return {name: value for name, value in asdict(self).items() if name in allowed}

    def output_root(self, cluster: str) -> str:
        """Return the directory of this cluster's output, possibly starting with `~`."""
        if self.output_dir is not None:
            return self.output_dir
        base = DEFAULT_REST_OUTPUT_DIR if self.interface == "rest" else DEFAULT_OUTPUT_DIR
        return f"{base}/{cluster}"

    @property
    def is_unix_socket(self) -> bool:
        return self.url is not None and self.url.startswith("unix:")


@dataclass(frozen=True)
class JobSettings:
    """A Job's own partition, account, QOS and time limit; None means the cluster's default."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if value is not None}


def parse_config(config: Mapping[str, Any] | None) -> SlurmConfig:
    """Validate a Slurm cluster's `spec.config`; raise ConfigError naming the field."""
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ConfigError(f"invalid Slurm cluster config {config!r}: expected a mapping such as {{interface: cli}}")
    if "token" in config:
        raise ConfigError(
            "field 'token' is not accepted: a JWT in spec.config would be readable by everyone who can "
            "read Clusters. Store it in a file and set token_file, or in an environment variable of "
            "the skylet and set token_env"
        )

    # A null value means "not set", which keeps the normalized form (with nulls) valid input.
    config = {key: value for key, value in config.items() if value is not None}
    interface = config.get("interface", "cli")
    if interface not in INTERFACES:
        raise ConfigError(f"invalid interface {interface!r}: expected one of {', '.join(INTERFACES)}")
    values = _split_fields(config, interface)

    settings = {
        "interface": interface,
        "partition": _slurm_name(values, "partition", "partition"),
        "account": _slurm_name(values, "account", "account"),
        "qos": _slurm_name(values, "qos", "qos"),
        "time_limit": _time_limit(values, "time_limit", "time_limit"),
        "container_runtime": _choice(values, "container_runtime", CONTAINER_RUNTIMES, "none"),
        "output_dir": _output_dir(values, interface),
        "max_restarts": _integer(values, "max_restarts", minimum=0, default=DEFAULT_MAX_RESTARTS),
        "restart_backoff_seconds": _number(
            values, "restart_backoff_seconds", default=DEFAULT_RESTART_BACKOFF_SECONDS, positive=False
        ),
        "command_timeout_seconds": _number(
            values, "command_timeout_seconds", default=DEFAULT_COMMAND_TIMEOUT_SECONDS, positive=True
        ),
    }
    if interface in ("cli", "ssh"):
        settings["slurm_conf"] = _path(values, "slurm_conf", allow_home=False)
    if interface == "ssh":
        settings.update(_ssh_fields(values))
    if interface == "rest":
        settings.update(_rest_fields(values))
    return SlurmConfig(**settings)


def parse_job_settings(section: Any, where: str = "") -> JobSettings:
    """Validate a Job's `spec.backend.slurm` section.

    `where` names the section in errors, such as `spec.backend.slurm`; without it, errors name
    the bare fields, for callers that add the section's name themselves.
    """
    if section is None:
        return JobSettings()
    label = where or "Slurm settings"
    prefix = f"{where}." if where else ""
    if not isinstance(section, Mapping):
        raise ConfigError(
            f"invalid {label} {section!r}: expected a mapping with some of {', '.join(JOB_FIELDS)}, "
            "such as {partition: gpu, time_limit: '1:00:00'}"
        )
    values = _known_fields(section, JOB_FIELDS, label)
    return JobSettings(
        partition=_slurm_name(values, "partition", f"{prefix}partition"),
        account=_slurm_name(values, "account", f"{prefix}account"),
        qos=_slurm_name(values, "qos", f"{prefix}qos"),
        time_limit=_time_limit(values, "time_limit", f"{prefix}time_limit"),
    )


def time_limit_seconds(time_limit: str) -> int | None:
    """Return a validated Slurm time limit in seconds, or None for UNLIMITED.

    A bare number is minutes, as in sbatch: `90` is 5400 seconds, `1:30` is 90 seconds,
    `1-00:00:00` is one day.
    """
    if time_limit.upper() in _UNLIMITED:
        return None
    match = _TIME_LIMIT.match(time_limit)
    if match is None:
        raise ValueError(f"invalid time limit {time_limit!r}")
    days, day_hours, day_minutes, day_seconds, first, second, third = match.groups()
    if days is not None:
        return int(days) * 86400 + int(day_hours) * 3600 + int(day_minutes or 0) * 60 + int(day_seconds or 0)
    if third is not None:
        return int(first) * 3600 + int(second) * 60 + int(third)
    if second is not None:
        return int(first) * 60 + int(second)
    return int(first) * 60


def time_limit_minutes(time_limit: str) -> int | None:
    """Return a time limit in whole minutes, rounded up as Slurm rounds it; None for UNLIMITED."""
    seconds = time_limit_seconds(time_limit)
    return None if seconds is None else max(1, math.ceil(seconds / 60))


def expand_local_path(path: str) -> str:
    """Expand a leading `~` with this process's home directory."""
    return os.path.expanduser(path)


# ---------------------------------------------------------------------------------------------
# Interface sections
# ---------------------------------------------------------------------------------------------


def _ssh_fields(values: dict[str, Any]) -> dict[str, Any]:
    if "host" not in values:
        raise ConfigError(
            "missing host: interface ssh needs the login node's host name, such as host: login1.example.org"
        )
    host = values["host"]
    if not isinstance(host, str) or not _HOST.match(host):
        raise ConfigError(f"invalid host {host!r}: expected a host name or IP address such as 'login1.example.org'")
    user = values.get("user")
    if user is not None and (not isinstance(user, str) or not _USER.match(user)):
        raise ConfigError(f"invalid user {user!r}: expected a login name such as 'alice'")
    port = _integer(values, "port", minimum=1, default=DEFAULT_SSH_PORT)
    if port > 65535:
        raise ConfigError(f"invalid port {port}: expected a TCP port between 1 and 65535")
    return {
        "host": host,
        "port": port,
        "user": user,
        "identity_file": _path(values, "identity_file", allow_home=True),
        "known_hosts": _path(values, "known_hosts", allow_home=True),
    }


def _rest_fields(values: dict[str, Any]) -> dict[str, Any]:
    if "url" not in values:
        raise ConfigError(
            "missing url: interface rest needs slurmrestd's address, such as url: http://127.0.0.1:6820 "
            "or url: unix:///run/slurmrestd.sock"
        )
    url = _rest_url(values["url"])
    api_version = _choice(values, "api_version", SUPPORTED_API_VERSIONS, DEFAULT_API_VERSION)
    token_file = _path(values, "token_file", allow_home=True)
    token_env = values.get("token_env")
    if token_env is not None and (not isinstance(token_env, str) or not _ENV_NAME.match(token_env)):
        raise ConfigError(f"invalid token_env {token_env!r}: expected an environment variable name such as SLURM_JWT")
    if token_file is not None and token_env is not None:
        raise ConfigError("invalid rest config: set token_file or token_env, not both")
    user_name = values.get("user_name")
    if user_name is not None and (not isinstance(user_name, str) or not _USER.match(user_name)):
        raise ConfigError(f"invalid user_name {user_name!r}: expected a Slurm user name such as 'alice'")

    has_token = token_file is not None or token_env is not None
    if not url.startswith("unix:") and not has_token:
        raise ConfigError(
            f"missing token_file or token_env for url {url!r}: slurmrestd on TCP authenticates every request "
            "with a JWT (from `scontrol token`); name the file or environment variable that holds it"
        )
    if has_token and user_name is None:
        raise ConfigError(
            "missing user_name: a JWT is sent with the Slurm user it was issued for, such as user_name: alice"
        )
    return {
        "url": url,
        "api_version": api_version,
        "token_file": token_file,
        "token_env": token_env,
        "user_name": user_name,
    }


def _rest_url(url: Any) -> str:
    example = "http://127.0.0.1:6820 or unix:///run/slurmrestd.sock"
    if not isinstance(url, str):
        raise ConfigError(f"invalid url {url!r}: expected a string such as {example}")
    if url.startswith("unix:"):
        path = url[len("unix://") :] if url.startswith("unix://") else url[len("unix:") :]
        if not path.startswith("/"):
            raise ConfigError(
                f"invalid url {url!r}: a unix socket URL needs an absolute path, such as unix:///run/slurmrestd.sock"
            )
        return f"unix://{path}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"invalid url {url!r}: expected {example}")
    try:
        _ = parts.port  # urlsplit checks the port only when it is read.
    except ValueError as error:
        raise ConfigError(f"invalid url {url!r}: {error}") from error
    if parts.query or parts.fragment:
        raise ConfigError(f"invalid url {url!r}: expected no query or fragment, only scheme, host, port and path")
    return url.rstrip("/")


def _output_dir(values: dict[str, Any], interface: str) -> str | None:
    if "output_dir" not in values:
        return None
    directory = values["output_dir"]
    allow_home = interface != "rest"
    expected = "an absolute path" + (" or a path starting with ~/" if allow_home else "")
    if not isinstance(directory, str) or not directory:
        raise ConfigError(f"invalid output_dir {directory!r}: expected {expected}")
    if "%" in directory or "\n" in directory:
        raise ConfigError(
            f"invalid output_dir {directory!r}: '%' and newlines are not allowed, because Slurm expands '%' in output paths"
        )
    if directory.startswith("~") and not allow_home:
        raise ConfigError(
            f"invalid output_dir {directory!r}: interface rest needs an absolute path, because slurmrestd "
            "offers no way to learn the home directory"
        )
    if not (directory.startswith("/") or directory == "~" or (allow_home and directory.startswith("~/"))):
        raise ConfigError(f"invalid output_dir {directory!r}: expected {expected}")
    return directory.rstrip("/") or "/"


# ---------------------------------------------------------------------------------------------
# Field helpers
# ---------------------------------------------------------------------------------------------


def _split_fields(config: Mapping[str, Any], interface: str) -> dict[str, Any]:
    """Return the config's fields by snake_case name; reject unknown ones and other interfaces' ones."""
    own = (*COMMON_FIELDS, *INTERFACE_FIELDS[interface])
    for key in config:
        if not isinstance(key, str) or _snake(key) in own:
            continue
        others = [name for name, names in INTERFACE_FIELDS.items() if _snake(key) in names]
        if others:
            raise ConfigError(
                f"field '{key}' is only valid with interface {' or '.join(others)}, but interface is {interface}"
            )
    return _known_fields(config, own, "config")


def _known_fields(data: Mapping[str, Any], names: Sequence[str], where: str) -> dict[str, Any]:
    """Return the known fields by snake_case name; camelCase spellings (`timeLimit`) are accepted."""
    values: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in data.items():
        name = _snake(key) if isinstance(key, str) else None
        if name not in names:
            unknown.append(str(key))
            continue
        if name in values:
            raise ConfigError(f"duplicate field {name!r} in {where}: it is written twice (once as {key!r})")
        values[name] = value
    if unknown:
        problems = [f"unknown field '{key}' in {where}{_closest(key, names)}" for key in unknown]
        raise ConfigError("; ".join(problems) + f"; valid fields: {', '.join(sorted(names))}")
    return values


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _closest(name: str, choices: Sequence[str]) -> str:
    matches = difflib.get_close_matches(_snake(name), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def _slurm_name(values: Mapping[str, Any], key: str, where: str) -> str | None:
    if key not in values or values[key] is None:
        return None
    value = values[key]
    if not isinstance(value, str) or not _SLURM_NAME.match(value):
        raise ConfigError(f"invalid {where} {value!r}: expected a Slurm name of letters, digits, '_', '.', '+' or '-'")
    return value


def _time_limit(values: Mapping[str, Any], key: str, where: str) -> str | None:
    if key not in values or values[key] is None:
        return None
    value = values[key]
    # YAML reads an unquoted 10:00 as the sexagesimal integer 600, so a bare number is taken as
    # minutes, which is also what sbatch does with one.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    expected = "a Slurm time limit such as '30' (minutes), '10:00', '2:00:00' or '1-00:00:00'"
    if not isinstance(value, str):
        raise ConfigError(f"invalid {where} {value!r}: expected {expected}")
    try:
        seconds = time_limit_seconds(value)
    except ValueError as error:
        raise ConfigError(f"invalid {where} {value!r}: expected {expected}") from error
    if seconds == 0:
        raise ConfigError(f"invalid {where} {value!r}: a time limit must be above zero; use UNLIMITED for none")
    return value.upper() if value.upper() in _UNLIMITED else value


def _choice(values: Mapping[str, Any], key: str, choices: Sequence[str], default: str) -> str:
    value = values.get(key, default)
    if value not in choices:
        raise ConfigError(f"invalid {key} {value!r}: expected one of {', '.join(choices)}")
    return value


def _path(values: Mapping[str, Any], key: str, *, allow_home: bool) -> str | None:
    if key not in values or values[key] is None:
        return None
    path = values[key]
    expected = "an absolute path" + (" or a path starting with ~/" if allow_home else "")
    if not isinstance(path, str) or not (path.startswith("/") or (allow_home and path.startswith("~/"))):
        raise ConfigError(f"invalid {key} {path!r}: expected {expected}")
    return path


def _integer(values: Mapping[str, Any], key: str, *, minimum: int, default: int) -> int:
    if key not in values:
        return default
    value = values[key]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"invalid {key} {values[key]!r}: expected a whole number of at least {minimum}")
    return value


def _number(values: Mapping[str, Any], key: str, *, default: float, positive: bool) -> float:
    if key not in values:
        return default
    value = values[key]
    bound = "above 0" if positive else "of at least 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"invalid {key} {value!r}: expected a number {bound}")
    if value < 0 or (positive and value == 0):
        raise ConfigError(f"invalid {key} {value!r}: expected a number {bound}")
    return float(value)
