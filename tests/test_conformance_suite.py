"""ClusterManagerConformance itself, run in a pytest session of its own (pytester) on the backends of
conformance_backends.py: a correct backend passes in pytest-asyncio's strict and auto modes, and
each broken backend fails exactly the checks of the rule it breaks."""

from __future__ import annotations

import re

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.slow

# A plugin's test module as the suite's docstring describes it, for one backend class.
SUITE_MODULE = """
import pytest_asyncio

from conformance_backends import {backend}, reset_backend
from skyshift_core.testing.conformance import ClusterManagerConformance


class TestBackend(ClusterManagerConformance):
    # A deadline for the checks that wait. The local processes end within milliseconds.
    finish_timeout = 3.0

    @pytest_asyncio.fixture
    async def manager(self):
        manager = {backend}("local", {backend}.validate_config({{}}))
        await manager.start()
        yield manager
        await manager.stop()
        await reset_backend()
"""

SUITE_TESTS = 13
_FAILED = re.compile(r"^FAILED \S+::TestBackend::(?P<test>test_\w+)")


def asyncio_options(mode: str) -> tuple[str, ...]:
    return ("-o", f"asyncio_mode={mode}", "-o", "asyncio_default_fixture_loop_scope=function")


def run_suite(pytester: pytest.Pytester, backend: str, *options: str) -> tuple[pytest.RunResult, set[str]]:
    """Run the suite on `backend` with pytest `options` (default: pytest-asyncio in auto mode);
    return the result and the names of the failed tests."""
    pytester.makepyfile(test_backend=SUITE_MODULE.format(backend=backend))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rf", *(options or asyncio_options("auto")))
    failed = {match["test"] for line in result.outlines if (match := _FAILED.match(line))}
    return result, failed


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_correct_backend_passes(pytester, mode):
    result, failed = run_suite(pytester, "LocalProcessManager", *asyncio_options(mode))

    assert failed == set(), result.stdout.str()
    result.assert_outcomes(passed=SUITE_TESTS)


def test_missing_pytest_asyncio_named(pytester):
    result, _ = run_suite(pytester, "LocalProcessManager", "-p", "no:asyncio")

    result.assert_outcomes(errors=SUITE_TESTS)
    assert (
        "ClusterManagerConformance needs the pytest-asyncio plugin: pip install pytest-asyncio" in result.stdout.str()
    )


SCORE_SUITE_MODULE = """
from skyshift_core.scheduler.builtin import Placement
from skyshift_core.testing.conformance import ScorePluginConformance


class TestPlacement(ScorePluginConformance):
    plugin_class = Placement
    entry_point = "placement"
"""


def test_scheduling_suite_without_pytest_asyncio(pytester):
    # The module's async tests carry pytest.mark.asyncio, which pytest would report as unknown.
    pytester.makepyfile(test_score=SCORE_SUITE_MODULE)

    # In a process of its own, because this one has imported the conformance module already.
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:asyncio", "-W", "error::pytest.PytestUnknownMarkWarning"
    )  # fmt: skip

    assert result.ret == 0, result.stdout.str()
    assert "PytestUnknownMarkWarning" not in result.stdout.str()


BROKEN_BACKENDS = [
    (
        "ForgetfulDeleteManager",
        {
            "test_delete_removes_running_work",
            "test_delete_removes_finished_work",
            "test_delete_is_idempotent",
            # The default cancel deletes the work.
            "test_cancel_ends_unfinished_replicas",
        },
        "is still listed by statuses() 3.0 s after delete",
    ),
    (
        "IgnoredCancelManager",
        {"test_cancel_ends_unfinished_replicas"},
        "still has unfinished replicas 3.0 s after cancel",
    ),
    (
        "UnscopedStatusesManager",
        {"test_statuses_list_only_own_work"},
        "list only the work of the manager's own cluster name",
    ),
    (
        # Every check that waits for a replica to succeed sees the state first.
        "FreeTextStateManager",
        {
            "test_submit_is_idempotent",
            "test_tasks_keyed_by_global_replica_index",
            "test_statuses_list_only_own_work",
            "test_delete_removes_finished_work",
            "test_logs_of_finished_replicas",
        },
        "has state 'Completed'; TaskStatus.state must be one of Failed, Pending, Running, Succeeded",
    ),
    ("NewlineLogsManager", {"test_logs_of_finished_replicas"}, "logs() yielded lines with their line ending"),
    ("UnfilteredLogsManager", {"test_logs_of_finished_replicas"}, "logs(replica=1) yielded lines of other replicas"),
    ("SilentMissingLogsManager", {"test_logs_of_unknown_work_raise"}, "DID NOT RAISE"),
    ("UntailedLogsManager", {"test_logs_of_finished_replicas"}, "logs(tail=0) yielded lines"),
    ("TinyNodeManager", {"test_nodes_fit_suite_replicas"}, "no node reports the capacity of one replica of the suite"),
]


@pytest.mark.parametrize(
    ("backend", "expected_failures", "message"), BROKEN_BACKENDS, ids=[case[0] for case in BROKEN_BACKENDS]
)
def test_broken_backend_fails(pytester, backend, expected_failures, message):
    result, failed = run_suite(pytester, backend)

    assert failed == expected_failures, result.stdout.str()
    assert message in result.stdout.str()
