"""Typed parameters: turn a raw config mapping into a dataclass, naming the full path of any bad key."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from selfalign.errors import ConfigError
from selfalign.registry import did_you_mean

T = TypeVar("T")


class FieldError(ValueError):
    """A `__post_init__` check on one field (or item): parse_params names it `where.field`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if get_origin(tp) is not None:
        # list[pkg.mod.CoTeacher | str] → list[CoTeacher | str]
        return re.sub(r"\b(?:[a-z_][a-z0-9_]*\.)+(?=[A-Za-z_])", "", str(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str, finite: bool = True) -> Any:
    """Check `value` against annotation `tp`; return it (ints widen to float). Raise ConfigError.
    finite: a float must be a real number; NaN or ±inf would slip past every `<`/`>` check (a
    NaN cap is never reached), so they are refused unless the field's doc allows them."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if finite and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(
            f"{where}: {value} is not a finite number (NaN and ±inf are not accepted here). "
            f"Give a real number, e.g. {where}=1.0, or null where the key allows it."
        )
    if origin in (Union, types.UnionType):
        nested = []
        for arg in get_args(tp):
            try:
                return _coerce(value, arg, where, finite)
            except ConfigError as exc:
                if isinstance(value, Mapping) and dataclasses.is_dataclass(arg):
                    nested.append(exc)
        if len(nested) == 1:  # a mapping meant for the one typed branch: its own error (typo …)
            raise nested[0]
        raise _bad(value, tp, where)
    if tp is type(None):
        if value is None:
            return None
        raise _bad(value, tp, where)
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise _bad(value, tp, where)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise _bad(value, tp, where)
        return parse_params(tp, value, where)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _bad(value, tp, where)
        (item_tp,) = get_args(tp)[:1] or (Any,)
        return [_coerce(v, item_tp, f"{where}[{i}]", finite) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _bad(value, tp, where)
        args = get_args(tp)
        val_tp = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, val_tp, f"{where}.{k}", finite) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _bad(value, tp, where)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _bad(value, tp, where)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _bad(value, tp, where)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _bad(value, tp, where)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _bad(value, tp, where)


def _bad(value: Any, tp: Any, where: str) -> ConfigError:
    return ConfigError(
        f"{where}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__}). "
        f"Fix the value in your YAML or override it, e.g. {where}=..."
    )


def _plain(raw: Any) -> Any:
    """OmegaConf containers → plain Python (resolving interpolations) without importing omegaconf here."""
    if hasattr(raw, "_metadata"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(raw, resolve=True)
    return raw


def parse_params(schema: type[T], raw: Mapping[str, Any] | None, where: str) -> T:
    """Build `schema` (a dataclass) from `raw`; unknown keys and wrong types name `where.key`."""
    raw = _plain(raw) or {}
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(
                f"{where}.{key}: unknown key.{did_you_mean(str(key), list(fields))} "
                f"Valid keys: {', '.join(fields)}."
            )
        finite = not fields[key].metadata.get("nonfinite", False)
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}", finite)
    for name, f in fields.items():
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if name not in kwargs and no_default:
            raise ConfigError(f"{where}.{name}: required key is missing. Add it to the YAML.")
    try:
        obj = schema(**kwargs)
    except FieldError as exc:
        raise ConfigError(f"{where}.{exc.field}: {exc}") from None
    except (ValueError, TypeError) as exc:  # __post_init__ checks
        raise ConfigError(f"{where}: {exc}") from None
    return obj


def _plain_default(value: Any) -> Any:
    """Dataclass defaults (typed nested params) as plain mappings, for YAML and tables."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list):
        return [_plain_default(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain_default(v) for k, v in value.items()}
    return value


def _nested_schema(tp: Any) -> tuple[type, str] | None:
    """The dataclass inside `tp` (X, X | None, list[X], dict[str, X]) and the path suffix."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp, ""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        found = [n for a in args if (n := _nested_schema(a))]
        return found[0] if found else None
    if origin in (list, tuple) and args:
        inner = _nested_schema(args[0])
        return (inner[0], "[]" + inner[1]) if inner else None
    if origin is dict and len(args) == 2:
        inner = _nested_schema(args[1])
        return (inner[0], ".<name>" + inner[1]) if inner else None
    return None


def describe_params(schema: type, nested: bool = False) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, one-line doc) for each field, docs from `metadata={'doc': ...}`.
    nested=True adds the fields of typed nested params as `name.field`, `name[].field` …"""
    hints = typing.get_type_hints(schema)
    rows = []
    for f in dataclasses.fields(schema):
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        rows.append((f.name, _type_name(hints[f.name]), _plain_default(default), f.metadata.get("doc", "")))
        inner = _nested_schema(hints[f.name]) if nested else None
        if inner:
            rows += [
                (f"{f.name}{inner[1]}.{n}", t, d, text)
                for n, t, d, text in describe_params(inner[0], nested=True)
            ]
    return rows


def doc(
    text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING, nonfinite: bool = False
) -> Any:
    """A dataclass field with a one-line doc shown by `selfalign list stages`. nonfinite=True lets
    its floats be NaN or ±inf (say what they mean in `text`); every other float must be finite."""
    meta = {"doc": text, "nonfinite": nonfinite}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)
