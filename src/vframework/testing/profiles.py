"""Hypothesis profiles for the conformance kit.

``default`` keeps ``tox`` fast; ``thorough`` is what the ``invariants`` tox env and
``vframework check --profile thorough`` run; ``ci`` is ``default`` without a database.
Select one for pytest with ``--hypothesis-profile`` or ``VFRAMEWORK_HYPOTHESIS_PROFILE``.
"""

from __future__ import annotations

import os
from typing import TypedDict

from hypothesis import HealthCheck, settings

__all__ = ["PROFILES", "load_profile", "settings_for"]


class _Common(TypedDict):
    deadline: None
    suppress_health_check: list[HealthCheck]


_COMMON: _Common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

PROFILES = {
    "default": settings(max_examples=30, stateful_step_count=25, **_COMMON),
    "ci": settings(max_examples=30, stateful_step_count=25, database=None, **_COMMON),
    "thorough": settings(max_examples=400, stateful_step_count=60, **_COMMON),
}
for _name, _settings in PROFILES.items():
    settings.register_profile(f"vframework-{_name}", _settings)


def settings_for(profile: str) -> settings:
    """The settings of a named profile (``default``, ``ci`` or ``thorough``)."""
    try:
        return PROFILES[profile]
    except KeyError:
        raise KeyError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}") from None


def load_profile(default: str = "default") -> str:
    """Load the profile named by ``VFRAMEWORK_HYPOTHESIS_PROFILE`` (or ``default``) globally."""
    name = os.environ.get("VFRAMEWORK_HYPOTHESIS_PROFILE", default)
    settings_for(name)
    settings.load_profile(f"vframework-{name}")
    return name
