"""Argument types the benchmarks share: a count or a rate of zero or less is refused when the
command line is read, not found by a crash (or, for an interval, an endless loop) after minutes
of setting up."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", int, float)


def positive(kind: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse ``type``: ``kind`` of the text, above zero."""

    def convert(text: str) -> T:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value

    convert.__name__ = kind.__name__  # argparse names it in "invalid int value: 'x'"
    return convert
