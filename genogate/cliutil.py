"""The error boundary of genogate's three command lines (``genogate``, ``genogate-node``,
``genogate-coordinator``): one place that turns what a command raises into one line on stderr and an exit code.

``run`` calls a command's handler and returns its exit code; a ``LocalError`` prints ``PROG: error: ...`` and
exits with its own ``exit_code``; any other ``GenogateError`` prints the same line (plus the caller's
``where`` suffix, e.g. which server refused) and exits with ``error_exit``; a closed stdout (``| head``) is a
clean exit 0; Ctrl-C prints ``PROG: interrupted`` (or the caller's ``interrupted`` wording) and exits 130.
Anything else propagates: a stack trace means a bug.

Beside it, what every command line shares: the ``--json`` flag (``add_json``) and how JSON is printed
(``print_json``, ``print_report``), the ``completion`` subcommand (``add_completion``), and sub-commands
whose parsers are built only when chosen (``LazyCommands``), so that a command imports only what it needs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from genogate.errors import GenogateError, LocalError

if TYPE_CHECKING:
    from genogate.files import Report

INTERRUPTED_EXIT = 130


def run(
    prog: str,
    handler: Callable[[], int],
    *,
    error_exit: int,
    where: Callable[[GenogateError], str] | None = None,
    interrupted: str = "interrupted",
) -> int:
    """``handler()``'s exit code, or the exit code of what it raised (see the module docstring)."""
    try:
        return handler()
    except LocalError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except GenogateError as exc:
        print(f"{prog}: error: {exc}{'' if where is None else where(exc)}", file=sys.stderr)
        return error_exit
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return INTERRUPTED_EXIT


# Shared pieces of the parsers and their output ----------------------------------------------------------


if TYPE_CHECKING:
    _SubCommands = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    _SubCommands = argparse._SubParsersAction


class LazyCommands(_SubCommands):
    """Sub-commands some of which are filled in only when chosen: ``later(name, fill)`` defers ``fill()`` (which
    adds ``name``'s own sub-commands and options, importing what they need) until the command line names
    ``name``; the parser is then the one ``fill`` would have built at once. ``--help`` of the parent lists
    ``name`` with its help as before; only what lies below it waits.

    Use it with ``parser.add_subparsers(action=LazyCommands, ...)``."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._later: dict[str, Callable[[], None]] = {}

    def later(self, name: str, fill: Callable[[], None], *, now: bool = False) -> None:
        """Run ``fill`` when ``name`` is chosen (at once with ``now``: tests and completion walk the whole tree)."""
        if now:
            fill()
        else:
            self._later[name] = fill

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        fill = self._later.pop(values[0], None) if values else None
        if fill is not None:
            fill()
        super().__call__(parser, namespace, values, option_string)


JSON_HELP = "print the result as one JSON object instead of text"


def add_json(parser: argparse.ArgumentParser, help_text: str = JSON_HELP) -> None:
    """The ``--json`` flag every leaf command has (tests/contract/test_cli_surface.py checks it)."""
    parser.add_argument("--json", action="store_true", help=help_text)


def strict(value: Any) -> Any:
    """``value`` with every non-finite float made ``None``, so that the JSON printed is strict (RFC 8259: no
    ``NaN`` or ``Infinity``, which jq and most parsers refuse). A ``None`` number means "none": no standard
    deviation for an odds ratio, or an unbounded interval end where the noise is so wide that the bound
    overflowed (the text output prints those as "-" and "inf")."""
    if isinstance(value, float):
        return value if value - value == 0.0 else None  # inf - inf and nan - nan are nan
    if isinstance(value, Mapping):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    return value


def print_json(doc: Mapping[str, Any]) -> None:
    """``doc`` on stdout, the one way the command lines print JSON: indented, stable key order as given, and
    strict (non-finite numbers as ``null``; see ``strict``)."""
    print(json.dumps(strict(doc), indent=2, default=str, allow_nan=False))


def print_report(report: Report, *, as_json: bool, status: str) -> int:
    """A file-writing command's outcome (``genogate.files.Report``): its lines, or with ``--json`` its
    ``to_json(status)``; exit code 0."""
    if as_json:
        print_json(report.to_json(status))
    else:
        print("\n".join(report.lines()))
    return 0


def add_completion(sub: Any, prog: str, parser: Callable[[], argparse.ArgumentParser]) -> None:
    """The ``completion`` subcommand: print a bash (or zsh, through bashcompinit) completion script for
    ``prog``, generated from ``parser()`` (``genogate.completion``)."""
    c = sub.add_parser(
        "completion",
        help="print a shell completion script (bash; zsh with bashcompinit)",
        description=f"Print a completion script for {prog}: commands, options and option values. Load it with "
        f'eval "$({prog} completion bash)" in ~/.bashrc (zsh: autoload -U bashcompinit && bashcompinit first).',
    )
    c.add_argument("shell", nargs="?", choices=("bash", "zsh"), default="bash", help="the shell (default: bash)")

    def handler(args: argparse.Namespace) -> int:
        from genogate.completion import bash_script

        print(bash_script(parser(), prog), end="")
        return 0

    c.set_defaults(handler=handler)
