"""Hypothesis profiles for the fuzz tests: bounded in CI, long on demand.

    HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/hostile -q -p no:cacheprovider

`ci` (the default) runs 300 examples per property; `long` runs 20,000 (tens of minutes).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,  # 2 shared cores: per-example timing is noise
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    "database": None,  # no .hypothesis/ folder in the repo
}
settings.register_profile("ci", max_examples=300, **_COMMON)
settings.register_profile("long", max_examples=20_000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
