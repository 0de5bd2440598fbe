"""The manifest YAML loader: values read as kubectl reads them, and keys given twice rejected."""

from __future__ import annotations

import pytest
import yaml

from skyshift_core import manifest_yaml


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("v: 10:00", "10:00", id="minutes-seconds"),
        pytest.param("v: 1:30:00", "1:30:00", id="hours-minutes-seconds"),
        pytest.param("v: 1:30.5", "1:30.5", id="base-60-float"),
        pytest.param("v: 2024-01-01", "2024-01-01", id="date"),
        pytest.param("v: 2001-12-14t21:59:43.10-05:00", "2001-12-14t21:59:43.10-05:00", id="timestamp"),
        pytest.param("v: 12", 12, id="int"),
        pytest.param("v: -3", -3, id="negative-int"),
        pytest.param("v: 0x1F", 31, id="hex"),
        pytest.param("v: 1_000", 1000, id="underscores"),
        pytest.param("v: 1.5", 1.5, id="float"),
        pytest.param("v: 1.0e+3", 1000.0, id="exponent"),
        pytest.param("v: .inf", float("inf"), id="infinity"),
        pytest.param("v: true", True, id="bool"),
        pytest.param("v: null", None, id="null"),
    ],
)
def test_scalar_values(text: str, expected):
    assert manifest_yaml.load(text) == {"v": expected}


def test_duplicate_key_rejected():
    with pytest.raises(yaml.YAMLError) as caught:
        manifest_yaml.load("spec:\n  replicas: 2\n  run: x\n  replicas: 5\n", "job.yaml")

    message = str(caught.value)
    assert "found duplicate key 'replicas', first given on line 2" in message
    assert 'in "job.yaml", line 4' in message


def test_same_key_in_different_mappings_accepted():
    assert manifest_yaml.load("a: {name: x}\nb: {name: y}\n") == {"a": {"name": "x"}, "b": {"name": "y"}}


def test_merge_key_may_repeat_a_merged_key():
    text = "base: &base {cpus: 1, memory: 512}\njob:\n  <<: *base\n  cpus: 2\n"

    assert manifest_yaml.load(text)["job"] == {"cpus": 2, "memory": 512}


def test_load_all_reads_every_document():
    assert list(manifest_yaml.load_all("a: 1\n---\nb: 10:00\n")) == [{"a": 1}, {"b": "10:00"}]


def nested_aliases(levels: int) -> str:
    """A "billion laughs" document: each level lists the previous one nine times."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return "\n".join(lines)


def test_alias_bomb_rejected_before_it_expands():
    with pytest.raises(yaml.YAMLError) as raised:
        manifest_yaml.load(nested_aliases(9), "bomb.yaml")

    assert "the document's aliases expand to more than 100,000 values" in str(raised.value)
    assert 'in "bomb.yaml", line 6' in str(raised.value)


def test_few_aliases_accepted():
    assert manifest_yaml.load(nested_aliases(3)) == {
        "a0": ["x"] * 9,
        "a1": [["x"] * 9] * 9,
        "a2": [[["x"] * 9] * 9] * 9,
    }


def test_recursive_alias_rejected():
    with pytest.raises(yaml.YAMLError, match="an alias refers to a value that contains it"):
        manifest_yaml.load("a: &self [1, *self]\n")
