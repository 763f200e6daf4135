"""The error boundary of genogate's three command lines (``genogate``, ``genogate-node``,
``genogate-coordinator``): one place that turns what a command raises into one line on stderr and an exit code.

``run`` calls a command's handler and returns its exit code; a ``LocalError`` prints ``PROG: error: ...`` and
exits with its own ``exit_code``; any other ``GenogateError`` prints the same line (plus the caller's
``where`` suffix, e.g. which server refused) and exits with ``error_exit``; a closed stdout (``| head``) is a
clean exit 0; Ctrl-C prints ``PROG: interrupted`` (or the caller's ``interrupted`` wording) and exits 130.
Anything else propagates: a stack trace means a bug.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from genogate.errors import GenogateError, LocalError

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
