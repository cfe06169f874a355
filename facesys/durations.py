"""Lengths of time written the short way: ``30d``, ``12h``, ``1y`` (one rule for every option
that takes one: ``keys create --expires``, ``gallery retention --library/--audit``)."""

from __future__ import annotations

import re

from facesys.errors import InvalidValueError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}  # a year: 365 days
_DURATION = re.compile(r"\s*([0-9]{1,9})\s*([smhdwy])\s*", re.IGNORECASE)


def parse_duration(text: object, what: str = "duration", at_most_s: float | None = None) -> float:
    """Seconds in ``text``: a whole number > 0 and a unit (s, m, h, d, w or y; ``90d``), at most
    ``at_most_s`` when given. InvalidValueError naming ``what`` otherwise."""
    found = _DURATION.fullmatch(text) if isinstance(text, str) else None
    seconds = float(int(found[1]) * UNITS[found[2].lower()]) if found else 0.0
    if seconds <= 0 or (at_most_s is not None and seconds > at_most_s):
        limit = f", at most {short_form(at_most_s)}" if at_most_s is not None else ""
        raise InvalidValueError(f"{what} {text!r}: use a whole number above 0 and a unit (s, m, h, d, w, y), e.g. 30d{limit}")
    return seconds


def short_form(seconds: float) -> str:
    """``seconds`` in the largest unit that divides them: ``90d``, ``1y``, ``45s``."""
    for unit, size in sorted(UNITS.items(), key=lambda item: -item[1]):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"
