"""Checks of config values shared by the study config (:mod:`rlnorm.study.config`) and the claims
(:mod:`rlnorm.analysis.claims`): each raises :class:`ConfigError` with one line naming the bad value and what
is allowed. Torch-free."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any


class ConfigError(ValueError):
    """A config value that cannot be used: the message is one line naming it and what is allowed."""


def check_keys(
    raw: Any,
    allowed: list[str] | tuple[str, ...],
    where: str,
    required: tuple[str, ...] = (),
    what: str = "key",
    hints: Mapping[str, str] | None = None,
) -> None:
    """
    :param raw: a mapping from the config
    :param allowed: its allowed keys
    :param where: the mapping's place in the config ("" for the top level)
    :param required: keys it must have
    :param what: what a key is called in the message
    :param hints: for keys known to be written by mistake, what to write instead (in place of the nearest
        allowed key)
    :raises ConfigError: if it is not a mapping, has a key not allowed (with the nearest allowed one) or lacks one
    """
    at = f"{where}: " if where else ""
    allowed = list(allowed)
    if not isinstance(raw, dict):
        raise ConfigError(f"{at}expected a mapping with {what}s {', '.join(allowed)}, got {raw!r}")
    for key in raw:
        if key not in allowed:
            hint = f" ({hints[key]})" if hints and key in hints else did_you_mean(key, allowed)
            raise ConfigError(f"{at}unknown {what} {key!r}{hint}; allowed: {', '.join(allowed)}")
    for key in required:
        if key not in raw:
            raise ConfigError(f"{at}missing key {key!r}; required: {', '.join(required)}")


def did_you_mean(value: Any, allowed: list[str] | tuple[str, ...]) -> str:
    """:return: `` (did you mean 'x'?)`` naming the allowed value nearest ``value``, or "" if none is near"""
    close = difflib.get_close_matches(str(value), list(allowed), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_unique(values: list[Any], where: str) -> None:
    """:raises ConfigError: naming the values that appear more than once"""
    duplicates = sorted({str(v) for v in values if values.count(v) > 1})
    if duplicates:
        raise ConfigError(f"{where}: {', '.join(duplicates)} appears more than once")


def string(value: Any, where: str) -> str:
    """:return: the value, a non-empty string
    :raises ConfigError: if it is not one"""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {value!r} is not a non-empty string")
    return value


def integer(value: Any, where: str, expected: str = "an integer") -> int:
    """:return: the value, if it is a (non-boolean) integer
    :raises ConfigError: if it is not one, saying what was ``expected``"""
    # YAML `true` is a Python bool, which is an int: reject it.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: {value!r} is not {expected}")
    return value


def positive_int(value: Any, where: str) -> int:
    """:return: the value, if it is an integer of at least 1
    :raises ConfigError: if it is not one"""
    if integer(value, where, "a positive integer") < 1:
        raise ConfigError(f"{where}: {value} is not a positive integer")
    return value


def number(value: Any, where: str) -> float:
    """:return: the value as a float, if it is a (non-boolean) number
    :raises ConfigError: if it is not one"""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: {value!r} is not a number")
    return float(value)
