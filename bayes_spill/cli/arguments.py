"""Argument types shared by the command groups: each rejects a bad value with argparse's own message."""

from __future__ import annotations

import argparse
import math

from bayes_spill.config import MAX_CHAINS, MAX_DRAWS, MAX_SEED


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


def _bounded(text: str, least: int, most: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not least <= value <= most:
        raise argparse.ArgumentTypeError(f"must be {what} from {least:,} to {most:,}, got {text}")
    return value


def seed(text: str) -> int:
    """A random seed: 0 to config.MAX_SEED (what nutpie and the posterior file hold)."""
    return _bounded(text, 0, MAX_SEED, "a whole number")


def draws(text: str) -> int:
    """Draws per chain: 1 to config.MAX_DRAWS (whether they fit in memory is checked once the
    model's size is known)."""
    return _bounded(text, 1, MAX_DRAWS, "a whole number")


def tune(text: str) -> int:
    """Tuning steps per chain: 0 to config.MAX_DRAWS."""
    return _bounded(text, 0, MAX_DRAWS, "a whole number")


def chains(text: str) -> int:
    """Chains: 1 to config.MAX_CHAINS."""
    return _bounded(text, 1, MAX_CHAINS, "a whole number")


def ess(text: str) -> int:
    """An effective-sample-size target: 1 to config.MAX_DRAWS."""
    return _bounded(text, 1, MAX_DRAWS, "a whole number")
