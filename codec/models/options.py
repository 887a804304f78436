"""Typed, bounded settings read from untrusted JSON or Hydra configs.

A part's settings are a dataclass whose fields say their type and, in `metadata`, their bounds
(`range=(low, high)` for numbers, `choices=(...)` for strings, `length=(low, high)` for lists).
`Options.from_dict` refuses unknown fields and values of the wrong type or range with one line
naming the field, so a hostile config.json cannot make the loader build without bound.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A model config that cannot be built; the message names the field and the problem."""


def bounded(default, *, range=None, choices=None, length=None):  # noqa: A002
    """A dataclass field with bounds for `Options.from_dict`."""
    meta = {"range": range, "choices": choices, "length": length}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _check(name: str, kind, value, meta: dict) -> Any:
    """`value` checked against the annotation `kind` and the field's bounds; returns it (lists
    as lists)."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        kind = next(k for k in options if k is not type(None))
    low, high = meta.get("range") or (None, None)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false")
        return value
    if kind is int or kind is float:
        ok = _is_int(value) if kind is int else _is_number(value)
        if not ok or (low is not None and not low <= value <= high):
            what = "an integer" if kind is int else "a number"
            where = f" in [{low}, {high}]" if low is not None else ""
            raise ConfigError(f"{name} must be {what}{where}")
        return float(value) if kind is float else value
    if kind is str:
        choices = meta.get("choices")
        if not isinstance(value, str) or (choices and value not in choices):
            one_of = f" one of {', '.join(choices)}" if choices else " a string"
            raise ConfigError(f"{name} must be{one_of}")
        return value
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        lo, hi = meta.get("length") or (0, 64)
        if not isinstance(value, (list, tuple)) or not lo <= len(value) <= hi:
            raise ConfigError(f"{name} must be a list of {lo} to {hi} values")
        return [_check(name, item, v, meta) for v in value]
    if kind is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be an object")
        return dict(value)
    raise TypeError(f"unsupported option type {kind} for {name}")


@dataclasses.dataclass
class Options:
    """Base of every part's settings."""

    @classmethod
    def from_dict(cls, data, where: str = ""):
        if not isinstance(data, dict):
            raise ConfigError(f"{where or cls.__name__} must be an object")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(f"unknown {where + ' ' if where else ''}fields: {', '.join(unknown)}")
        values = {}
        for name, value in data.items():
            label = f"{where}.{name}" if where else name
            values[name] = _check(label, hints[name], value, dict(fields[name].metadata))
        options = cls(**values)
        options.validate(where)
        return options

    def validate(self, where: str) -> None:
        """Checks across fields; subclasses raise ConfigError."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
