"""When each API key was last used, recorded without a database write per request: a request
notes its key's use in memory; a background thread writes the uses noted to the gallery at most
once every ``every`` seconds (and once more when the service stops), so ``keys list`` is at
most that late. Per process: each worker of ``serve --workers N`` writes its own (the stored
time never moves back); a killed process loses its last unwritten minute."""

from __future__ import annotations

import logging
import threading
import time

from facesys.errors import FacesysError

RECORD_EVERY_S = 60.0
log = logging.getLogger("facesys.service")


class KeyUses:
    """Uses noted since the last write, by key hash (one entry per key used: bounded by the keys)."""

    def __init__(self, gallery, every: float = RECORD_EVERY_S):
        self.gallery, self.every = gallery, every
        self._noted: dict[str, float] = {}
        self._lock = threading.Lock()

    def note(self, key_hash: str, at: float | None = None) -> None:
        with self._lock:
            self._noted[key_hash] = time.time() if at is None else at

    def write(self) -> None:
        """Write the uses noted (best effort: a gallery that cannot be written keeps them for the next try)."""
        with self._lock:
            uses, self._noted = self._noted, {}
        if not uses:
            return
        try:
            self.gallery.record_key_uses(uses)
        except FacesysError as exc:
            log.warning("cannot record when API keys were last used: %s", exc)
            with self._lock:
                self._noted = uses | self._noted

    def follow(self, stopping: threading.Event) -> None:
        """Write every ``every`` seconds until ``stopping`` is set (a thread's target)."""
        while not stopping.wait(self.every):
            try:
                self.write()
            except Exception:  # never let the thread die: the next minute tries again
                log.exception("recording when API keys were last used failed")
