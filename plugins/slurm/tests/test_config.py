"""Validation of Slurm cluster configs and of a Job's spec.backend.slurm section: accepted configs
and their normalized form, and the message of each rejected one."""

from __future__ import annotations

from typing import Any

import pytest
from skyshift_slurm.config import (
    SUPPORTED_API_VERSIONS,
    parse_config,
    time_limit_minutes,
    time_limit_seconds,
)
from skyshift_slurm.manager import SlurmClusterManager
from skyshift_slurm.rest import API_VERSIONS

from skyshift_core.cluster_manager import ConfigError

DEFAULTS = {
    "partition": None,
    "account": None,
    "qos": None,
    "time_limit": None,
    "container_runtime": "none",
    "output_dir": None,
    "max_restarts": 3,
    "restart_backoff_seconds": 10.0,
    "command_timeout_seconds": 30.0,
}

GOOD_CONFIGS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("empty-is-local-cli", {}, {"interface": "cli", "slurm_conf": None, **DEFAULTS}),
    (
        "cli-with-defaults-for-jobs",
        {
            "slurm_conf": "/etc/slurm/slurm.conf",
            "partition": "gpu",
            "account": "proj-1",
            "qos": "high",
            "time_limit": "10:00",
            "container_runtime": "apptainer",
            "output_dir": "~/skyshift-out/",
            "max_restarts": 0,
            "restart_backoff_seconds": 1.5,
        },
        {
            "interface": "cli",
            "slurm_conf": "/etc/slurm/slurm.conf",
            **DEFAULTS,
            "partition": "gpu",
            "account": "proj-1",
            "qos": "high",
            "time_limit": "10:00",
            "container_runtime": "apptainer",
            "output_dir": "~/skyshift-out",
            "max_restarts": 0,
            "restart_backoff_seconds": 1.5,
        },
    ),
    (
        "camel-case-spellings",
        {"slurmConf": "/s.conf", "timeLimit": "1-00:00:00", "containerRuntime": "podman", "maxRestarts": 5},
        {
            "interface": "cli",
            "slurm_conf": "/s.conf",
            **DEFAULTS,
            "time_limit": "1-00:00:00",
            "container_runtime": "podman",
            "max_restarts": 5,
        },
    ),
    # YAML reads an unquoted 30 as an integer: minutes, as sbatch reads a bare number.
    (
        "time-limit-integer-is-minutes",
        {"time_limit": 30},
        {"interface": "cli", "slurm_conf": None, **DEFAULTS, "time_limit": "30"},
    ),
    (
        "time-limit-unlimited",
        {"time_limit": "unlimited"},
        {"interface": "cli", "slurm_conf": None, **DEFAULTS, "time_limit": "UNLIMITED"},
    ),
    (
        "ssh-minimal",
        {"interface": "ssh", "host": "login1.example.org"},
        {
            "interface": "ssh",
            "host": "login1.example.org",
            "port": 22,
            "user": None,
            "identity_file": None,
            "known_hosts": None,
            "slurm_conf": None,
            **DEFAULTS,
        },
    ),
    (
        "ssh-full",
        {
            "interface": "ssh",
            "host": "10.0.0.5",
            "port": 2222,
            "user": "alice",
            "identity_file": "~/.ssh/id_ed25519",
            "known_hosts": "/etc/skyshift/known_hosts",
            "slurm_conf": "/etc/slurm/slurm.conf",
        },
        {
            "interface": "ssh",
            "host": "10.0.0.5",
            "port": 2222,
            "user": "alice",
            "identity_file": "~/.ssh/id_ed25519",
            "known_hosts": "/etc/skyshift/known_hosts",
            "slurm_conf": "/etc/slurm/slurm.conf",
            **DEFAULTS,
        },
    ),
    (
        "rest-tcp-with-token-file",
        {"interface": "rest", "url": "http://127.0.0.1:6820/", "token_file": "/run/secrets/jwt", "user_name": "alice"},
        {
            "interface": "rest",
            "url": "http://127.0.0.1:6820",
            "api_version": "v0.0.38",
            "token_file": "/run/secrets/jwt",
            "token_env": None,
            "user_name": "alice",
            **DEFAULTS,
        },
    ),
    (
        "rest-unix-socket-without-token",
        {"interface": "rest", "url": "unix:/run/slurmrestd.sock", "output_dir": "/shared/out"},
        {
            "interface": "rest",
            "url": "unix:///run/slurmrestd.sock",
            "api_version": "v0.0.38",
            "token_file": None,
            "token_env": None,
            "user_name": None,
            **DEFAULTS,
            "output_dir": "/shared/out",
        },
    ),
]


@pytest.mark.parametrize(
    ("config", "expected"), [case[1:] for case in GOOD_CONFIGS], ids=[case[0] for case in GOOD_CONFIGS]
)
def test_config_normalized(config, expected):
    assert SlurmClusterManager.validate_config(config) == expected


@pytest.mark.parametrize("config", [case[1] for case in GOOD_CONFIGS], ids=[case[0] for case in GOOD_CONFIGS])
def test_config_normalized_form_accepted_again(config):
    normalized = SlurmClusterManager.validate_config(config)
    assert SlurmClusterManager.validate_config(normalized) == normalized


SSH = {"interface": "ssh", "host": "login1"}
REST = {"interface": "rest", "url": "http://127.0.0.1:6820", "token_file": "/jwt", "user_name": "alice"}

BAD_CONFIGS: list[tuple[str, Any, str]] = [
    ("not-a-mapping", "cli", "invalid Slurm cluster config 'cli': expected a mapping"),
    (
        "unknown-interface",
        {"interface": "slurmrestd"},
        "invalid interface 'slurmrestd': expected one of cli, ssh, rest",
    ),
    ("misspelt-field", {"partiton": "gpu"}, "unknown field 'partiton' in config (did you mean 'partition'?)"),
    (
        "field-of-other-interface",
        {"host": "login1"},
        "field 'host' is only valid with interface ssh, but interface is cli",
    ),
    (
        "rest-field-under-ssh",
        {**SSH, "url": "http://x"},
        "field 'url' is only valid with interface rest, but interface is ssh",
    ),
    ("literal-token", {**REST, "token": "eyJhbGciOi"}, "field 'token' is not accepted"),
    ("duplicate-spellings", {"time_limit": "1", "timeLimit": "2"}, "duplicate field 'time_limit' in config"),
    ("relative-slurm-conf", {"slurm_conf": "slurm.conf"}, "invalid slurm_conf 'slurm.conf': expected an absolute path"),
    ("ssh-without-host", {"interface": "ssh"}, "missing host: interface ssh needs the login node's host name"),
    ("ssh-host-like-option", {**SSH, "host": "-oProxyCommand=sh"}, "invalid host '-oProxyCommand=sh'"),
    ("ssh-port-zero", {**SSH, "port": 0}, "invalid port 0: expected a whole number of at least 1"),
    ("ssh-port-too-high", {**SSH, "port": 70000}, "invalid port 70000: expected a TCP port between 1 and 65535"),
    ("ssh-user-with-shell", {**SSH, "user": "root;reboot"}, "invalid user 'root;reboot'"),
    (
        "ssh-relative-key",
        {**SSH, "identity_file": "id_rsa"},
        "invalid identity_file 'id_rsa': expected an absolute path or a path starting with ~/",
    ),
    ("rest-without-url", {"interface": "rest"}, "missing url: interface rest needs slurmrestd's address"),
    (
        "rest-ftp-url",
        {**REST, "url": "ftp://host/"},
        "invalid url 'ftp://host/': expected http://127.0.0.1:6820 or unix:///run/slurmrestd.sock",
    ),
    ("rest-relative-socket", {**REST, "url": "unix://run/s.sock"}, "a unix socket URL needs an absolute path"),
    (
        "rest-tcp-without-token",
        {"interface": "rest", "url": "http://127.0.0.1:6820"},
        "missing token_file or token_env for url 'http://127.0.0.1:6820'",
    ),
    ("rest-two-token-sources", {**REST, "token_env": "SLURM_JWT"}, "set token_file or token_env, not both"),
    (
        "rest-token-without-user",
        {"interface": "rest", "url": "http://h:1", "token_env": "SLURM_JWT"},
        "missing user_name",
    ),
    (
        "rest-bad-token-env",
        {"interface": "rest", "url": "http://h:1", "token_env": "SLURM-JWT", "user_name": "a"},
        "invalid token_env 'SLURM-JWT'",
    ),
    (
        "rest-newer-api-version",
        {**REST, "api_version": "v0.0.40"},
        "invalid api_version 'v0.0.40': expected one of v0.0.38",
    ),
    ("rest-output-in-home", {**REST, "output_dir": "~/out"}, "interface rest needs an absolute path"),
    (
        "relative-output-dir",
        {"output_dir": "out"},
        "invalid output_dir 'out': expected an absolute path or a path starting with ~/",
    ),
    ("output-dir-with-percent", {"output_dir": "/out/%j"}, "'%' and newlines are not allowed"),
    (
        "time-limit-words",
        {"time_limit": "10 minutes"},
        "invalid time_limit '10 minutes': expected a Slurm time limit such as '30' (minutes)",
    ),
    ("time-limit-zero", {"time_limit": "0"}, "invalid time_limit '0': a time limit must be above zero"),
    ("time-limit-float", {"time_limit": 1.5}, "invalid time_limit 1.5"),
    (
        "unknown-runtime",
        {"container_runtime": "docker"},
        "invalid container_runtime 'docker': expected one of none, apptainer, podman, enroot",
    ),
    ("negative-max-restarts", {"max_restarts": -1}, "invalid max_restarts -1: expected a whole number of at least 0"),
    ("text-max-restarts", {"max_restarts": "3"}, "invalid max_restarts '3'"),
    (
        "negative-backoff",
        {"restart_backoff_seconds": -1},
        "invalid restart_backoff_seconds -1: expected a number of at least 0",
    ),
    ("infinite-backoff", {"restart_backoff_seconds": float("inf")}, "invalid restart_backoff_seconds inf"),
    ("zero-timeout", {"command_timeout_seconds": 0}, "invalid command_timeout_seconds 0: expected a number above 0"),
    ("partition-with-space", {"partition": "gpu nodes"}, "invalid partition 'gpu nodes': expected a Slurm name"),
    ("account-like-option", {"account": "--uid=0"}, "invalid account '--uid=0'"),
]


@pytest.mark.parametrize(
    ("config", "message"), [case[1:] for case in BAD_CONFIGS], ids=[case[0] for case in BAD_CONFIGS]
)
def test_config_rejected(config, message):
    with pytest.raises(ConfigError) as raised:
        SlurmClusterManager.validate_config(config)
    assert message in str(raised.value)


def test_literal_token_message_names_alternatives():
    with pytest.raises(ConfigError) as raised:
        parse_config({**REST, "token": "secret-jwt"})
    assert "token_file" in str(raised.value)
    assert "token_env" in str(raised.value)
    assert "secret-jwt" not in str(raised.value)


def test_api_versions_match_rest_modules():
    assert set(SUPPORTED_API_VERSIONS) == set(API_VERSIONS)


def test_default_output_dir_per_interface():
    assert parse_config({}).output_root("site-a") == "~/.skyshift/slurm/site-a"
    assert parse_config(REST).output_root("site-a") == "/tmp/skyshift-slurm/site-a"
    assert parse_config({"output_dir": "/data/out"}).output_root("site-a") == "/data/out"


# ---- Job settings -----------------------------------------------------------------------


GOOD_JOB_SETTINGS: list[tuple[str, Any, dict[str, Any]]] = [
    ("absent", None, {}),
    ("empty", {}, {}),
    (
        "all-fields",
        {"partition": "gpu", "account": "proj", "qos": "high", "time_limit": "1-00:00:00"},
        {"partition": "gpu", "account": "proj", "qos": "high", "time_limit": "1-00:00:00"},
    ),
    ("camel-case-integer-minutes", {"timeLimit": 90}, {"time_limit": "90"}),
]


@pytest.mark.parametrize(
    ("settings", "expected"), [case[1:] for case in GOOD_JOB_SETTINGS], ids=[case[0] for case in GOOD_JOB_SETTINGS]
)
def test_job_settings_normalized(settings, expected):
    assert SlurmClusterManager.validate_job_settings(settings) == expected


BAD_JOB_SETTINGS: list[tuple[str, Any, str]] = [
    (
        "not-a-mapping",
        "gpu",
        "invalid Slurm settings 'gpu': expected a mapping with some of partition, account, qos, time_limit",
    ),
    ("misspelt-field", {"partion": "gpu"}, "unknown field 'partion' in Slurm settings (did you mean 'partition'?)"),
    ("cluster-only-field", {"max_restarts": 1}, "unknown field 'max_restarts' in Slurm settings"),
    ("bad-time-limit", {"time_limit": "soon"}, "invalid time_limit 'soon'"),
    ("bad-qos", {"qos": "a/b"}, "invalid qos 'a/b'"),
]


@pytest.mark.parametrize(
    ("settings", "message"), [case[1:] for case in BAD_JOB_SETTINGS], ids=[case[0] for case in BAD_JOB_SETTINGS]
)
def test_job_settings_rejected(settings, message):
    with pytest.raises(ConfigError) as raised:
        SlurmClusterManager.validate_job_settings(settings)
    assert message in str(raised.value)


# ---- Time limits --------------------------------------------------------------------------


TIME_LIMITS = [
    ("30", 1800, 30),  # a bare number is minutes
    ("10:00", 600, 10),  # minutes:seconds
    ("1:30", 90, 2),  # 90 seconds round up to 2 minutes
    ("2:00:00", 7200, 120),  # hours:minutes:seconds
    ("1-0", 86400, 1440),  # days-hours
    ("1-2:30", 95400, 1590),  # 86400 + 2 * 3600 + 30 * 60
    ("1-00:00:01", 86401, 1441),
    ("UNLIMITED", None, None),
]


@pytest.mark.parametrize(("text", "seconds", "minutes"), TIME_LIMITS, ids=[case[0] for case in TIME_LIMITS])
def test_time_limit_parsed(text, seconds, minutes):
    assert time_limit_seconds(text) == seconds
    assert time_limit_minutes(text) == minutes
