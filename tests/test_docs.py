"""Every shell and Python block of the README and docs/ runs as written, or says why not.

A block runs offline in an empty folder with this source tree's ``skiptune``, ``skiptune-search``
and ``python`` on the PATH; one that cannot (a placeholder model, a download, a GPU, minutes of
work) is marked by an HTML comment on the line before it: ``<!-- not run: REASON -->``.
Output, SQL and other text blocks carry their own language (``text``, ``sql``) and are read
only to check that every block names one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.tuner.helpers import cli_env

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL = ("bash", "sh", "shell", "console")
TEXT = ("text", "sql", "json", "dockerfile", "make")
_FENCE = re.compile(r"^```(\S*)\s*$")
_MARK = re.compile(r"^<!-- not run: (\S.*\S) -->$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int               # of the opening fence, from 1
    language: str
    code: str
    not_run: str | None     # the reason given, or None: it runs

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of ``path``, each with the reason it is not run, if marked."""
    lines = path.read_text().splitlines()
    found, index = [], 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = next(j for j in range(index + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j] for j in range(index - 1, -1, -1) if lines[j].strip()), "")
        mark = _MARK.match(before.strip())
        found.append(Block(path, index + 1, opening.group(1), "\n".join(lines[index + 1:end]),
                           mark.group(1) if mark else None))
        index = end + 1
    return found


ALL = [block for path in DOCS for block in blocks(path)]
RUN = [block for block in ALL if block.not_run is None and block.language in (*SHELL, "python")]


def test_every_block_names_its_language() -> None:
    unnamed = [b.name for b in ALL if b.language not in (*SHELL, "python", *TEXT)]
    assert not unnamed, f"give these blocks a language (bash, python, text, sql): {unnamed}"


def test_blocks_that_run_are_many_enough_to_matter() -> None:
    assert {b.language for b in RUN} >= {"bash", "python"}
    assert any("skiptune-search" in b.code for b in RUN)


def _command(block: Block) -> list[str]:
    if block.language == "python":
        return [sys.executable, "-c", block.code]
    # A console block's commands follow "$ "; a shell block is a script.
    code = ("\n".join(line[2:] for line in block.code.splitlines() if line.startswith("$ "))
            if block.language == "console" else block.code)
    return ["bash", "-euo", "pipefail", "-c", code]


@pytest.mark.parametrize("block", RUN, ids=[b.name for b in RUN])
def test_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    env = cli_env()
    env.pop("SKIPTUNE_DB", None)
    # Offline, whatever the block says: a block that needs the network must be marked.
    env.update(SKIPTUNE_OFFLINE="1", HF_HUB_OFFLINE="1",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]]))
    result = subprocess.run(_command(block), cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, f"{block.name}\n{result.stdout}\n{result.stderr}"


def test_installs_name_a_clone_or_a_git_url() -> None:
    """skiptune is not on PyPI: ``pip install 'skiptune[...]'`` alone would find nothing, in
    the docs or in a message (the messages' hints come from ``skiptune._install``)."""
    code = sorted((REPO / "skiptune").rglob("*.py"))
    bare = [f"{path.relative_to(REPO)}:{number}" for path in [*DOCS, *code]
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if re.search(r"pip install (-U )?'?skiptune\b(?!.* @ git\+)", line)
            and "finds nothing" not in line]
    assert not bare, bare
