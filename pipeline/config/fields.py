"""TOML table -> frozen dataclass, checked one way for every config section.

:func:`build` refuses an unknown or missing key and a value of the wrong type, converts
lists to tuples and nested tables to nested dataclasses, then :func:`check_fields` applies
the section's declared limits: a class attribute ``RULES`` mapping a field to a
:class:`Range`, :class:`OneOf`, :class:`Interval` or :class:`FileName`. A tuple field's rule applies to each
element, and the tuple may not be empty. Every message reads ``config: <key> ...`` and
names the fix. Limits sit next to their section (``RULES`` beside the fields), not in a
table keyed by dotted strings elsewhere.

Standard library only: :mod:`pipeline.config.schema` and :mod:`pipeline.config.augment` both use
it, and the Makefile runs them with the bare system Python.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Range:
    """A number in ``[lo, hi]`` (``hi`` None: no upper limit)."""

    lo: float
    hi: float | None = None

    def error(self, value: Any) -> str | None:
        if self.hi is None:
            return None if value >= self.lo else f"must be >= {self.lo}"
        return None if self.lo <= value <= self.hi else f"is outside [{self.lo}, {self.hi}]"


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of names."""

    options: tuple[str, ...]

    def error(self, value: Any) -> str | None:
        return None if value in self.options else f"; choose one of {self.options}"


@dataclass(frozen=True)
class Interval:
    """A ``[lo, hi]`` pair with ``bounds[0] <= lo <= hi <= bounds[1]`` (e.g. a YCrCb box)."""

    lo: int
    hi: int

    def error(self, value: Any) -> str | None:
        if len(value) == 2 and self.lo <= value[0] <= value[1] <= self.hi:
            return None
        return f"; write [lo, hi] with {self.lo} <= lo <= hi <= {self.hi}"


@dataclass(frozen=True)
class FileName:
    """A name that becomes part of build file names (``embed/<name>.npz``,
    ``members/<name>_<head>.fold<k>.npz``): letters, digits, ``_`` and ``-``, no dot (the
    Makefile splits ``<name>.fold<k>`` at the dot, and ``embed/cnn.<backbone>.fold<k>.npz``
    shares the folder), no slash, no space."""

    def error(self, value: Any) -> str | None:
        if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", value):
            return None
        return (
            "; use letters, digits, _ and - only (no dots: embed/<name>.npz shares its "
            "folder with the fine-tuned folds' embed/cnn.<backbone>.fold<k>.npz)"
        )


Rule = Range | OneOf | Interval | FileName


def _message(key: str, value: Any, problem: str) -> str:
    shown = list(value) if isinstance(value, tuple) else value
    sep = "" if problem.startswith(";") else " "
    return f"config: {key} = {shown!r}{sep}{problem}"


def check_fields(obj: Any, where: str) -> None:
    """Apply ``type(obj).RULES`` to ``obj``'s fields; ``where`` is the section's key."""
    rules: Mapping[str, Rule] = getattr(type(obj), "RULES", {})
    for name, rule in rules.items():
        key = f"{where}.{name}" if where else name
        value = getattr(obj, name)
        if isinstance(rule, Interval) or not isinstance(value, tuple):
            problem = rule.error(value)
            if problem:
                raise ValueError(_message(key, value, problem))
            continue
        if not value:
            raise ValueError(f"config: {key} must not be empty; list at least one value")
        for item in value:
            problem = rule.error(item)
            if problem:
                raise ValueError(_message(key, value, problem))


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; build nested dataclasses."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"config: [{where}] must be a table, got {type(value).__name__}")
        return build(tp, value, where)
    if origin is tuple:
        (inner, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ValueError(f"config: {where} must be a list, got {value!r}")
        return tuple(_convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported annotation at {where}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"config: {where} must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"config: {where} must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"config: {where} must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"config: {where} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} at {where}")


def build(cls: type, raw: dict, where: str) -> Any:
    """``cls`` from the TOML table ``raw`` found at key ``where`` ("" = the top level)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        known = ", ".join(sorted(fields))
        raise ValueError(
            f"config: unknown key {prefix}{unknown[0]!r} (known keys here: {known}); "
            "check the spelling"
        )
    kwargs = {}
    for name, f in fields.items():
        key = f"{where}.{name}" if where else name
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"config: missing required key {key!r}")
            continue
        kwargs[name] = _convert(raw[name], hints[name], key)
    obj = cls(**kwargs)
    check_fields(obj, where)
    return obj
