"""The core of every truth store (:class:`StoreCore`, completed into
:class:`~facesys.gallery.store.base.TruthStore` by the photo library and administration mixins):
the primitives a backend provides, and the workflow of identity, settings, change tracking, the
audit log, people and faces, in SQL written once for every backend.
"""

from __future__ import annotations

import contextlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from functools import partial
from typing import Self

import numpy as np

from facesys.errors import (
    ChangedMeanwhileError,
    DuplicatePhotoError,
    GalleryError,
    GalleryKeyError,
    GalleryVersionError,
    KeyMissingError,
    NameConflictError,
    UnknownPersonError,
)
from facesys.gallery.audit import AuditEvent, current_actor
from facesys.gallery.sealing import SEALED, SEALED_TEXT, GalleryKey, Sealer
from facesys.gallery.store.records import (
    ENCRYPTION,
    ERASE_PENDING,
    FACE_COLUMNS,
    FACES_FROM,
    Changes,
    FaceRecord,
    NewFace,
    detail_json,
    embedding_bytes,
    face_record,
    fold_changes,
    geometry_json,
)
from facesys.gallery.store.rules import id_list, name_key, normalize_name, possible_ids, valid_id

STREAM_BYTES = 16 * 2**20  # about this many bytes per chunk when reading every embedding
# Biometric values of an encrypted gallery (see facesys/gallery/sealing.py): every bytes value
# (crops, embeddings) and these text columns; SEALED_COLUMNS: every such column, for re-sealing.
SEALED_TEXT_COLUMNS = frozenset({"landmarks"})
SEALED_COLUMNS = {"faces": ("crop", "embedding", "landmarks"), "library_faces": ("crop", "embedding", "landmarks")}
RESEAL_BATCH = 500  # rows re-sealed per statement


class StoreCore(ABC):
    """The primitives a backend provides (abstract) and the core workflow over them; see
    :class:`~facesys.gallery.store.base.TruthStore`, the whole interface."""

    location: str  # for messages: a folder, or a database URL without its password
    _changed = False  # whether the open write transaction wrote an audit event
    _sealer: Sealer | None = None  # seals and opens biometric values: set when an encrypted gallery is unlocked
    _encryption: str | None = None  # meta ENCRYPTION as this store was opened (None: not encrypted)
    _unlocked = False  # whether _unlock ran: from then on every write transaction checks the encryption first

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- backend: connection, transactions, queries ------------------------------------------------

    @classmethod
    @abstractmethod
    def exists(cls, location: str) -> bool:
        """Whether a gallery of this backend exists at ``location`` (creates nothing)."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _write_transaction(self) -> AbstractContextManager:
        """The backend's write transaction: writers queue; committed on leaving, rolled back on an
        exception (:meth:`transaction` is what the rules use)."""

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction: writers queue; committed on leaving, rolled back on an exception.
        What every writer does, written once here for every backend: it first checks that the
        gallery's encryption is still what this store opened (:meth:`_check_sealing`), deletes
        what has expired just before it commits (:meth:`_retain`) and erases that after
        (:meth:`_erase_retained`)."""
        with self._write_transaction():
            self._check_sealing()
            yield
            self._retain()
        self._erase_retained()

    @abstractmethod
    def _retain(self) -> None:
        """Inside a write transaction, before it commits: delete what has expired; provided by
        :class:`~facesys.gallery.store.retention.Retention`."""

    @abstractmethod
    def _erase_retained(self) -> None:
        """After a write transaction committed: erase what :meth:`_retain` deleted; provided by
        :class:`~facesys.gallery.store.retention.Retention`."""

    @abstractmethod
    def reading(self) -> AbstractContextManager[None]:
        """One read snapshot: every query inside sees the same committed state."""

    @abstractmethod
    def _fetch(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """Every row of ``sql`` (``?`` placeholders; ``= ANY(?)`` takes a list); bytes as bytes."""

    @abstractmethod
    def _run(self, sql: str, params: Sequence = ()) -> int:
        """Run one statement; returns how many rows it changed."""

    @abstractmethod
    def _run_many(self, sql: str, rows: list[Sequence]) -> None:
        """Run one statement for each of ``rows``."""

    @abstractmethod
    def _fetch_stream(self, sql: str, size: int) -> Iterator[list[tuple]]:
        """The rows of ``sql``, ``size`` at a time, in one read snapshot (big tables)."""

    @abstractmethod
    def _insert_rows(self, table: str, rows: list[dict[str, object]]) -> list[int]:
        """Insert ``rows`` (column -> value) into ``table``; returns their new ids, never used before."""

    # -- every query passes here: biometric values are sealed on the way in, opened on the way out --

    def _rows(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """Every row of ``sql`` (``?`` placeholders; ``= ANY(?)`` takes a list); bytes as bytes, opened."""
        return self._opened(self._fetch(sql, self._sealed(params)))

    def _row(self, sql: str, params: Sequence = ()) -> tuple | None:
        """The first row of ``sql``, or None."""
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _execute(self, sql: str, params: Sequence = ()) -> int:
        """Run one statement; returns how many rows it changed."""
        return self._run(sql, self._sealed(params))

    def _execute_many(self, sql: str, rows: list[Sequence]) -> None:
        """Run one statement for each of ``rows``."""
        self._run_many(sql, [self._sealed(row) for row in rows] if self._sealer is not None else rows)

    def _stream(self, sql: str, size: int = 500) -> Iterator[list[tuple]]:
        """The rows of ``sql``, ``size`` at a time, in one read snapshot (big tables), opened."""
        for batch in self._fetch_stream(sql, size):
            yield self._opened(batch)

    def _insert(self, table: str, rows: list[dict[str, object]]) -> list[int]:
        """Insert ``rows`` (column -> value) into ``table``; returns their new ids, never used before.
        Bytes and the SEALED_TEXT_COLUMNS are sealed in an encrypted gallery."""
        if self._sealer is not None:
            rows = [{column: sealed_value(self._sealer, column, value) for column, value in row.items()} for row in rows]
        return self._insert_rows(table, rows)

    def _sealed(self, params: Sequence) -> Sequence:
        """Query parameters as stored: every bytes value sealed in an encrypted gallery (bytes are
        always biometric: crops and embeddings)."""
        if self._sealer is None:
            return params
        return [sealed_value(self._sealer, None, value) for value in params]

    def _opened(self, rows: list[tuple]) -> list[tuple]:
        """Rows as read, their sealed values opened. In a gallery opened without a key, the first
        bytes value is checked: one that is sealed means another process encrypted the gallery
        since this one opened it (GalleryKeyError, never sealed bytes taken for data)."""
        if self._sealer is None:
            if rows:
                first = next((value for value in rows[0] if isinstance(value, bytes)), None)
                if first is not None and first.startswith(SEALED):
                    raise self._encrypted_meanwhile()
            return rows
        opened = self._opened_value
        return [tuple(opened(value) for value in row) for row in rows]

    def _opened_value(self, value: object) -> object:
        if isinstance(value, (bytes, memoryview)):
            return self._sealer.open(value)
        if isinstance(value, str) and value.startswith(SEALED_TEXT):
            return self._sealer.open_text(value)
        return value

    def _encrypted_meanwhile(self) -> GalleryKeyError:
        return GalleryKeyError(
            f"{self.location}: the gallery was encrypted, re-keyed or decrypted by another process since this one opened it; "
            "open it again with its key (--key-file or $FACESYS_KEY_FILE)",
            parameter="key_file",
        )

    @abstractmethod
    def _unused_id(self, table: str) -> int:
        """An id of ``table`` (people) that nobody has had nor will have."""

    @abstractmethod
    def erase_freed_pages(self) -> None:
        """Make deleted rows unrecoverable from the store's files, then clear ERASE_PENDING: every
        removal marks it in its transaction and calls this after commit; repair calls it again, and
        so does opening a SQLite gallery for writing when the mark is there (:meth:`_finish_erasure`:
        a removal killed before its erasure; PostgreSQL's autovacuum gets those rows too)."""

    def _erase_old_name(self) -> None:
        """After a rename: make the old name unrecoverable, where the update kept it (nothing by default)."""
        return None

    @abstractmethod
    def _database_bytes(self) -> int:
        """The size of the store's data, for :meth:`stats`."""

    @abstractmethod
    def check(self) -> list[str]:
        """Problems found (empty when healthy): the backend's own, then :meth:`_check_rows`'."""

    # -- encryption at rest --------------------------------------------------------------------------

    @property
    def encrypted(self) -> bool:
        """Whether the gallery's biometric data is sealed with a key (facesys/gallery/sealing.py)."""
        return self._sealer is not None

    @property
    def sealer(self) -> Sealer | None:
        """What seals the gallery's biometric data, also in its index files (None: not encrypted)."""
        return self._sealer

    @property
    def key(self) -> GalleryKey | None:
        """The key the gallery was opened with (None: not encrypted)."""
        return self._sealer.key if self._sealer is not None else None

    def _unlock(self, key: GalleryKey | None) -> None:
        """On opening, before anything is written: check ``key`` against the gallery. An encrypted
        gallery needs its key; a key given to a gallery that holds no face yet makes it an
        encrypted one; a key given to one holding faces in clear is refused (``gallery encrypt``
        turns it into an encrypted one). GalleryKeyError, nothing written, otherwise."""
        meta = self.meta()
        token = meta.get(ENCRYPTION)
        if token is None and key is not None:
            if self._holds_faces():
                raise GalleryKeyError(
                    f"{self.location}: the gallery is not encrypted, but a key was given ({key.source}); "
                    f"'facesys gallery encrypt --key-file {key.source}' encrypts it",
                    parameter="key_file",
                )
            if getattr(self, "writable", True):
                self._unlocked = True
                with self.transaction():
                    token = key.sealer(meta["gallery_id"]).key_check()
                    self._set_meta({ENCRYPTION: token})
                    self._audit("encrypt", detail={"faces": 0})
        elif token is not None:
            if key is None:
                raise KeyMissingError(
                    f"{self.location}: the gallery is encrypted; give its key with --key-file FILE or $FACESYS_KEY_FILE",
                    parameter="key_file",
                )
            if not key.sealer(meta["gallery_id"]).opens(token):
                raise GalleryKeyError(f"{key.source}: not the key of the encrypted gallery {self.location}", parameter="key_file")
        if token is not None and key is not None:
            self._sealer, self._encryption = key.sealer(meta["gallery_id"]), token
        self._unlocked = True

    def _holds_faces(self) -> bool:
        """Whether any enrolled or library face is stored."""
        for table in SEALED_COLUMNS:
            with contextlib.suppress(GalleryError):  # a gallery older than the photo library has no library_faces
                if self._fetch(f"SELECT 1 FROM {table} LIMIT 1"):
                    return True
        return False

    def _check_sealing(self) -> None:
        """First thing in every write transaction: GalleryKeyError when another process encrypted,
        re-keyed or decrypted the gallery since this store opened it (so nothing is ever written
        in clear into an encrypted gallery, nor sealed with a retired key)."""
        if self._unlocked:
            row = self._fetch("SELECT value FROM meta WHERE key = ?", (ENCRYPTION,))
            if (row[0][0] if row else None) != self._encryption:
                raise self._encrypted_meanwhile()

    def reseal(self, key: GalleryKey | None) -> int:
        """Seal every biometric value with ``key`` (encrypt a gallery in clear, or re-key an
        encrypted one), or with None open them all (decrypt), in ONE transaction: a kill leaves the
        gallery as it was or as asked, never a mix. Bumps the generation so that no saved index
        (sealed otherwise) is followed, then erases the freed space that held the old values.
        Returns how many faces were re-sealed."""
        if key is None and self._sealer is None:
            raise GalleryKeyError(f"{self.location}: the gallery is not encrypted", parameter="key_file")
        action = "encrypt" if self._sealer is None else ("rekey" if key is not None else "decrypt")
        with self.transaction():
            new = key.sealer(self.meta()["gallery_id"]) if key is not None else None
            count = 0
            for table, columns in SEALED_COLUMNS.items():
                update = f"UPDATE {table} SET {', '.join(f'{column} = ?' for column in columns)} WHERE id = ?"
                select = f"SELECT id, {', '.join(columns)} FROM {table} WHERE id > ? ORDER BY id LIMIT ?"
                last = 0
                while rows := self._rows(select, (last, RESEAL_BATCH)):
                    self._run_many(update, [(*map(partial(sealed_value, new), columns, row[1:]), row[0]) for row in rows])
                    last, count = rows[-1][0], count + len(rows)
            token = new.key_check() if new is not None else None
            if token is None:
                self._execute("DELETE FROM meta WHERE key = ?", (ENCRYPTION,))
            else:
                self._set_meta({ENCRYPTION: token})
            self._set_meta({"log_from": self._bump_generation()})  # no saved index, sealed otherwise, is followed
            self._audit(action, detail={"faces": count})
            self._erase_later()
        self._sealer, self._encryption = new, token
        self._rewrite_tables()
        return count

    def _rewrite_tables(self) -> None:
        """After :meth:`reseal`: make the old values unrecoverable from the store's files (by
        default as a removal does)."""
        self.erase_freed_pages()

    # -- identity, settings, change tracking and the audit log -------------------------------------

    def meta(self) -> dict[str, str]:
        """Everything in meta: gallery_id, schema_version, model_id, model_name, weights_sha256, dim,
        metric, generation, and settings."""
        return dict(self._rows("SELECT key, value FROM meta"))

    def _set_meta(self, values: dict[str, object]) -> None:
        self._execute_many(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [(key, str(value)) for key, value in values.items()],
        )

    def _refuse_newer(self, version: int, supported: int) -> None:
        """GalleryVersionError when the stored schema ``version`` is newer than this backend's ``supported``."""
        if version > supported:
            raise GalleryVersionError(
                f"{self.location}: gallery schema version {version} is newer than this facesys supports "
                f"({supported}); upgrade facesys"
            )

    def _finish_erasure(self) -> None:
        """On opening for writing: finish the erasure of a removal killed after its commit."""
        if ERASE_PENDING in self.meta():
            with contextlib.suppress(GalleryError):
                self.erase_freed_pages()

    @property
    def gallery_id(self) -> str:
        """A random id made when the store was created: derived files name it, so they are never
        taken for another store's."""
        return self.meta()["gallery_id"]

    @property
    def generation(self) -> int:
        """Bumped by every change (faces, people, names, model)."""
        return int(self.meta()["generation"])

    @property
    def model_id(self) -> str | None:
        return self.meta().get("model_id")

    @property
    def dim(self) -> int:
        return int(self.meta().get("dim", 0))

    def _bump_generation(self) -> int:
        """Inside a transaction: advance the store's generation; returns the new one."""
        bumped = "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'generation' RETURNING value"
        return int(self._row(bumped)[0])

    def _log(self, generation: int, face_ids: list[int], added: bool) -> None:
        """Record in the change log that ``face_ids`` were added (or removed) at ``generation``."""
        rows = [(generation, int(face_id), added) for face_id in face_ids]
        self._execute_many("INSERT INTO changes(generation, face_id, added) VALUES (?, ?, ?)", rows)

    def _audit(self, action: str, person_id: int | None = None, detail: dict | None = None) -> None:
        """Write one audit event, now and by the current actor, inside the open transaction."""
        self._write_event(AuditEvent(time.time(), current_actor(), action, None, detail or {}, person_id))

    def _write_event(self, event: AuditEvent) -> None:
        self._execute(
            "INSERT INTO audit(at, actor, action, person_id, detail) VALUES (?, ?, ?, ?, ?)",
            (event.at, event.actor, event.action, event.person_id, detail_json(event.detail)),
        )
        self._changed = True

    def audit_log(self, limit: int | None = 100, person_id: int | None = None) -> list[AuditEvent]:
        """The latest ``limit`` events (None: all), newest first: in the order written (the audit
        id), not by their clock time, so a writer whose clock is behind hides nothing.
        ``person_id``: only the events about that person."""
        if limit is not None and limit < 0:
            raise GalleryError(f"log limit {limit}: must be 0 or more")
        about = "" if person_id is None else " WHERE a.person_id = ?"
        rows = self._rows(
            "SELECT a.at, a.actor, a.action, p.name, a.detail, a.person_id FROM audit a "
            f"LEFT JOIN people p ON p.id = a.person_id{about} ORDER BY a.id DESC" + ("" if limit is None else " LIMIT ?"),
            tuple(value for value in (person_id, limit) if value is not None),
        )
        return [
            AuditEvent(at, actor, action, person, json.loads(detail), person_id)
            for at, actor, action, person, detail, person_id in rows
        ]

    def _audit_faces(self, action: str, faces: list[tuple[int, int]], key: str = "face_ids") -> None:
        """One ``action`` event per person of (face id, person id) ``faces``, in the order given:
        detail {``key``: [face ids]}."""
        grouped: dict[int, list[int]] = {}
        for face_id, person_id in faces:
            grouped.setdefault(person_id, []).append(face_id)
        for person_id, face_ids in grouped.items():
            self._audit(action, person_id, {key: face_ids})

    def _erase_later(self) -> None:
        """Inside a transaction that deletes rows: mark it for erasure (ERASE_PENDING), which
        :meth:`erase_freed_pages` does after commit and clears."""
        self._set_meta({ERASE_PENDING: 1})

    def _check_model(self, model_id: str | None) -> None:
        """GalleryError when ``model_id`` is not the store's model."""
        if self.model_id != model_id:
            raise GalleryError(f"{self.location}: gallery model is {self.model_id}, not {model_id}")

    def set_model(self, model_id: str, model_name: str, weights_sha256: str, dim: int) -> None:
        """Bind an empty store to a model (the first enrollment does this)."""
        with self.transaction():
            self._set_meta(
                {"model_id": model_id, "model_name": model_name, "weights_sha256": weights_sha256, "dim": dim}
                | {"metric": "euclidean-unit"}
            )
            self._audit("set_model", detail={"model_id": model_id, "dim": dim})

    def setting(self, key: str) -> str | None:
        """A named setting (e.g. ``verify_threshold``, ``index_kind``), or None."""
        return self.meta().get(key)

    def set_setting(self, key: str, value: object | None) -> None:
        """Store a named setting (None removes it)."""
        with self.transaction():
            if value is None:
                self._execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._set_meta({key: value})
            self._audit("set_setting", detail={"key": key, "value": value})

    def changes_since(self, generation: int) -> Changes | None:
        """Faces added and removed after ``generation``, or None when the store cannot tell (its
        change log starts later, or every embedding was replaced since)."""
        with self.reading():
            meta = self.meta()
            if generation < int(meta.get("log_from", 0)) or generation > int(meta["generation"]):
                return None
            return fold_changes(
                self._rows("SELECT face_id, added FROM changes WHERE generation > ? ORDER BY generation", (generation,))
            )

    def wait_for_change(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a change committed to this gallery (by any process);
        True when one was seen, False when the time ran out.

        Used by a per-process follower that keeps the vector index current: it loops on this and
        refreshes the index after each return (cheap when nothing changed: the index header still
        matches the store). Backends that cannot be told of changes keep this default, sleep
        ``timeout`` seconds and return False, so the follower polls; one that can (PostgreSQL's
        LISTEN/NOTIFY) returns as soon as a change is committed."""
        time.sleep(timeout)
        return False

    # -- people and faces --------------------------------------------------------------------------

    def people(self) -> list[tuple[str, int]]:
        """(name, number of faces) of everyone, by name (code-point order, as SQLite's BINARY and
        PostgreSQL's "C" collation sort)."""
        return sorted(
            (name, count)
            for name, count in self._rows(
                "SELECT p.name, COUNT(f.id) FROM people p LEFT JOIN faces f ON f.person_id = p.id GROUP BY p.id, p.name"
            )
        )

    def person_named(self, name: str) -> str | None:
        """The stored name of the person called ``name`` (compared ignoring case and form), or None."""
        return row[1] if (row := self._person_row(normalize_name(name))) else None

    def person_of_image(self, image_sha256: str) -> str | None:
        """Who the photo with this sha256 is enrolled as, if it is."""
        row = self._row(f"SELECT p.name FROM {FACES_FROM} WHERE f.image_sha256 = ?", (image_sha256,))
        return row[0] if row else None

    def _person_row(self, name: str) -> tuple[int, str] | None:
        """(id, stored name) of the person named ``name``, compared ignoring case. Galleries from
        before names were normalised may hold several spellings: the exact one comes first."""
        query = "SELECT id, name FROM people WHERE name_key = ? ORDER BY CASE WHEN name = ? THEN 0 ELSE 1 END LIMIT 1"
        return self._row(query, (name_key(name), name))

    def _person_id(self, name: str, create: bool) -> int | None:
        """The id of the person named ``name`` (compared ignoring case); created when ``create``.
        A different spelling of an existing name is refused, naming the existing one."""
        row = self._person_row(name)
        if row is None:
            person = {"name": name, "created_at": time.time(), "name_key": name_key(name)}
            return self._insert("people", [person])[0] if create else None
        person_id, existing = row
        if existing != name and create:
            raise NameConflictError(f"{name!r}: a person named {existing!r} exists already; use that exact name", existing)
        return person_id

    @abstractmethod
    def _erase_library_faces_of(self, person_id: int) -> int:
        """Inside a transaction: erase the library faces of ``person_id`` (:meth:`remove_person`);
        provided by :class:`~facesys.gallery.store.library.PhotoLibrary`."""

    def _find_person(self, name: object) -> tuple[int, str] | None:
        """:meth:`_person_row` of ``name`` as a caller gave it (normalised), or None when it is blank
        or not text (such a name names nobody)."""
        return self._person_row(normalize_name(name)) if isinstance(name, str) and name.strip() else None

    def add_face(self, name: str, face: NewFace, model_id: str) -> int:
        """Enroll one face of ``name`` (created if new) in one transaction; returns its face id.
        DuplicatePhotoError when the photo is already enrolled."""
        return self.add_faces([(name, face)], model_id)[0]

    def add_faces(self, faces: list[tuple[str, NewFace]], model_id: str, action: str = "enroll") -> list[int]:
        """Enroll several (name, face) in ONE transaction: all or nothing. Logs one ``action``
        event ("enroll", "import" or "repair") per person, detail {"face_ids": [...]}.
        DuplicatePhotoError for a photo enrolled already, or twice in ``faces``."""
        if not faces:
            return []
        with self.transaction():
            return self._add_faces(faces, model_id, action)

    def _add_faces(self, faces: list[tuple[str, NewFace]], model_id: str, action: str) -> list[int]:
        """Inside a transaction: :meth:`add_faces`'s work."""
        named = [(normalize_name(name), face) for name, face in faces]
        if named:
            self._check_model(model_id)
            hashes = sorted({face.image_sha256 for _, face in named})
            owners = dict(self._rows(f"SELECT f.image_sha256, p.name FROM {FACES_FROM} WHERE f.image_sha256 = ANY(?)", (hashes,)))
            for name, face in named:
                if (owner := owners.get(face.image_sha256)) is not None:
                    raise DuplicatePhotoError(f"{face.source}: this photo is already enrolled as {owner!r}", owner)
                owners[face.image_sha256] = name
            people = {name: self._person_id(name, create=True) for name in dict.fromkeys(name for name, _ in named)}
            now = time.time()
            rows = [
                {"person_id": people[name], "source": face.source, "image_sha256": face.image_sha256}
                | dict(zip(("box", "landmarks", "crop_origin"), geometry_json(face), strict=True))
                | {"score": float(face.score), "crop": face.crop_jpeg, "embedding": embedding_bytes(face.embedding)}
                | {"model_id": model_id, "created_at": now, "sharpness": face.sharpness}
                for name, face in named
            ]
            ids = self._insert("faces", rows)
            self._log(self._bump_generation(), ids, added=True)
            self._audit_faces(action, [(face_id, people[name]) for face_id, (name, _) in zip(ids, named, strict=True)])
            return ids
        return []

    def remove_person(self, name: str) -> int:
        """Delete a person and all their faces; returns how many enrolled faces went.
        UnknownPersonError when nobody has that name.

        Their library faces are erased too (crop, embedding, geometry; freed space erased as the
        enrolled faces'): those named or attached to them, and those that are one of their enrolled
        faces again (same photo sha256, embedding within SAME_FACE_DISTANCE). What is kept of them:
        a photo that still holds other faces keeps its row (path, size, time, sha256) and, in
        ``erased``, the frame and box of each erased face (positions only), so that reading the same
        bytes again leaves those faces out; a photo left without faces is deleted, its path too,
        and only its sha256 with the number of faces erased stays in ``library_erased``, so a scan
        does not read it again (enrolling the photo is still possible)."""
        with self.transaction():
            person_id = self._existing_person(name)
            library = self._erase_library_faces_of(person_id)
            ids = sorted(row[0] for row in self._rows("DELETE FROM faces WHERE person_id = ? RETURNING id", (person_id,)))
            self._execute("DELETE FROM people WHERE id = ?", (person_id,))
            self._log(self._bump_generation(), ids, added=False)
            self._audit("remove_person", person_id, {"faces": len(ids)} | ({"library_faces": library} if library else {}))
            self._erase_later()
        self.erase_freed_pages()
        return len(ids)

    def remove_faces(self, face_ids: list[int]) -> dict[int, str]:
        """Delete faces by id in one transaction (their people left with no face are deleted too);
        returns face id -> person name of those that existed (ids that do not are ignored: none, no change)."""
        wanted = sorted(set(possible_ids(face_ids)))
        with self.transaction():
            found = self._rows(f"SELECT f.id, f.person_id, p.name FROM {FACES_FROM} WHERE f.id = ANY(?) ORDER BY f.id", (wanted,))
            if not found:
                return {}
            self._delete_faces([(face_id, person_id) for face_id, person_id, _ in found])
        self.erase_freed_pages()
        return {face_id: name for face_id, _, name in found}

    def _delete_faces(self, faces: list[tuple[int, int]]) -> list[int]:
        """Inside a transaction: delete (face id, person id) ``faces`` and those of their people left
        without a face (people not touched stay, even without faces: :meth:`remove_empty_people`
        repairs those), library faces of people gone detached; logged, audited per person and
        marked for erasure. Returns the face ids."""
        ids = sorted(face_id for face_id, _ in faces)
        self._execute("DELETE FROM faces WHERE id = ANY(?)", (ids,))
        self._execute(
            "DELETE FROM people WHERE id = ANY(?) AND NOT EXISTS (SELECT 1 FROM faces f WHERE f.person_id = people.id)",
            (sorted({person_id for _, person_id in faces}),),
        )
        self._detach_orphans()
        self._log(self._bump_generation(), ids, added=False)
        self._audit_faces("remove_faces", sorted(faces))
        self._erase_later()
        return ids

    def _detach_orphans(self) -> None:
        """Inside a transaction: library faces whose person went lose their assignment too."""
        self._execute(
            "UPDATE library_faces SET assigned = NULL, enrolled_face_id = NULL "
            "WHERE person_id IS NULL AND (assigned IS NOT NULL OR enrolled_face_id IS NOT NULL)"
        )

    def rename_person(self, old: str, new: str, seen: list[int] | None = None) -> None:
        """UnknownPersonError when nobody is named ``old``; NameConflictError when ``new`` is another's.
        ``seen``: ``old``'s face ids as the caller read them; ChangedMeanwhileError naming who has
        them now when ``old`` was renamed or removed meanwhile (:meth:`_existing_person`)."""
        new = normalize_name(new)
        with self.transaction():
            person_id = self._existing_person(old, seen)
            other = self._person_row(new)
            if other is not None and other[0] != person_id:
                raise NameConflictError(f"a person named {other[1]!r} already exists in {self.location}", other[1])
            self._execute("UPDATE people SET name = ?, name_key = ? WHERE id = ?", (new, name_key(new), person_id))
            self._bump_generation()
            self._audit("rename", person_id)  # no names: the log shows the person's current one
        self._erase_old_name()

    def _existing_person(self, name: str, seen: Collection[int] | None = None) -> int:
        """Inside a write transaction: the id of the person ``name``; UnknownPersonError when nobody
        is. ``seen``: the person's face ids as the caller read them; ChangedMeanwhileError naming
        who has them now when the person was renamed or removed meanwhile (compare-and-set)."""
        row = self._find_person(name)
        if seen:
            owners = set(self.names_of(np.asarray(sorted(seen), np.int64)).values())
            if row is None or owners != {row[1]}:
                owner = min(owners - {row[1] if row else None}, default=None)
                gone = "was removed" if row is None else "changed (the faces read are gone)"
                what = f"was renamed {owner!r}" if owner else gone
                raise ChangedMeanwhileError(f"{name!r} {what} meanwhile by another change; nothing was changed", owner)
        if row is None:
            raise UnknownPersonError(f"no person named {name!r} in {self.location}")
        return row[0]

    def faces(self, name: str | None = None) -> list[FaceRecord]:
        """Face records (no pixels, no embeddings), of one person or everyone, oldest first."""
        query = f"SELECT {FACE_COLUMNS} FROM {FACES_FROM}"
        with self.reading():
            if name is None:
                rows = self._rows(query + " ORDER BY f.id")
            else:
                if (person := self._find_person(name)) is None:
                    return []
                rows = self._rows(query + " WHERE p.id = ? ORDER BY f.id", (person[0],))
        return [face_record(row) for row in rows]

    def face_count(self) -> int:
        return int(self._row("SELECT COUNT(*) FROM faces")[0])

    def face_ids(self) -> np.ndarray:
        """(N,) int64 ids of every face, ascending."""
        return np.array([row[0] for row in self._rows("SELECT id FROM faces ORDER BY id")], np.int64)

    def embeddings(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(face ids (N,) int64 ascending, embeddings (N, dim) float32, person name of each face):
        rows streamed in chunks of about STREAM_BYTES, copied into arrays allocated once; names
        looked up by person id."""
        with self.reading():
            dim, count = self.dim, self.face_count()
            names = dict(self._rows("SELECT id, name FROM people"))
            ids, people = np.empty(count, np.int64), np.empty(count, np.int64)
            vectors = np.empty((count, dim), np.float32)
            done = 0
            for rows in self._stream("SELECT id, person_id, embedding FROM faces ORDER BY id", STREAM_BYTES // (4 * dim + 64)):
                n = len(rows)
                ids[done : done + n] = [row[0] for row in rows]
                people[done : done + n] = [row[1] for row in rows]
                vectors[done : done + n] = np.frombuffer(b"".join(row[2] for row in rows), "<f4").reshape(n, dim)
                done += n
        return ids[:done], vectors[:done], [names[person_id] for person_id in people[:done].tolist()]

    def vectors(self, face_ids: np.ndarray) -> np.ndarray:
        """(len(face_ids), dim) float32 embeddings of these faces, in the order given."""
        found = dict(self._rows("SELECT id, embedding FROM faces WHERE id = ANY(?)", (id_list(face_ids),)))
        out = np.zeros((len(face_ids), self.dim), np.float32)
        for row, face_id in enumerate(np.ravel(face_ids).tolist()):
            if face_id in found:
                out[row] = np.frombuffer(found[face_id], "<f4")
        return out

    def names_of(self, face_ids: np.ndarray) -> dict[int, str]:
        """Face id -> person name for those of ``face_ids`` that exist (-1 is ignored)."""
        return dict(self._rows(f"SELECT f.id, p.name FROM {FACES_FROM} WHERE f.id = ANY(?)", (id_list(face_ids),)))

    def crops(self) -> Iterator[tuple[int, bytes, list[float], list[list[float]]]]:
        """(face id, JPEG crop, crop origin, landmarks in source pixels) of every face."""
        for rows in self._stream("SELECT id, crop, crop_origin, landmarks FROM faces ORDER BY id"):
            for face_id, jpeg, origin, landmarks in rows:
                yield face_id, jpeg, json.loads(origin), json.loads(landmarks)

    def crop(self, face_id: int) -> bytes | None:
        """The stored JPEG crop of one face, or None when there is no such face."""
        row = self._row("SELECT crop FROM faces WHERE id = ?", (valid_id(face_id),))
        return row[0] if row else None

    def replace_embeddings(
        self, model_id: str, model_name: str, weights_sha256: str, dim: int, vectors: dict[int, np.ndarray]
    ) -> None:
        """Switch every face to another model in one transaction; calibrated thresholds are dropped."""
        with self.transaction():
            self._execute_many(
                "UPDATE faces SET embedding = ?, model_id = ? WHERE id = ?",
                [(embedding_bytes(vector), model_id, int(face_id)) for face_id, vector in vectors.items()],
            )
            self._set_meta({"model_id": model_id, "model_name": model_name, "weights_sha256": weights_sha256, "dim": dim})
            self._execute("DELETE FROM meta WHERE key IN ('verify_threshold', 'identify_threshold')")
            self._set_meta({"log_from": self._bump_generation()})  # every vector changed: no index can follow
            self._audit("replace_embeddings", detail={"model_id": model_id, "faces": len(vectors)})


def sealed_value(sealer: Sealer | None, column: str | None, value: object) -> object:
    """``value`` as stored under ``sealer`` (None: in clear): bytes (crops, embeddings) and the text
    of SEALED_TEXT_COLUMNS sealed, anything else as it is. ``column``: None for a query parameter."""
    if sealer is None:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return sealer.seal(value)
    if column in SEALED_TEXT_COLUMNS and isinstance(value, str):
        return sealer.seal_text(value)
    return value
