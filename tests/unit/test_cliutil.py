"""``genogate.cliutil.run``: the one error boundary of the three command lines (one line on stderr, an exit
code; a bug still raises)."""

from __future__ import annotations

import pytest

from genogate.cliutil import run
from genogate.errors import ConfigError, GenogateError, InvalidArgument, LocalError, Unavailable, UsageError


def _raising(exc: BaseException) -> int:
    raise exc


def test_the_handler_exit_code_passes_through(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("prog", lambda: 7, error_exit=2) == 7
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("exc", [LocalError("local trouble"), UsageError("bad usage"), ConfigError("bad config")])
def test_a_local_error_exits_with_its_own_code(exc: LocalError, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("prog", lambda: _raising(exc), error_exit=99, where=lambda e: " (never)") == exc.exit_code
    assert capsys.readouterr().err == f"prog: error: {exc}\n"


def test_any_other_genogate_error_exits_with_the_callers_code_and_suffix(capsys: pytest.CaptureFixture[str]) -> None:
    def where(exc: GenogateError) -> str:
        return " (server x:1)" if isinstance(exc, Unavailable) else ""

    assert run("prog", lambda: _raising(Unavailable("down")), error_exit=1, where=where) == 1
    assert capsys.readouterr().err == f"prog: error: {Unavailable('down')} (server x:1)\n"
    assert run("prog", lambda: _raising(InvalidArgument("bad where")), error_exit=2, where=where) == 2
    assert capsys.readouterr().err == f"prog: error: {InvalidArgument('bad where')}\n"


def test_a_closed_stdout_is_a_clean_exit(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("prog", lambda: _raising(BrokenPipeError()), error_exit=2) == 0
    assert capsys.readouterr().err == ""


def test_ctrl_c_is_one_line_and_exit_130(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("prog", lambda: _raising(KeyboardInterrupt()), error_exit=2) == 130
    assert capsys.readouterr().err == "prog: interrupted\n"
    assert run("p2", lambda: _raising(KeyboardInterrupt()), error_exit=2, interrupted="interrupted; nothing") == 130
    assert capsys.readouterr().err == "p2: interrupted; nothing\n"


def test_a_bug_is_not_swallowed() -> None:
    with pytest.raises(ZeroDivisionError):
        run("prog", lambda: 1 // 0, error_exit=2)
