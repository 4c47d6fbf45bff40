"""One typed loader for every config: a config file -> dict -> (nested) dataclass.

    read_file(path, suffixes)          TOML / JSON / YAML -> dict; missing file or bad syntax names the file
    from_dict(cls, data, where)        dict -> cls, checked against cls's type hints

The loader checks keys and types only: unknown keys, missing required keys, values of the wrong type.
Ranges and cross-field rules live in each dataclass's __post_init__, so a config built in code is
checked by the same rules as one read from a file. Nothing is coerced except int -> float, list ->
tuple and str -> Path, which are the same value in another container.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from rali_edge.errors import ConfigError, RaliEdgeError

T = TypeVar("T")

FORMATS = {".toml": "TOML", ".json": "JSON", ".yaml": "YAML", ".yml": "YAML"}


# ---------------------------------------------------------------- dict -> dataclass


def from_dict(cls: type[T], data: Any, where: str, *, error: type[RaliEdgeError] = ConfigError) -> T:
    """Build dataclass `cls` (and the dataclasses nested in it) from parsed config data.

    `where` names the file (and section) in every message, e.g. "runs/a.toml" or "bundle config";
    `error` is the class raised (BundleError for bundles). Unknown keys, missing required keys and
    wrong types are refused here; errors from __post_init__ get `where` put in front.
    """
    return _build(cls, data, where, "", error)


class _Mismatch(Exception):
    """A value that does not fit its annotation; _build turns it into `error` naming the field."""

    def __init__(self, at: str, expected: str, value: Any):
        super().__init__(at)
        self.at, self.expected, self.value = at, expected, value


def _build(cls: type[T], data: Any, where: str, at: str, error: type[RaliEdgeError]) -> T:
    ctx = f"{where} [{at}]" if at else where
    if not isinstance(data, dict):
        raise error(f"{ctx}: expected a table of settings, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    _check_keys(data, fields, ctx, error)
    hints = _hints(cls)
    kwargs = {}
    for key, value in data.items():
        try:
            kwargs[key] = _convert(value, hints[key], f"{at}.{key}" if at else key, where, error)
        except _Mismatch as m:
            raise error(f"{where}: {m.at}: expected {m.expected}, got {_show(m.value)}{_hint(m)}") from None
    try:
        return cls(**kwargs)
    except error as e:
        if str(e).startswith(ctx):  # already says where (e.g. "bundle config: ..."): don't repeat it
            raise
        raise error(f"{ctx}: {e}") from e


def _check_keys(data: dict, fields: dict[str, dataclasses.Field], ctx: str, error: type[RaliEdgeError]) -> None:
    unknown = sorted((k for k in data if k not in fields), key=str)
    if unknown:
        # a typo must never fall back to the default silently
        raise error(f"{ctx}: unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                    f"(unknown keys are errors); accepted keys: {', '.join(sorted(fields))}")
    missing = [name for name, f in fields.items() if name not in data and _required(f)]
    if missing:
        raise error(f"{ctx}: missing required keys {missing}")


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    # resolves string annotations, so modules with `from __future__ import annotations` work
    return typing.get_type_hints(cls)


# ---------------------------------------------------------------- one value against its annotation


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # bool is an int subclass: true is not 1 here


# annotation -> (description, plural, accepts, normalise)
_SCALARS: dict[Any, tuple[str, str, Any, Any]] = {
    bool: ("true or false", "booleans", lambda v: isinstance(v, bool), bool),
    int: ("an integer", "integers", _is_int, int),
    float: ("a number", "numbers", lambda v: _is_int(v) or isinstance(v, float), float),
    str: ("a string", "strings", lambda v: isinstance(v, str), str),
    Path: ("a path", "paths", lambda v: isinstance(v, (str, os.PathLike)), Path),
}


def _convert(value: Any, tp: Any, at: str, where: str, error: type[RaliEdgeError]) -> Any:
    """`value` checked against annotation `tp` (raises _Mismatch naming `at`), in its field's container type."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if tp in _SCALARS:
        _, _, accepts, normalise = _SCALARS[tp]
        if not accepts(value):
            raise _Mismatch(at, _describe(tp), value)
        return normalise(value)
    if origin in (Union, types.UnionType):
        return _union(value, typing.get_args(tp), at, where, error)
    if origin is Literal:
        if not any(value == a and type(value) is type(a) for a in typing.get_args(tp)):
            raise _Mismatch(at, _describe(tp), value)
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise _Mismatch(at, _describe(tp), value)
        return _build(tp, value, where, at, error)
    if tp in (list, tuple) or origin in (list, tuple):
        return _sequence(value, tp, at, where, error)
    if tp is dict or origin is dict:
        return _mapping(value, tp, at, where, error)
    raise error(f"{where}: {at}: field type {tp!r} is not supported by rali_edge.config_io")


def _union(value: Any, args: tuple, at: str, where: str, error: type[RaliEdgeError]) -> Any:
    if value is None and type(None) in args:
        return None
    options = [a for a in args if a is not type(None)]
    if len(options) == 1:  # X | None: X's own message, which names the list item that is wrong
        return _convert(value, options[0], at, where, error)
    for option in options:
        try:
            return _convert(value, option, at, where, error)
        except _Mismatch:
            continue
    raise _Mismatch(at, " or ".join(_describe(a) for a in args), value)


def _sequence(value: Any, tp: Any, at: str, where: str, error: type[RaliEdgeError]) -> list | tuple:
    if not isinstance(value, (list, tuple)):  # a string is not a list of its letters
        raise _Mismatch(at, _describe(tp), value)
    items = _item_types(tp, len(value))
    if items is None:
        raise _Mismatch(at, _describe(tp), value)
    out = [_convert(v, t, f"{at}[{i}]", where, error) for i, (v, t) in enumerate(zip(value, items))]
    return tuple(out) if (typing.get_origin(tp) or tp) is tuple else out


def _item_types(tp: Any, n: int) -> list | None:
    """The annotation of each of n items, or None when a fixed-length tuple wants another length."""
    args = typing.get_args(tp)
    if not args:
        return [Any] * n
    if typing.get_origin(tp) is tuple and args[-1] is not Ellipsis:
        return list(args) if len(args) == n else None
    return [args[0]] * n


def _mapping(value: Any, tp: Any, at: str, where: str, error: type[RaliEdgeError]) -> dict:
    if not isinstance(value, dict):
        raise _Mismatch(at, _describe(tp), value)
    key_tp, value_tp = typing.get_args(tp) or (Any, Any)
    return {_convert(k, key_tp, f"{at} (key {k!r})", where, error): _convert(v, value_tp, f"{at}.{k}", where, error)
            for k, v in value.items()}


def _describe(tp: Any) -> str:
    """Annotation in the words of a config file: 'an integer', 'a list of 3 numbers', 'one of [...]'."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp in _SCALARS:
        return _SCALARS[tp][0]
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any value"
    if origin is Literal:
        return f"one of {list(args)}"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if dataclasses.is_dataclass(tp) or tp is dict or origin is dict:
        return "a table"
    if not args:
        return "a list"
    if origin is tuple and args[-1] is not Ellipsis:
        if len(set(args)) == 1:
            return f"a list of {len(args)} {_plural(args[0])}"
        return f"a list of {len(args)} items ({', '.join(_describe(a) for a in args)})"
    return f"a list of {_plural(args[0])}"


def _plural(tp: Any) -> str:
    return _SCALARS[tp][1] if tp in _SCALARS else f"items that are each {_describe(tp)}"


def _hint(m: _Mismatch) -> str:
    # YAML 1.1 (PyYAML) reads 1e-3 without a dot as a string; the teacher's YAML configs meet this
    if m.expected == _describe(float) and isinstance(m.value, str):
        try:
            float(m.value)
        except ValueError:
            return ""
        return " (a number in quotes, or YAML's 1e-3: write it as 1.0e-3)"
    return ""


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 80 else text[:77] + '...'}"


# ---------------------------------------------------------------- file -> dict


def read_file(path: str | os.PathLike[str], suffixes: tuple[str, ...] = (".toml", ".json"), *,
              what: str = "config", error: type[RaliEdgeError] = ConfigError) -> dict[str, Any]:
    """Parse a config file into a dict. `suffixes` are the formats this kind of config is written in
    (see FORMATS); a missing file, another suffix or a syntax error raises `error` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} file not found" + (" (that is a folder)" if path.is_dir() else ""))
    kind = FORMATS.get(path.suffix.lower()) if path.suffix.lower() in suffixes else None
    if kind is None:
        raise error(f"{path}: {what} files must be {', '.join(suffixes)}")
    try:
        data = _PARSERS[kind](path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text ({e})") from e
    except _SyntaxError as e:
        raise error(f"{path}: not valid {kind}: {e}") from e
    if not isinstance(data, dict):
        raise error(f"{path}: expected a table of settings at the top level, got {_show(data)}")
    return data


class _SyntaxError(Exception):
    """A parser's error, its message naming the line (and column) where the parser gives them."""


def _parse_toml(text: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:  # its message ends "(at line L, column C)"
        raise _SyntaxError(str(e)) from e


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise _SyntaxError(f"{e.msg} (at line {e.lineno}, column {e.colno})") from e


def _parse_yaml(text: str) -> Any:
    import yaml  # only teacher configs are YAML; keep it off the import path of everything else

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (at line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise _SyntaxError(f"{getattr(e, 'problem', None) or e}{where}") from e


_PARSERS = {"TOML": _parse_toml, "JSON": _parse_json, "YAML": _parse_yaml}
