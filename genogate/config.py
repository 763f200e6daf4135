"""Typed settings for genogate processes, loaded once from a TOML file plus prefixed environment variables.

A process declares its settings as one frozen dataclass whose fields are *sections* (each itself a frozen
dataclass); every setting is a field carrying its help text, and optionally a check, in its metadata::

    @dataclass(frozen=True)
    class ServerSettings:
        max_workers: int = field(default=8, metadata={"help": "gRPC worker threads.", "check": positive})

``load`` reads ``[server] max_workers`` from the file; ``<PREFIX>SERVER__MAX_WORKERS`` in the environment
overrides it (section and key joined by a double underscore). Every problem in the file and the environment
(unknown section or key, wrong type, missing required value, invalid choice, failed check) is collected and
reported at once in a single ``ConfigError``, each with its location::

    node.toml: [policy] min_reportable_count: expected an integer, got 'ten'

Supported setting types: ``int``, ``float``, ``Decimal`` (written as a string so it stays exact), ``bool``,
``str``, ``Path``, ``Literal[...]`` choices, ``tuple[X, ...]`` of those (a TOML array, or comma-separated in
the environment) and ``X | None``. Relative paths in the file, and relative path defaults, resolve against
the configuration file's directory; relative paths from the environment resolve against the current
directory. Settings hold paths to key files, never key bytes.

Nothing here reads the environment or any file at import; ``load`` reads exactly the file it is given and the
mapping it is passed.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import textwrap
import tomllib
import types
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar, Union, get_args, get_origin, get_type_hints

from genogate.errors import ConfigError, LocalError
from genogate.words import plural

T = TypeVar("T")

#: A setting's optional check: takes the converted value, returns it (possibly normalised) or raises
#: ``ValueError`` whose message says what is wrong.
Check = Callable[[Any], Any]

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: The ``default`` that ``describe`` reports for a setting that has none and must be given.
REQUIRED: Any = _Required()


class Setting(NamedTuple):
    """One documented setting, as ``describe`` lists it."""

    section: str
    key: str
    type: str
    default: Any  # ``REQUIRED`` when the setting must be given
    help: str

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


class _Bad(ValueError):
    """A value that does not convert; the message completes ``<location>: ...``."""


# Declarations ---------------------------------------------------------------------------------------------


def _sections(cls: type[Any]) -> list[tuple[dataclasses.Field[Any], type[Any]]]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        section_type = hints[f.name]
        if not (isinstance(section_type, type) and dataclasses.is_dataclass(section_type)):
            raise TypeError(f"{cls.__name__}.{f.name}: every top-level field must be a section dataclass")
        out.append((f, section_type))
    return out


def _settings(section_type: type[Any]) -> list[tuple[dataclasses.Field[Any], Any]]:
    hints = get_type_hints(section_type)
    out = []
    for f in dataclasses.fields(section_type):
        if not isinstance(f.metadata.get("help"), str) or not f.metadata["help"].strip():
            raise TypeError(f"{section_type.__name__}.{f.name} has no help text in its metadata")
        _type_name(hints[f.name])  # refuse unsupported types early
        out.append((f, hints[f.name]))
    return out


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return REQUIRED


def _optional_inner(tp: Any) -> Any | None:
    """``X`` for ``X | None`` (either spelling), else ``None``."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0]
    return None


def _type_name(tp: Any) -> str:
    inner = _optional_inner(tp)
    if inner is not None:
        return f"{_type_name(inner)} (optional)"
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(json.dumps(c) for c in get_args(tp))
    if get_origin(tp) is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type_name(args[0])}"
    names = {
        int: "integer",
        float: "number",
        Decimal: 'decimal (a string such as "0.5")',
        bool: "boolean",
        str: "string",
        Path: "path",
    }
    if tp in names:
        return names[tp]
    raise TypeError(f"unsupported setting type {tp!r}")


def describe(cls: type[Any]) -> list[Setting]:
    """Every setting of a config dataclass tree, in declaration order: (section, key, type, default, help).

    ``TypeError`` if a setting lacks help text or has an unsupported type (a programming error)."""
    return [
        Setting(section.name, f.name, _type_name(tp), _default(f), " ".join(f.metadata["help"].split()))
        for section, section_type in _sections(cls)
        for f, tp in _settings(section_type)
    ]


def env_name(env_prefix: str, section: str, key: str) -> str:
    """The environment variable that overrides ``[section] key``."""
    return f"{env_prefix}{section.upper()}__{key.upper()}"


# Conversion -----------------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _convert(tp: Any, value: Any, *, from_env: bool, base: Path) -> Any:
    inner = _optional_inner(tp)
    if inner is not None:
        if from_env and value.strip() == "":
            return None
        return _convert(inner, value, from_env=from_env, base=base)
    if get_origin(tp) is Literal:
        choices = get_args(tp)
        if isinstance(value, str):
            for choice in choices:
                if value.strip().lower() == str(choice).lower():
                    return choice
        raise _Bad(f"expected one of {', '.join(json.dumps(c) for c in choices)}, got {_show(value)}")
    if get_origin(tp) is tuple:
        item_type = get_args(tp)[0]
        if from_env:
            items: list[Any] = [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(value, list):
            items = value
        else:
            raise _Bad(f'expected a list (a TOML array such as ["a", "b"]), got {_show(value)}')
        out = []
        for i, item in enumerate(items):
            try:
                out.append(_convert(item_type, item, from_env=from_env, base=base))
            except _Bad as exc:
                raise _Bad(f"item {i + 1}: {exc}") from None
        return tuple(out)
    if from_env:
        return _from_text(tp, value, base)
    return _from_toml(tp, value, base)


def _from_toml(tp: Any, value: Any, base: Path) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Bad(f"expected true or false, got {_show(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Bad(f"expected an integer, got {_show(value)}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise _Bad(f"expected a finite number, got {_show(value)}")
    if tp is Decimal:
        if isinstance(value, str):
            return _decimal(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            # repr() of a TOML float is the shortest text that reads back as it, i.e. what was written.
            return _decimal(repr(value))
        raise _Bad(f'expected a decimal number such as "0.5", got {_show(value)}')
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Bad(f"expected a string, got {_show(value)}")
    if tp is Path:
        if isinstance(value, str) and value.strip():
            return _path(value, base)
        raise _Bad(f"expected a path (a non-empty string), got {_show(value)}")
    raise TypeError(f"unsupported setting type {tp!r}")


def _from_text(tp: Any, text: str, base: Path) -> Any:
    word = text.strip()
    if tp is bool:
        if word.lower() in _TRUE:
            return True
        if word.lower() in _FALSE:
            return False
        raise _Bad(f"expected true or false, got {_show(text)}")
    if tp is int:
        try:
            return int(word)
        except ValueError:
            raise _Bad(f"expected an integer, got {_show(text)}") from None
    if tp is float:
        try:
            number = float(word)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise _Bad(f"expected a finite number, got {_show(text)}")
        return number
    if tp is Decimal:
        return _decimal(word)
    if tp is str:
        return text
    if tp is Path:
        if not word:
            raise _Bad("expected a path, got an empty value")
        return _path(word, base)
    raise TypeError(f"unsupported setting type {tp!r}")


def _decimal(text: str) -> Decimal:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        raise _Bad(f'expected a decimal number such as "0.5", got {_show(text)}') from None
    if not number.is_finite():
        raise _Bad(f"expected a finite decimal number, got {_show(text)}")
    return number


def _path(text: str, base: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


# Loading --------------------------------------------------------------------------------------------------


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _read_toml(path: Path) -> dict[str, Any]:
    where = str(path)
    try:
        return tomllib.loads(Path(path).read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the configuration file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: the configuration file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from None


def _env_overrides(
    env: Mapping[str, str], env_prefix: str, declared: dict[str, list[str]], problems: list[str]
) -> dict[tuple[str, str], tuple[str, str]]:
    """(section, key) -> (variable, text) for each setting the environment overrides."""
    overrides: dict[tuple[str, str], tuple[str, str]] = {}
    for var in sorted(env):
        rest = var[len(env_prefix) :] if var.startswith(env_prefix) else ""
        if "__" not in rest:
            continue
        section, _, key = (part.lower() for part in rest.partition("__"))
        if section not in declared:
            problems.append(f"environment {var}: unknown section [{section}]{_suggest(section, list(declared))}")
        elif key not in declared[section]:
            hint = _suggest(key, declared[section])
            problems.append(f"environment {var}: [{section}] has no setting {key!r}{hint}")
        else:
            overrides[(section, key)] = (var, env[var])
    return overrides


@dataclasses.dataclass
class _Source:
    where: str  # the config file as given, for messages
    file_base: Path  # relative paths in the file resolve here
    env_base: Path  # relative paths from the environment resolve here
    env_prefix: str
    overrides: dict[tuple[str, str], tuple[str, str]]


def _section(name: str, section_type: type[Any], table: dict[str, Any], src: _Source, problems: list[str]) -> Any:
    """Build one section, appending its problems; ``None`` if any setting in it is invalid."""
    where = src.where
    names = [f.name for f, _ in _settings(section_type)]
    problems.extend(f"{where}: [{name}] unknown key {key!r}{_suggest(key, names)}" for key in table if key not in names)
    values: dict[str, Any] = {}
    ok = True
    for f, tp in _settings(section_type):
        try:
            if (name, f.name) in src.overrides:
                var, text = src.overrides[(name, f.name)]
                loc = f"environment {var}"
                value = _convert(tp, text, from_env=True, base=src.env_base)
            elif f.name in table:
                loc = f"{where}: [{name}] {f.name}"
                value = _convert(tp, table[f.name], from_env=False, base=src.file_base)
            else:
                loc = f"{where}: [{name}] {f.name}"
                value = _default(f)
                if value is REQUIRED:
                    var = env_name(src.env_prefix, name, f.name)
                    raise ValueError(f"required but not set (set it here or in {var})")
                if isinstance(value, Path) and not value.is_absolute():
                    value = src.file_base / value
            check: Check | None = f.metadata.get("check")
            values[f.name] = value if check is None else check(value)
        except ValueError as exc:
            problems.append(f"{loc}: {exc}")
            ok = False
    if not ok:
        return None
    instance = section_type(**values)
    cross: Callable[[], list[str]] | None = getattr(instance, "config_problems", None)
    problems.extend(f"{where}: [{name}] {p}" for p in (cross() if cross else []))
    return instance


def load(cls: type[T], path: Path, env_prefix: str, env: Mapping[str, str] = os.environ) -> T:
    """Read ``path`` (TOML) and the ``env_prefix`` variables of ``env`` into a ``cls`` instance.

    Raises one ``ConfigError`` listing every problem found. Environment variables that start with
    ``env_prefix`` and contain ``__`` after it are settings; an unknown one is a problem. Other variables with
    the prefix (e.g. one naming the config file) are ignored. A section may define ``config_problems(self) ->
    list[str]`` for checks that span several of its settings; they run when its settings are all valid.
    """
    where = str(path)
    data = _read_toml(path)
    sections = _sections(cls)
    declared = {s.name: [f.name for f, _ in _settings(t)] for s, t in sections}
    problems: list[str] = []
    for name, value in data.items():
        if name not in declared:
            what = f"unknown section [{name}]" if isinstance(value, dict) else f"unknown top-level key {name!r}"
            problems.append(f"{where}: {what}{_suggest(name, list(declared))}")
        elif not isinstance(value, dict):
            problems.append(f"{where}: {name} must be a [{name}] section, not a plain value")
    src = _Source(
        where=where,
        file_base=Path(os.path.abspath(path)).parent,
        env_base=Path(os.path.abspath(os.curdir)),
        env_prefix=env_prefix,
        overrides=_env_overrides(env, env_prefix, declared, problems),
    )
    built: dict[str, Any] = {}
    for section_field, section_type in sections:
        table = data.get(section_field.name, {})
        table = table if isinstance(table, dict) else {}
        built[section_field.name] = _section(section_field.name, section_type, table, src, problems)
    if problems:
        count = plural(len(problems), "problem")
        raise ConfigError(f"{count} in the configuration: " + "; ".join(problems))
    return cls(**built)


# Rendering ------------------------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """A setting value as a TOML literal (Decimals as strings, so they stay exact)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Decimal):
        return json.dumps(str(value).lower())
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Path):
        return json.dumps(value.as_posix())
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {value!r} as TOML")


def render_toml(cls: type[Any], values: Mapping[str, Any], *, header: str = "", width: int = 110) -> str:
    """A complete, commented TOML file for ``cls``: every setting preceded by its help text.

    ``values`` maps ``"section.key"`` to the value to write; other settings show their defaults. Every
    required setting must be in ``values``. Section help (metadata of the top-level fields) heads each
    section. An optional setting without a value is written commented out."""
    unknown = set(values) - {f"{s.section}.{s.key}" for s in describe(cls)}
    if unknown:
        raise KeyError(f"no such settings: {', '.join(sorted(unknown))}")
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for section_field, section_type in _sections(cls):
        name = section_field.name
        lines.append("")
        section_help = section_field.metadata.get("help")
        if section_help:
            lines.extend(
                textwrap.wrap(
                    " ".join(section_help.split()),
                    width - 2,
                    initial_indent="# ",
                    subsequent_indent="# ",
                    break_on_hyphens=False,
                )
            )
        lines.append(f"[{name}]")
        for i, (f, _tp) in enumerate(_settings(section_type)):
            if i:
                lines.append("")
            help_text = " ".join(f.metadata["help"].split())
            lines.extend(
                textwrap.wrap(help_text, width - 2, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False)
            )
            value = values.get(f"{name}.{f.name}", _default(f))
            if value is REQUIRED:
                raise KeyError(f"{name}.{f.name} is required: give it a value")
            lines.append(f"# {f.name} =" if value is None else f"{f.name} = {toml_value(value)}")
    return "\n".join(lines).lstrip("\n") + "\n"


def set_values(path: Path, values: Mapping[str, Any]) -> None:
    """Change settings of a file ``render_toml`` wrote, in place and atomically, keeping its comments.

    ``values`` maps ``"section.key"`` to the new value; each must be a line ``key = ...`` (or the commented
    ``# key =`` of an unset optional setting) inside ``[section]``. ``KeyError`` names any that is not."""
    lines = Path(path).read_text().splitlines()
    todo = dict(values)
    section = ""
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1].strip()
            continue
        key = stripped.removeprefix("# ").partition("=")[0].strip() if "=" in stripped else ""
        name = f"{section}.{key}"
        if key and name in todo and (not stripped.startswith("#") or stripped == f"# {key} ="):
            lines[i] = f"{key} = {toml_value(todo.pop(name))}"
    if todo:
        raise KeyError(f"{path}: no such settings: {', '.join(sorted(todo))}")
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def read_file(path: Path, what: str, error: type[LocalError] = ConfigError) -> bytes:
    """The bytes of a file the configuration names, or one clear ``error`` naming it and why."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror})") from None
