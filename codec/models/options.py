"""Typed, bounded settings read from untrusted JSON or Hydra configs.

A part's settings are a dataclass whose fields say their type and, with `codec.bounds.bounded`,
their bounds (`range=(low, high)` for numbers, `choices=(...)` for strings, `length=(low, high)`
for lists). `Options.from_dict` refuses unknown fields and values of the wrong type or range
with one line naming the field, so a hostile config.json cannot make the loader build without
bound.
"""

from __future__ import annotations

import dataclasses
import types
import typing

from codec.bounds import bounded, limits, rule_broken

__all__ = ["ConfigError", "Options", "bounded", "check_fields"]


class ConfigError(ValueError):
    """A model config that cannot be built; the message names the field and the problem."""


def _converted(kind, value):
    """A checked value as the field holds it: numbers of a float field as floats, lists as
    lists."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if value is None:
            return None
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    if kind is float:
        return float(value)
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        return [_converted(item, v) for v in value]
    return dict(value) if kind is dict else value


def check_fields(cls, values: dict, where: str = "") -> dict:
    """`values` of fields of dataclass `cls`, each checked against the field's annotation and
    bounds -> the values converted; ConfigError naming the first that is not."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for name, value in values.items():
        label = f"{where}.{name}" if where else name
        rule = rule_broken(hints[name], value, **limits(fields[name]))
        if rule is not None:
            raise ConfigError(f"{label} must be {rule}")
        out[name] = _converted(hints[name], value)
    return out


@dataclasses.dataclass
class Options:
    """Base of every part's settings."""

    @classmethod
    def from_dict(cls, data, where: str = ""):
        if not isinstance(data, dict):
            raise ConfigError(f"{where or cls.__name__} must be an object")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown {where + ' ' if where else ''}fields: {', '.join(unknown)}")
        options = cls(**check_fields(cls, data, where))
        options.validate(where)
        return options

    def validate(self, where: str) -> None:
        """Checks across fields; subclasses raise ConfigError."""

    def folded(self) -> Options:
        """These settings once weight norm is folded into plain weights (codec.nn's
        fold_weight_norm): the same, for a part without weight norm."""
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
