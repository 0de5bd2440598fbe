"""The fake kubelet's shell simulator and its `$(NAME)` expansion, where the cluster manager relies on
them: field splitting, positional parameters, and the kubelet's `$$` escape."""

from __future__ import annotations

import pytest

from skyshift_k8s.testing import simulate_script
from skyshift_k8s.testing.pod_runtime import expand_references


@pytest.mark.parametrize(
    ("script", "env", "lines", "exit_code"),
    [
        pytest.param(
            'set -- $L; shift "$I"; export X="$1"; set --; echo "x=$X n=$#"',
            {"L": "3 7 9", "I": "2"},
            ["x=9 n=0"],
            0,
            id="pick-from-list",
        ),
        pytest.param('A="a  b"; echo $A; echo "$A"', {}, ["a b", "a  b"], 0, id="unquoted-splits"),
        pytest.param('E=; set -- $E x ""; echo $#', {}, ["2"], 0, id="empty-expansion-no-field"),
        pytest.param("set -e -- p q; echo $2 $#", {}, ["q 2"], 0, id="set-options-ignored"),
        pytest.param("sh -c 'echo $0 $1 $2' name one two", {}, ["name one two"], 0, id="sh-c-arguments"),
        pytest.param("set -- a; shift 2; echo never", {}, ["sh: 1: shift: can't shift that many"], 2, id="shift-too-far"),
    ],
)
def test_simulated_shell(script, env, lines, exit_code):
    run = simulate_script(script, env)

    assert [output.text for output in run.outputs] == lines
    assert run.exit_code == exit_code


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("$(A)-$(B)", "1-$(B)", id="defined-and-undefined"),
        pytest.param("$$(A) $$$$ $$", "$(A) $$ $", id="escapes"),
        pytest.param("$x $( $", "$x $( $", id="not-references"),
    ],
)
def test_expand_references(text, expected):
    assert expand_references(text, {"A": "1"}) == expected
