"""Dataclass fields that carry their allowed values and a one-line help.

A setting is written once (``bounded(0.05, 0.001, 1.0, help=...)``); the campaign config loader
(``config.build``), the command-line flags generated from a dataclass (``cli.py``) and the dataclass's own
check (``check`` in ``__post_init__``) all read the same choices and bounds from the field's metadata.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any

from discovery.errors import DiscoveryError


class SettingError(DiscoveryError):
    """A setting outside its choices or bounds; the message names the setting."""


def choice(*options: str, default: Any, help: str = "", many: bool = False) -> Any:
    """One of ``options`` (``many``: a tuple of them, e.g. checks to skip)."""
    return field(default=default, metadata={"choices": options, "help": help, "many": many})


def bounded(default: Any, low: float | None = None, high: float | None = None, help: str = "") -> Any:
    return field(default=default, metadata={"low": low, "high": high, "help": help})


def setting(default: Any, help: str) -> Any:
    """A field without choices or bounds, with its help."""
    return field(default=default, metadata={"help": help})


def problem(f: dataclasses.Field, value: Any) -> str | None:
    """Why ``value`` is not allowed in the field ``f`` (not one of its choices, out of its bounds), or None."""
    meta = f.metadata
    if isinstance(value, float) and value != value:
        return "NaN is not allowed"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return f"{value} is not a finite number"
    if meta.get("many"):
        bad = [v for v in value if v not in meta["choices"]]
        return f"{bad[0]!r} is not one of {', '.join(meta['choices'])}" if bad else None
    if "choices" in meta and value not in meta["choices"]:
        return f"{value!r} is not one of {', '.join(meta['choices'])}"
    if value is not None and meta.get("low") is not None and value < meta["low"]:
        return f"{value!r} is below the minimum {meta['low']}"
    if value is not None and meta.get("high") is not None and value > meta["high"]:
        return f"{value!r} is above the maximum {meta['high']}"
    return None


def check(obj: Any) -> None:
    """SettingError naming the first field of the dataclass instance ``obj`` outside its choices or bounds."""
    for f in dataclasses.fields(obj):
        why = problem(f, getattr(obj, f.name))
        if why:
            raise SettingError(f"{f.name}: {why}")
