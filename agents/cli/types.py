"""Argument types that refuse what no command can use (a negative radius, NaN, zero cycles) with a one-line
error naming the flag, instead of passing it on to fail deep inside an engine or, worse, to succeed."""

from __future__ import annotations

import argparse
import math
from typing import Callable


def _number(kind: type, low: float, strict: bool, what: str) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__name__ = kind.__name__
    return parse


positive_float = _number(float, 0.0, True, "a positive number")
non_negative_float = _number(float, 0.0, False, "a number >= 0")
positive_int = _number(int, 0, True, "a whole number >= 1")
non_negative_int = _number(int, 0, False, "a whole number >= 0")


def positive_int_list(text: str) -> list[int]:
    """``8,32,128``: whole numbers >= 1, comma-separated."""
    try:
        return [positive_int(part) for part in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers >= 1") from None


def data_source(args: argparse.Namespace):
    """``--data`` (a dataset directory or table) or ``--pool`` (committed tables by name: a list of paths),
    else None (the command's default)."""
    if getattr(args, "pool", None):
        if getattr(args, "data", None):
            from discovery.errors import DiscoveryError

            raise DiscoveryError("give --data or --pool, not both")
        from discovery.pool import pool_tables

        return pool_tables(args.pool)
    return getattr(args, "data", None)


POOL_HELP = ("committed pool tables by name: design (the design space, no charges), design-eqeq (the design space, "
             "EQeq charges), core (CoRE MOF 2019-ASR), or design,core (both)")
