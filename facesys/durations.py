"""Lengths of time written the short way: ``30d``, ``12h``, ``1y`` (one rule for every option
that takes one, such as ``keys create --expires``)."""

from __future__ import annotations

import re

from facesys.errors import InvalidValueError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}  # a year: 365 days
_DURATION = re.compile(r"\s*([0-9]{1,9})\s*([smhdwy])\s*")


def parse_duration(text: object, what: str = "duration") -> float:
    """Seconds in ``text``: a whole number > 0 and a unit (s, m, h, d, w or y; ``90d``).
    InvalidValueError naming ``what`` otherwise."""
    found = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if found is None or int(found[1]) == 0:
        raise InvalidValueError(f"{what} {text!r}: use a whole number > 0 and a unit (s, m, h, d, w, y), e.g. 30d")
    return float(int(found[1]) * UNITS[found[2]])
