"""Declared limits: one way to say which values a setting or a file's header field takes.

A dataclass field declares its type in its annotation and its bounds with `bounded`
(`range=(low, high)` for numbers, either end None for no bound; `choices=(...)` for strings;
`length=(low, high)` for strings, lists and objects). `rule_broken` says, in words, the rule a
value breaks ("an integer in [1, 64]"), or None; model configs (codec.models.options), the
.codes header and the .ecdc header put those words in their own errors. Nothing here trusts a
value's type: JSON from a hostile file gets the same answers as a well-formed one.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing


def bounded(default=dataclasses.MISSING, *, range=None, choices=None, length=None):  # noqa: A002
    """A dataclass field with bounds (a list or dict default is copied for each instance)."""
    meta = {"range": range, "choices": choices, "length": length}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def limits(field: dataclasses.Field) -> dict:
    """The bounds `bounded` gave a field ({} for a plain field)."""
    return dict(field.metadata)


def is_int(value) -> bool:
    """An int, not a bool (JSON's true is not 1 here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """An int (any size) or a finite float; not a bool."""
    return is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _within(value, range) -> bool:  # noqa: A002
    low, high = range or (None, None)
    return (low is None or low <= value) and (high is None or value <= high)


def _range_words(range) -> str:  # noqa: A002
    low, high = range or (None, None)
    if low is None and high is None:
        return ""
    if high is None:
        return f" >= {low}"
    if low is None:
        return f" <= {high}"
    return f" in [{low}, {high}]"


def rule_broken(kind, value, *, range=None, choices=None, length=None) -> str | None:  # noqa: A002
    """The rule (in words) that `value` breaks as a value of annotation `kind` within the
    bounds, or None when it keeps them. The items of a list are held to the same range and
    choices."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        kind = next(k for k in options if k is not type(None))
        rule = rule_broken(kind, value, range=range, choices=choices, length=length)
        return None if rule is None else f"null or {rule}"
    low, high = length or (0, None)
    size = "" if length is None else f" of {low}..{high}" if high is not None else f" of {low}+"
    if kind is bool:
        return None if isinstance(value, bool) else "true or false"
    if kind is int or kind is float:
        ok = is_int(value) if kind is int else is_number(value)
        if ok and _within(value, range):
            return None
        return ("an integer" if kind is int else "a number") + _range_words(range)
    if kind is str:
        fits = isinstance(value, str) and _within(len(value), (low, high))
        if fits and (not choices or value in choices):
            return None
        if choices:
            return f"one of {', '.join(choices)}"
        return f"a string{size} characters" if length else "a string"
    if kind is list or typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind) or (typing.Any,)
        low, high = length or (0, 64)
        whole = f"a list of {low} to {high} values"
        if not isinstance(value, (list, tuple)) or not _within(len(value), (low, high)):
            return whole
        if item is typing.Any:
            return None
        broken = (rule_broken(item, v, range=range, choices=choices) for v in value)
        rule = next((rule for rule in broken if rule is not None), None)
        return None if rule is None else f"{whole}, each {rule}"
    if kind is dict or typing.get_origin(kind) is dict:
        if isinstance(value, dict) and _within(len(value), (low, high)):
            return None
        return f"an object of at most {high} entries" if high is not None else "an object"
    raise TypeError(f"no rule for values of type {kind}")
