"""Argument types shared by the command groups: each rejects a bad value with argparse's own message."""

from __future__ import annotations

import argparse
import math


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def year(text: str) -> int:
    value = int(text)
    if not 1000 <= value <= 9999:
        raise argparse.ArgumentTypeError(f"must be a 4-digit year, got {text}")
    return value
