"""The surface of the four command lines (``genogate``, ``genogate-node``, ``genogate-coordinator``,
``genogate-demo``), walked through their argparse parsers: every command and subcommand has help; every
option and argument has help; every leaf command accepts ``--json`` (the exceptions below, each with its
reason); rendered help shows no ``%%`` (argparse's escape in ``help=`` strings, which descriptions do not
unescape) and no raw docstring (reStructuredText ````literals````, ``:param``). A command another change
adds is checked here too, the day it is merged."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from coordinator.cli import _parser as coordinator_parser
from genogate.cli import _parser as genogate_parser
from genogate_demo.run import parser as demo_parser
from node.cli import _parser as node_parser

CLIS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "genogate": genogate_parser,
    "genogate-node": node_parser,
    "genogate-coordinator": coordinator_parser,
    "genogate-demo": demo_parser,
}

#: Leaf commands without ``--json``, and why.
NO_JSON: dict[str, str] = {
    "genogate-node serve": "runs until stopped; what it prints is its log (JSON with [log] format = json)",
    "genogate-coordinator serve": "runs until stopped; what it prints is its log (JSON with [log] format = json)",
    "genogate completion": "prints a shell script to load into the shell",
    "genogate-node completion": "prints a shell script to load into the shell",
    "genogate-coordinator completion": "prints a shell script to load into the shell",
}

RAW_DOCSTRING = ("``", ":param", ":return", ">>> ")


@dataclass(frozen=True)
class Command:
    path: str  # "genogate-node dev-ca issue"
    parser: argparse.ArgumentParser
    help: str | None  # as its parent lists it (None for the program itself)
    leaf: bool


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _walk(path: str, parser: argparse.ArgumentParser, help_text: str | None) -> Iterator[Command]:
    sub = _subparsers(parser)
    yield Command(path, parser, help_text, sub is None)
    if sub is None:
        return
    listed = {a.dest: a.help for a in sub._choices_actions}
    for name, child in sub.choices.items():
        yield from _walk(f"{path} {name}", child, listed.get(name))


def _commands() -> list[Command]:
    return [c for prog, make in CLIS.items() for c in _walk(prog, make(), None)]


COMMANDS = _commands()
IDS = [c.path for c in COMMANDS]


def test_the_walk_finds_the_commands_it_should() -> None:
    paths = set(IDS)
    for expected in (
        "genogate query allele-frequency",
        "genogate budget",
        "genogate keys new",
        "genogate-node ingest",
        "genogate-node dev-ca issue",
        "genogate-node audit verify",
        "genogate-coordinator committee add",
        "genogate-coordinator audit reconcile",
        "genogate-demo",
    ):
        assert expected in paths
    assert len([c for c in COMMANDS if c.leaf]) >= 30


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.help is not None], ids=lambda c: c.path)
def test_every_command_has_help(command: Command) -> None:
    assert command.help and command.help.strip(), f"{command.path}: no help= where its parent lists it"


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.leaf], ids=lambda c: c.path)
def test_every_leaf_command_has_a_description(command: Command) -> None:
    assert command.parser.description and command.parser.description.strip(), f"{command.path}: no description"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.path)
def test_every_option_and_argument_has_help(command: Command) -> None:
    missing = [
        "/".join(a.option_strings) or a.dest
        for a in command.parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._VersionAction | argparse._SubParsersAction)
        and a.help != argparse.SUPPRESS
        and not (a.help and a.help.strip())
    ]
    assert not missing, f"{command.path}: no help for {', '.join(missing)}"


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.leaf], ids=lambda c: c.path)
def test_every_leaf_command_accepts_json(command: Command) -> None:
    options = {s for a in command.parser._actions for s in a.option_strings}
    if command.path in NO_JSON:
        assert "--json" not in options, f"{command.path} has --json now: drop it from NO_JSON"
        return
    assert "--json" in options, f"{command.path}: no --json (or list it in NO_JSON with a reason)"


def test_every_exception_is_a_command() -> None:
    assert set(NO_JSON) <= {c.path for c in COMMANDS if c.leaf}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.path)
def test_rendered_help_has_no_escapes_or_docstrings(command: Command) -> None:
    text = command.parser.format_help()
    assert "%%" not in text and "%(" not in text, f"{command.path}: unrendered % in its help"
    found = [marker for marker in RAW_DOCSTRING if marker in text]
    assert not found, f"{command.path}: help shows raw docstring markup {found}"


@pytest.mark.parametrize("prog", sorted(CLIS))
def test_the_installed_commands_print_their_help(prog: str) -> None:
    from pathlib import Path

    exe = Path(sys.executable).with_name(prog)
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.startswith(f"usage: {prog}")
    assert "%%" not in out and "``" not in out
