"""A gallery's administration, mixed into :class:`~facesys.gallery.store.base.TruthStore`: the
service's API keys (by hash), what a repair carries from a damaged store into the rebuilt one
(salvage and restore), and check, stats and clean-up; over the primitives and core workflow of
:class:`~facesys.gallery.store.core.StoreCore`.
"""

from __future__ import annotations

import contextlib
import json
import time

import numpy as np

from facesys.errors import ConflictError, GalleryError, UnknownKeyError
from facesys.gallery.audit import AuditEvent
from facesys.gallery.store.core import StoreCore
from facesys.gallery.store.records import (
    FACE_COLUMNS,
    FACES_FROM,
    KEYS_REQUIRED,
    MAX_SALVAGE_ID,
    Carried,
    FaceRecord,
    face_problems,
    library_face_problems,
    salvaged_face,
)
from facesys.gallery.store.rules import check_key_spelling, check_new_key, key_name
from facesys.keys import ApiKey, parse_rate

_KEY_COLUMNS = "name, scope, created_at, revoked_at, expires_at, last_used_at, rate"


class Administration(StoreCore):
    """API keys, repair, check and stats of a TruthStore (see the module's docstring)."""

    # -- API keys and what repair carries ----------------------------------------------------------

    def add_api_key(self, name: str, scope: str, key_hash: str, expires_at: float | None = None, rate: str | None = None) -> None:
        """Store a new key by its sha256 hash (never the key), expiring at ``expires_at`` (None:
        never), limited to ``rate`` (:func:`~facesys.keys.parse_rate`; None: no limit).
        GalleryError when an active key has that name already, or the name, scope or rate is
        refused (:func:`check_new_key`)."""
        name = check_new_key(name, scope, key_hash)
        rate = None if rate is None else parse_rate(rate)
        row = {"name": name, "scope": scope, "key_hash": key_hash, "created_at": time.time()}
        limits = {"expires_at": None if expires_at is None else float(expires_at), "rate": rate}
        with self.transaction():
            if self._active_key(name) is not None:
                raise ConflictError(f"an active key named {name!r} exists already in {self.location}; revoke it first")
            check_key_spelling(name, [row[0] for row in self._rows("SELECT DISTINCT name FROM api_keys")], self.location)
            self._insert("api_keys", [row | limits])
            self._set_meta({KEYS_REQUIRED: 1})
            self._audit("key_create", detail={"key": name, "scope": scope} | {k: v for k, v in limits.items() if v is not None})

    def _active_key(self, name: str) -> tuple[int, str] | None:
        """(row id, scope) of the active key ``name``, or None."""
        return self._row("SELECT id, scope FROM api_keys WHERE name = ? AND revoked_at IS NULL", (name,))

    def api_keys(self) -> list[ApiKey]:
        """Every key, active and revoked, oldest first."""
        return [ApiKey(*row) for row in self._rows(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")]

    def api_key_for_hash(self, key_hash: str, any_state: bool = False) -> ApiKey | None:
        """The key with this hash that opens the service now (active, not expired), or None; with
        ``any_state``, the key whatever its state (so the service can log why it refused one).
        One indexed lookup: called once per request."""
        row = self._row(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,))
        key = ApiKey(*row) if row else None
        return key if key is None or any_state or key.refusal() is None else None

    def has_api_keys(self) -> bool:
        """Whether any key is usable (active and not expired)."""
        now = time.time()
        usable = "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)"
        return bool(self._row(f"SELECT COUNT(*) FROM api_keys WHERE {usable}", (now,))[0])

    def record_key_uses(self, uses: dict[str, float]) -> None:
        """Record when keys (by hash) were last used, in one transaction, never moving a time back
        (several processes record their own); no audit event: a use changes nothing."""
        rows = [(at, key_hash, at) for key_hash, at in uses.items()]
        if rows:
            with self.transaction():
                self._execute_many(
                    "UPDATE api_keys SET last_used_at = ? WHERE key_hash = ? AND (last_used_at IS NULL OR last_used_at < ?)", rows
                )

    def keys_required(self) -> bool:
        """Whether requests must carry a key: the gallery has or ever had one (KEYS_REQUIRED is set
        with the first key; a gallery from before counts its revoked keys)."""
        return self.setting(KEYS_REQUIRED) is not None or bool(self.api_keys())

    def revoke_api_key(self, name: str) -> None:
        """Mark the active key ``name`` revoked (now); UnknownKeyError when there is none."""
        name = key_name(name)
        with self.transaction():
            found = self._active_key(name)
            if found is None:
                raise UnknownKeyError(f"no active key named {name!r} in {self.location}")
            self._execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (time.time(), found[0]))
            self._audit("key_revoke", detail={"key": name, "scope": found[1]})

    def salvage_keys_and_log(self) -> Carried:
        """For a damaged store: the API keys and audit events that can still be read (best effort:
        never raises for damage)."""
        keys = []
        for name, scope, key_hash, created, *times, rate in self._salvage_rows(
            "api_keys", "name, scope, key_hash, created_at, revoked_at, expires_at, last_used_at, rate"
        ):
            with contextlib.suppress(GalleryError, TypeError, ValueError):
                check_new_key(name, scope, key_hash)
                revoked, expires, used = (None if at is None else float(at) for at in times)
                rate = None if rate is None else parse_rate(rate)
                keys.append((ApiKey(name, scope, float(created), revoked, expires, used, rate), key_hash))
        names: dict[int, str | None] = {}
        events = []
        for at, actor, action, person_id, detail in self._salvage_rows("audit", "at, actor, action, person_id, detail"):
            with contextlib.suppress(TypeError, ValueError, RecursionError):
                parsed = json.loads(detail)
                if not (isinstance(actor, str) and isinstance(action, str) and isinstance(parsed, dict)):
                    continue
                person = None if person_id is None else self._salvaged_name(int(person_id), names)
                events.append(AuditEvent(float(at), actor, action, person, parsed, None if person_id is None else int(person_id)))
        return Carried(keys, events)

    def _salvage_rows(self, table: str, columns: str) -> list[tuple]:
        """The rows of ``table`` (id order) that can still be read: all at once, else one by one by
        id (1 up to the highest id readable), skipping those whose read fails."""
        try:
            return self._rows(f"SELECT {columns} FROM {table} ORDER BY id")
        except GalleryError:
            pass
        try:
            highest = min(int(self._row(f"SELECT MAX(id) FROM {table}")[0] or 0), MAX_SALVAGE_ID)
        except (GalleryError, TypeError, ValueError):
            return []
        rows = []
        for row_id in range(1, highest + 1):
            with contextlib.suppress(GalleryError):
                if (row := self._row(f"SELECT {columns} FROM {table} WHERE id = ?", (row_id,))) is not None:
                    rows.append(row)
        return rows

    def _salvaged_name(self, person_id: int, names: dict[int, str | None]) -> str | None:
        """The name of person ``person_id`` read from a damaged store, or None when unreadable
        (or removed); ``names`` caches person id -> name."""
        if person_id not in names:
            try:
                found = self._row("SELECT name FROM people WHERE id = ?", (person_id,))
                names[person_id] = found[0] if found and isinstance(found[0], str) else None
            except GalleryError:
                names[person_id] = None
        return names[person_id]

    def restore_keys_and_log(self, carried: Carried, detail: dict) -> None:
        """Into a store rebuilt from a damaged one: add ``carried`` keys (those whose hash or active
        name is not taken) and events, and a "repair" event with ``detail``, in one transaction.
        A carried event's person gets the id of the person of that name here; a person not here
        (removed, or lost to the damage) gets a new id, one per old id, so it names nobody."""
        with self.transaction():
            own = self._rows("SELECT id, at, actor, action, person_id, detail FROM audit ORDER BY id")
            for key, key_hash in carried.keys:
                taken = self._row("SELECT 1 FROM api_keys WHERE key_hash = ?", (key_hash,))
                if taken or (key.active and self._active_key(key.name) is not None):
                    continue
                row = {"name": key.name, "scope": key.scope, "key_hash": key_hash, "created_at": key.created_at}
                times = {"revoked_at": key.revoked_at, "expires_at": key.expires_at, "last_used_at": key.last_used_at}
                self._insert("api_keys", [row | times | {"rate": key.rate}])
                self._set_meta({KEYS_REQUIRED: 1})
            new_ids: dict[int, int] = {}
            for event in carried.events:
                if event.person_id is not None and event.person_id not in new_ids:
                    here = self._person_row(event.person) if event.person is not None else None
                    new_ids[event.person_id] = here[0] if here else self._unused_id("people")
                person_id = None if event.person_id is None else new_ids[event.person_id]
                self._write_event(AuditEvent(event.at, event.actor, event.action, None, event.detail, person_id))
            # the log is read in the order written: the history carried over goes before the rebuild's own events
            self._execute("DELETE FROM audit WHERE id = ANY(?)", ([row[0] for row in own],))
            self._execute_many(
                "INSERT INTO audit(at, actor, action, person_id, detail) VALUES (?, ?, ?, ?, ?)", [row[1:] for row in own]
            )
            self._audit("repair", detail=detail)

    # -- check, repair and stats -------------------------------------------------------------------

    def _check_rows(self, problems: list[str]) -> None:
        """Append to ``problems`` embeddings of the wrong size, not finite or not unit length, faces
        of another model, crops that are not JPEG, people without faces (those found before a read
        failed stay)."""
        meta = self.meta()
        dim, model_id = int(meta.get("dim", 0)), meta.get("model_id")
        for table, found in (("faces", face_problems), ("library_faces", library_face_problems)):
            head = "crop" if self.encrypted else "substr(crop, 1, 2)"  # a sealed crop opens whole
            for rows in self._stream(f"SELECT id, embedding, model_id, {head} FROM {table} ORDER BY id"):
                for face_id, blob, face_model, crop in rows:
                    problems += found(face_id, blob, face_model, crop[:2], dim, model_id)
            if table == "faces":
                empty = self._rows("SELECT name FROM people p WHERE NOT EXISTS (SELECT 1 FROM faces f WHERE f.person_id = p.id)")
                problems += [f"person {name!r} has no face" for (name,) in sorted(empty)]

    def salvage(self) -> tuple[list[tuple[FaceRecord, np.ndarray, bytes]], int]:
        """For a damaged store: every face that can still be read and parsed, as (record, (dim,)
        float32 unit embedding, JPEG crop) in id order, and how many face rows could not be.
        Raises GalleryError only when the metadata (model) itself is unreadable. By default every
        row is read (a database on a server is not damaged the way a file is)."""
        with self.reading():
            meta = self.meta()
            dim, model_id = int(meta.get("dim", 0)), meta.get("model_id")
            rows, failed = [], 0
            for batch in self._stream(f"SELECT {FACE_COLUMNS}, f.embedding, f.crop FROM {FACES_FROM} ORDER BY f.id"):
                for row in batch:
                    parsed = salvaged_face(row, dim, model_id)
                    if parsed is None:
                        failed += 1
                    else:
                        rows.append(parsed)
        return rows, failed

    def set_aside(self, suffix: str) -> str:
        """Close the store and move its data aside, kept whole and unchanged, so a new store can
        be created at the same location (a damaged store is rebuilt this way); returns where it
        now lies. GalleryError, with nothing moved, when it cannot be: by default it is not
        applicable (a database on a server is not a file to move)."""
        raise GalleryError(f"{self.location}: setting the database aside is not applicable to this gallery; nothing was moved")

    def remove_empty_people(self) -> int:
        """Delete people left without faces (whoever left them); returns how many."""
        with self.transaction():
            count = self._execute("DELETE FROM people WHERE NOT EXISTS (SELECT 1 FROM faces f WHERE f.person_id = people.id)")
            self._detach_orphans()
            if count:
                self._bump_generation()
                self._audit("remove_empty_people", detail={"people": count})
        return count

    def stats(self) -> dict[str, object]:
        """People, faces, model, dimension, schema version, size and the library's counts."""
        with self.reading():
            meta = self.meta()
            people, faces, *library = self._row(
                "SELECT (SELECT COUNT(*) FROM people), (SELECT COUNT(*) FROM faces), (SELECT COUNT(*) FROM library_photos), "
                "(SELECT COUNT(*) FROM library_faces), (SELECT COUNT(*) FROM library_faces WHERE person_id IS NULL)"
            )
            size = self._database_bytes()
        return {
            "gallery": self.location,
            "people": people,
            "faces": faces,
            "model_id": meta.get("model_id"),
            "dim": int(meta["dim"]) if "dim" in meta else None,
            "gallery_schema_version": int(meta["schema_version"]),
            "database_bytes": size,
        } | dict(zip(("library_photos", "library_faces", "library_unnamed_faces"), library, strict=True))
