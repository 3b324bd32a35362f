"""Hypothesis settings of the property tests (decisions "Tests": ``deadline=None``, derandomized
in CI, all property tests together within 2 minutes).

Profile ``ci`` (selected when ``CI`` is set, or with ``HYPOTHESIS_PROFILE=ci``) is derandomized:
every run draws the same examples. Locally the ``dev`` profile draws new ones each run.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,
}
settings.register_profile("ci", derandomize=True, database=None, **_COMMON)
settings.register_profile("dev", **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))
