"""Retention, mixed into :class:`~facesys.gallery.store.base.TruthStore`: how long unnamed
library faces and the audit log are kept, and the deletion of what is older, by every writer.

Two periods, stored as meta settings (:data:`RETENTION_SETTINGS`, text such as ``90d``; no schema
change): ``library``, for unnamed library faces (no person: neither named nor attached
automatically), counted from when their photo was read and they were found
(``library_photos.scanned_at``: set when the file is recorded or re-read because its bytes
changed; a touch or a move keeps it, so neither extends their life); and ``audit``, for audit events, counted
from their time (``audit.at``). Enrolled faces and named or attached library faces are never
deleted by retention: only by removing them.

Enforcement: every write transaction of every backend calls :meth:`Retention._retain` just before
it commits (the one place all writes pass through: ``transaction()``), so any writer of any
process deletes what has expired, INSIDE that transaction: a kill leaves the gallery either
before or after, never between. It is cheap: at most once per :data:`CHECK_INTERVAL_S` per
gallery per process (and always right after the periods are set), one meta read, and a DELETE
of the rows older than the period (nothing else when none is: no erasure, no VACUUM). When
something was deleted, the transaction is marked for erasure (ERASE_PENDING), writes one
``retention`` audit event with counts only (after deleting the expired events, so it is never
deleted itself), and the backend calls :meth:`Retention._erase_retained` after the commit, which
erases the freed space as removals do (a failure there leaves the mark, finished by the next
open for writing or by ``gallery repair``).

What an expired face leaves behind is what a removed person's erased library face leaves
(:meth:`~facesys.gallery.store.library.PhotoLibrary._remember_erased`): a photo that keeps other
(named) faces keeps its row, with the expired faces' positions in ``erased``, so reading the same
bytes again leaves them out; a photo left without faces is deleted, only its sha256 and face count
stay in ``library_erased``, and a scan skips those bytes (status "erased"). A file whose bytes
change is a new photo, and its faces are found again.
"""

from __future__ import annotations

import contextlib
import time
from abc import abstractmethod
from collections.abc import Mapping

from facesys.durations import UNITS, parse_duration
from facesys.errors import GalleryError, InvalidValueError
from facesys.gallery.store.core import StoreCore

RETENTION_SETTINGS = {"library": "retention_library", "audit": "retention_audit"}  # what -> meta key
MAX_PERIOD_S = 1000 * UNITS["y"]
CHECK_INTERVAL_S = 60.0  # a gallery is checked at most this often by one process
_due: dict[str, float] = {}  # gallery location -> monotonic time of its next check in this process


def parse_period(value: object, what: str) -> str:
    """``value`` ("90d", " 1Y ") as a stored period ("90d", "1y"): a whole number above 0 and a unit
    (facesys/durations.py), at most 1000 years. InvalidValueError naming ``what`` otherwise."""
    try:
        parse_duration(value, f"{what} retention", at_most_s=MAX_PERIOD_S)
    except InvalidValueError as exc:
        raise InvalidValueError(f"{exc}, or off", parameter=what) from None
    text = value.strip()  # type: ignore[union-attr]  (a str: parse_duration accepted it)
    return f"{int(text[:-1])}{text[-1].lower()}"


def period_seconds(period: str) -> float:
    """The seconds of a stored period (:func:`parse_period`'s form)."""
    return parse_duration(period)


def now() -> float:
    """The time retention compares with (seconds since the epoch); tests move it."""
    return time.time()


class Retention(StoreCore):
    """The retention periods of a TruthStore and their enforcement (see the module's docstring)."""

    _retained = False  # whether the transaction committing now deleted expired rows (then erased after)

    def retention(self) -> dict[str, str | None]:
        """The periods in force: {"library": "90d" or None (kept for ever), "audit": ...}. A stored
        value that is not a period (edited by hand) counts as none."""
        meta = self.meta()
        periods: dict[str, str | None] = {}
        for what, key in RETENTION_SETTINGS.items():
            try:
                periods[what] = parse_period(meta[key], what) if key in meta else None
            except InvalidValueError:
                periods[what] = None
        return periods

    def set_retention(self, periods: Mapping[str, str | None]) -> dict[str, str | None]:
        """Set the periods of ``periods`` ("library", "audit" -> a period, or None: kept for ever;
        the others stay), in one transaction with a ``set_retention`` audit event, which also
        deletes what is older already. Returns the periods now in force. InvalidValueError for an
        unknown kind or a bad period (nothing changed)."""
        unknown = sorted(set(periods) - set(RETENTION_SETTINGS))
        if unknown:
            raise InvalidValueError(f"retention of {unknown[0]!r}: choose from {', '.join(RETENTION_SETTINGS)}")
        values = {what: None if value is None else parse_period(value, what) for what, value in periods.items()}
        with self.transaction():
            cleared = [RETENTION_SETTINGS[what] for what, value in values.items() if value is None]
            if cleared:
                self._execute("DELETE FROM meta WHERE key = ANY(?)", (cleared,))
            self._set_meta({RETENTION_SETTINGS[what]: value for what, value in values.items() if value is not None})
            if values:
                self._audit("set_retention", detail=values)
            _due.pop(self.location, None)  # enforced now, in this transaction
        return self.retention()

    def _retain(self) -> None:
        """Inside every write transaction, just before it commits (called by
        ``StoreCore.transaction()``): delete the unnamed library faces and audit events older than their
        periods, at most once per CHECK_INTERVAL_S per gallery in this process."""
        self._retained = False
        if time.monotonic() < _due.get(self.location, 0.0):
            return
        _due[self.location] = time.monotonic() + CHECK_INTERVAL_S
        periods = {what: period for what, period in self.retention().items() if period is not None}
        if not periods:
            return
        started = now()
        photos, faces, events = 0, 0, 0
        if "library" in periods:
            rows = self._rows(
                "DELETE FROM library_faces WHERE person_id IS NULL AND photo_id IN "
                "(SELECT id FROM library_photos WHERE scanned_at < ?) RETURNING id, photo_id, frame, box",
                (started - period_seconds(periods["library"]),),
            )
            photos, faces = self._remember_erased(rows), len(rows)
        if "audit" in periods:  # before the event below is written: it is never deleted with them
            events = self._execute("DELETE FROM audit WHERE at < ?", (started - period_seconds(periods["audit"]),))
        if faces or events:
            self._audit("retention", detail={"library_faces": faces, "library_photos": photos, "audit_events": events})
            self._erase_later()
            self._retained = True

    def _erase_retained(self) -> None:
        """After a write transaction committed (called by ``StoreCore.transaction()``): erase
        the space freed by what :meth:`_retain` deleted. A failure leaves ERASE_PENDING set, for
        the next open for writing or ``gallery repair``: the write itself succeeded."""
        if self._retained:
            self._retained = False
            with contextlib.suppress(GalleryError):
                self.erase_freed_pages()

    @abstractmethod
    def _remember_erased(self, rows: list[tuple]) -> int:
        """Inside a transaction: after library faces were deleted (rows of id, photo id, frame, box),
        remember them as :meth:`remove_person` says; returns how many photos were left without
        faces (and deleted). Provided by :class:`~facesys.gallery.store.library.PhotoLibrary`."""
