"""Every ``--flag`` that skiptune's messages, help and docstrings name exists on the command line.

A message that tells the user to pass a flag the CLI no longer has is a dead end; this scans
every string literal of the package (f-string text included) for ``--name`` and looks each
one up in the options of ``skiptune``'s commands and of ``skiptune-search``. A module with an
argparse command line of its own (the demo's training scripts) may also name its own flags.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from skiptune import cli

PACKAGE = Path(cli.__file__).resolve().parent

# A flag in running text; not a CSS custom property (``--fg: #000``, ``var(--fg)``).
FLAG = re.compile(r"(?<![\w-])(?<!var\()--[a-z][a-z0-9-]*[a-z0-9](?![\w:-])")


def _options(command: Any) -> set[str]:
    """The long options of a click command and of all its subcommands, ``--help`` included."""
    found = {"--help"}
    for parameter in command.params:
        found.update(o for o in (*parameter.opts, *parameter.secondary_opts)
                     if o.startswith("--"))
    for sub in getattr(command, "commands", {}).values():
        found |= _options(sub)
    return found


def cli_flags() -> set[str]:
    return _options(typer.main.get_command(cli.app)) | _options(
        typer.main.get_command(cli.search_app))


def _own_argparse_flags(tree: ast.AST) -> set[str]:
    """The flags a module's own argparse parser defines (``add_argument("--x", ...)``)."""
    return {arg.value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
            for arg in node.args
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            and arg.value.startswith("--")}


def unknown_flags(source: str, known: set[str]) -> Iterator[tuple[int, str]]:
    """(line, flag) for each ``--flag`` in the string literals of ``source`` that is neither in
    ``known`` nor defined by the module's own argparse parser."""
    tree = ast.parse(source)
    allowed = known | _own_argparse_flags(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for flag in FLAG.findall(node.value):
                if flag not in allowed:
                    yield node.lineno, flag


def test_the_scan_finds_a_flag_that_does_not_exist() -> None:
    known = cli_flags()
    assert {"--db", "--nfe", "--workers", "--from", "--rho-bottom", "--help"} <= known
    message = ('def find(path):\n    raise ConfigurationError(\n        f"{path} is missing; '
               'pass --inception-weights FILE or (--features digits)"\n    )\n')
    assert list(unknown_flags(message, known)) == [(3, "--inception-weights")]
    css = '_STYLE = ":root { --fg: #000; } body { color: var(--fg); }"\n'
    assert list(unknown_flags(css, known)) == []
    own = 'parser.add_argument("--epochs")\nraise SystemExit("pass another --epochs")\n'
    assert list(unknown_flags(own, known)) == []


def test_every_flag_the_package_names_exists_on_the_command_line() -> None:
    known = cli_flags()
    named: set[str] = set()
    unknown = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        named.update(FLAG.findall(source))
        unknown += [f"{path.relative_to(PACKAGE.parent)}:{line}: {flag}"
                    for line, flag in unknown_flags(source, known)]
    assert not unknown, "flags named but not on the command line:\n" + "\n".join(unknown)
    assert len(named & known) > 30                   # the scan reads the messages at all
