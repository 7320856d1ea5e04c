"""Shared test set-up: Hypothesis profiles for the fuzz suites.

Profiles: "fast" (the default: the fast suite's example count) and "slow" (>= 1,000 examples:
the fuzz tests marked ``slow`` apply it with ``settings(settings.get_profile("slow"))``).
``HYPOTHESIS_PROFILE=slow`` makes every fuzz test use the slow count. Neither profile keeps an
example database (nothing is written to the working tree) and neither has a deadline (two cores
shared with sampling jobs make timings noisy).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FAST_EXAMPLES = 120
SLOW_EXAMPLES = 1000

_COMMON = dict(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
# The fast suite is derandomized so CI is repeatable; the slow suite searches with fresh seeds.
settings.register_profile("fast", max_examples=FAST_EXAMPLES, derandomize=True, **_COMMON)
settings.register_profile("slow", max_examples=SLOW_EXAMPLES, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))
