"""Hypothesis settings of the fuzz tests, scaled by `make fuzz`.

`make fuzz` sets FUZZ_SCALE (e.g. 20): the fuzz tests run that many times more examples, drawn
afresh each run instead of the fixed, derandomized set that CI runs.
"""

import os

from hypothesis import HealthCheck, settings

FUZZ_SCALE = int(os.environ.get("FUZZ_SCALE", "1"))


def fuzz(examples: int) -> settings:
    """Hypothesis settings of a fuzz test: `examples` fixed examples in CI, FUZZ_SCALE times as
    many fresh ones under `make fuzz`."""
    return settings(
        max_examples=examples * FUZZ_SCALE,
        deadline=None,
        derandomize=FUZZ_SCALE == 1,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
