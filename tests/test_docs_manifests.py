"""Check that every YAML example in docs/manifests.md is a manifest that SkyShift accepts.

Each ```yaml block is read with SkyShift's YAML reader, and every document in it is validated as
the API server validates it: `parse_object`, then the checks of the installed cluster manager
plugins (`admit`). A block preceded by the line `<!-- invalid -->` shows a rejected manifest, and
must be rejected instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from skyshift_core.api.admission import admit
from skyshift_core.errors import InvalidError
from skyshift_core.manifest_yaml import load_all
from skyshift_core.objects import parse_object

DOC = Path(__file__).resolve().parent.parent / "docs" / "manifests.md"
INVALID_MARK = "<!-- invalid -->"
_FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*(\S*)")


@dataclass(frozen=True)
class YamlBlock:
    line: int  # 1-based line of the opening fence in the document
    text: str
    invalid: bool


def yaml_blocks(markdown: str) -> list[YamlBlock]:
    """Return the ```yaml blocks of a Markdown text.

    Raises ValueError for a code block that is never closed."""
    lines = markdown.splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence, language = opening.groups()
        start = index
        body = []
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            body.append(lines[index][len(indent):] if lines[index].startswith(indent) else lines[index])
            index += 1
        if index == len(lines):
            raise ValueError(f"{DOC.name}: the code block opened on line {start + 1} is never closed")
        index += 1
        if language.lower() not in ("yaml", "yml"):
            continue
        previous = next((line.strip() for line in reversed(lines[:start]) if line.strip()), "")
        blocks.append(YamlBlock(start + 1, "\n".join(body) + "\n", previous == INVALID_MARK))
    return blocks


def validate_block(block: YamlBlock) -> None:
    """Parse and validate every document of the block.

    Raises InvalidError or yaml.YAMLError for the first invalid document."""
    documents = list(load_all(block.text))
    if not documents:
        raise InvalidError("the block contains no YAML document")
    for number, document in enumerate(documents, start=1):
        if document is None:
            raise InvalidError(f"document {number} is empty")
        try:
            admit(parse_object(document))
        except InvalidError as error:
            raise InvalidError(f"document {number}: {error.message}") from error


BLOCKS = yaml_blocks(DOC.read_text())
VALID = [block for block in BLOCKS if not block.invalid]
INVALID = [block for block in BLOCKS if block.invalid]


def test_doc_has_examples():
    assert len(VALID) >= 10, f"found only {len(VALID)} ```yaml blocks in {DOC}; is the fence syntax still ```yaml?"


@pytest.mark.parametrize("block", VALID, ids=[f"line-{block.line}" for block in VALID])
def test_example_is_valid(block: YamlBlock):
    try:
        validate_block(block)
    except (InvalidError, yaml.YAMLError) as error:
        pytest.fail(f"docs/manifests.md, YAML block at line {block.line} is not a valid manifest: {error}")


@pytest.mark.parametrize("block", INVALID, ids=[f"line-{block.line}" for block in INVALID])
def test_invalid_example_is_rejected(block: YamlBlock):
    with pytest.raises((InvalidError, yaml.YAMLError)):
        validate_block(block)
