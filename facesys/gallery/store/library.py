"""The photo library's workflow, mixed into :class:`~facesys.gallery.store.base.TruthStore`:
faces found by scans, unnamed until named, and what naming, unnaming, removing, moving and
forgetting them does; the compare-and-set checks of a change made on what a caller saw; and the
erasure of a removed person's library faces.

Library faces live in their own tables, never in ``faces``: identify cannot see them. Naming one
copies it into ``faces`` (logged in the change log, so the index follows); a scan's automatic
match only links it to the person, without a copy. Library face ids are never reused. Changes
that touch only the library do not bump the generation. Written over the primitives and core
workflow of :class:`~facesys.gallery.store.core.StoreCore`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import numpy as np

from facesys.errors import ChangedMeanwhileError, ConflictError, GalleryError
from facesys.gallery.audit import AuditEvent
from facesys.gallery.store.core import StoreCore
from facesys.gallery.store.records import (
    LIBRARY_FACE_COLUMNS,
    LIBRARY_FACES_FROM,
    CarriedLibrary,
    CarriedLibraryFace,
    LibraryFace,
    LibraryPhoto,
    NamedFaces,
    NewFace,
    NewLibraryFace,
    ScannedPhoto,
    SeenFace,
    embedding_bytes,
    geometry_json,
    library_face,
)
from facesys.gallery.store.rules import id_list, missing_library_faces, name_key, normalize_name, valid_id, valid_ids

SAME_FACE_DISTANCE = 0.4  # an enrolled face and a library face of the same photo closer than this are one face


class PhotoLibrary(StoreCore):
    """The photo library's methods of a TruthStore (see the module's docstring)."""

    def record_photo(self, photo: ScannedPhoto, faces: list[NewLibraryFace] | None, model_id: str | None) -> list[int]:
        """Record one scanned file with all its faces in ONE transaction (all or nothing),
        replacing an earlier record of the same path and its faces (their enrolled copies stay);
        returns the new library face ids. A face's ``person`` attaches it automatically to that
        enrolled person (ignored when nobody has that name now). ``faces=None``: the file's content
        is unchanged, only its size and modification time are updated (its scan time stays: it
        says when its faces were found, from which retention counts). Freed space is
        erased by the next :meth:`erase_freed_pages`. GalleryError when faces are given and
        ``model_id`` is not the store's model."""
        with self.transaction():
            row = self._row("SELECT id FROM library_photos WHERE path = ?", (photo.path,))
            now = time.time()
            if faces is None:
                if row is None:
                    raise GalleryError(f"{photo.path}: not in the library of {self.location}; nothing to update")
                self._execute(  # scanned_at stays: when its faces were found (retention counts from it)
                    "UPDATE library_photos SET size = ?, mtime_ns = ? WHERE id = ?", (photo.size, photo.mtime_ns, row[0])
                )
                return []
            if faces:
                self._check_model(model_id)
            values = (photo.size, photo.mtime_ns, photo.sha256, len(faces), photo.error, model_id, now)
            copies: list[int] = []  # enrolled copies of the faces replaced now
            if row is None:
                columns = ("size", "mtime_ns", "sha256", "faces", "error", "model_id", "scanned_at", "path")
                photo_id = self._insert("library_photos", [dict(zip(columns, (*values, photo.path), strict=True))])[0]
            else:
                photo_id = row[0]
                deleted = self._rows("DELETE FROM library_faces WHERE photo_id = ? RETURNING enrolled_face_id", (photo_id,))
                copies = [copy for (copy,) in deleted if copy is not None]
                if deleted:
                    self._erase_later()
                self._execute(  # faces erased with a removed person stay remembered while the bytes are the same
                    "UPDATE library_photos SET erased = CASE WHEN sha256 = ? THEN erased END, size = ?, mtime_ns = ?, "
                    "sha256 = ?, faces = ?, error = ?, model_id = ?, scanned_at = ? WHERE id = ?",
                    (photo.sha256, *values, photo_id),
                )
            names = {face.person for face in faces if face.person is not None}
            people = {name: row[0] if (row := self._person_row(name)) else None for name in names}
            persons = [people.get(face.person) for face in faces]  # None: unnamed, or nobody of that name
            rows = [
                {"photo_id": photo_id, "frame": face.frame, "score": float(face.score), "crop": face.crop_jpeg}
                | dict(zip(("box", "landmarks", "crop_origin"), geometry_json(face), strict=True))
                | {"embedding": embedding_bytes(face.embedding), "model_id": model_id, "person_id": person_id}
                | {"assigned": None if person_id is None else "auto"}
                for face, person_id in zip(faces, persons, strict=True)
            ]
            ids = self._insert("library_faces", rows)
            self._relink_copies(photo.sha256, copies, ids, faces)
            attached = [(face_id, person_id) for face_id, person_id in zip(ids, persons, strict=True) if person_id is not None]
            self._audit_faces("auto_attach", attached, "library_faces")
            return ids

    def library_photos(self) -> list[LibraryPhoto]:
        """Every recorded library file, by path (code-point order)."""
        rows = self._rows(
            "SELECT id, path, size, mtime_ns, sha256, faces, error, model_id, scanned_at, erased FROM library_photos"
        )
        return [LibraryPhoto(*row[:-1], json.loads(row[-1]) if row[-1] else None) for row in sorted(rows, key=lambda r: r[1])]

    def carried_library(self) -> CarriedLibrary:
        """The whole photo library as an export carries it (inside :meth:`reading` for one state):
        photos by path, faces by id with their crop, embedding, person's name and the image_sha256
        of their enrolled copy, and the erased files."""
        photos = self.library_photos()
        rows = self._rows(
            "SELECT lp.path, lf.frame, lf.box, lf.landmarks, lf.score, lf.crop, lf.crop_origin, lf.embedding, lf.model_id, "
            "lf.cluster, p.name, lf.assigned, f.image_sha256 FROM library_faces lf JOIN library_photos lp ON lp.id = lf.photo_id "
            "LEFT JOIN people p ON p.id = lf.person_id LEFT JOIN faces f ON f.id = lf.enrolled_face_id ORDER BY lf.id"
        )
        faces = []
        for path, frame, box, landmarks, score, crop, origin, blob, model_id, cluster, person, assigned, copy in rows:
            face = NewLibraryFace(
                np.asarray(json.loads(box), float), np.asarray(json.loads(landmarks), float), float(score), bytes(crop),
                tuple(json.loads(origin)), np.frombuffer(bytes(blob), "<f4").copy(), frame, person,
            )  # fmt: skip
            faces.append(CarriedLibraryFace(path, face, model_id, cluster, assigned, copy))
        erased = [(sha, int(count)) for sha, count in self._rows("SELECT sha256, faces FROM library_erased ORDER BY sha256")]
        return CarriedLibrary(photos, faces, erased)

    def add_faces_and_library(
        self, faces: list[tuple[str, NewFace]], model_id: str, library: CarriedLibrary, action: str = "import"
    ) -> tuple[list[int], int]:
        """Enroll ``faces`` as :meth:`add_faces` does and record the carried ``library`` in the SAME
        transaction (all or nothing); returns (enrolled face ids, library photos skipped because
        their path is recorded already). Library faces keep their person (by name; created if
        new), how they were assigned, their cluster (shifted past the clusters used here, so
        groups stay groups) and their link to the enrolled face of ``enrolled_sha256``, marked a
        library copy. Erased files are remembered (the larger count wins)."""
        with self.transaction():
            ids = self._add_faces(faces, model_id, action)
            recorded = {path for (path,) in self._rows("SELECT path FROM library_photos")}
            photos = [photo for photo in library.photos if photo.path not in recorded]
            columns = ("path", "size", "mtime_ns", "sha256", "faces", "error", "model_id", "scanned_at", "erased")
            erased = [None if p.erased is None else json.dumps(p.erased) for p in photos]
            values = [
                (p.path, p.size, p.mtime_ns, p.sha256, p.faces, p.error, p.model_id, p.scanned_at, e)
                for p, e in zip(photos, erased, strict=True)
            ]
            new_ids = self._insert("library_photos", [dict(zip(columns, v, strict=True)) for v in values]) if values else []
            photo_ids = dict(zip((p.path for p in photos), new_ids, strict=True))
            carried = [face for face in library.faces if face.path in photo_ids]
            if carried:
                self._check_model(model_id)
            names = {face.face.person for face in carried if face.face.person is not None}
            people = {name: self._person_id(name, create=True) for name in sorted(names)}
            shas = sorted({face.enrolled_sha256 for face in carried if face.enrolled_sha256 is not None})
            copies = dict(self._rows("SELECT image_sha256, id FROM faces WHERE image_sha256 = ANY(?)", (shas,)))
            shift = int(self.meta().get("last_cluster_id", -1)) + 1
            rows = [
                {"photo_id": photo_ids[c.path], "frame": c.face.frame, "score": float(c.face.score), "crop": c.face.crop_jpeg}
                | dict(zip(("box", "landmarks", "crop_origin"), geometry_json(c.face), strict=True))
                | {"embedding": embedding_bytes(c.face.embedding), "model_id": c.model_id}
                | {"cluster": None if c.cluster is None else c.cluster + shift, "assigned": c.assigned}
                | {"person_id": people.get(c.face.person), "enrolled_face_id": copies.get(c.enrolled_sha256)}
                for c in carried
            ]
            if rows:
                self._insert("library_faces", rows)
            linked = sorted({copies[c.enrolled_sha256] for c in carried if c.enrolled_sha256 in copies})
            if linked:
                self._execute("UPDATE faces SET from_library = ? WHERE id = ANY(?)", (True, linked))
            clusters = [c.cluster + shift for c in carried if c.cluster is not None]
            if clusters:
                self._set_meta({"last_cluster_id": max(shift - 1, *clusters)})
            if library.erased:
                self._execute_many(
                    "INSERT INTO library_erased(sha256, faces) VALUES (?, ?) ON CONFLICT (sha256) DO UPDATE SET faces = "
                    "CASE WHEN excluded.faces > library_erased.faces THEN excluded.faces ELSE library_erased.faces END",
                    [(sha, count) for sha, count in library.erased],
                )
            if photos or library.erased:
                detail = {
                    "library_photos": len(photos),
                    "library_faces": len(rows),
                    "skipped_photos": len(library.photos) - len(photos),
                }
                self._audit(action, detail=detail)
        return ids, len(library.photos) - len(photos)

    def move_photo(self, old_path: str, photo: ScannedPhoto) -> bool:
        """Record that the library file ``old_path`` now lies at ``photo.path`` with the same bytes
        (``photo.sha256``), in one transaction: it keeps its id, faces, names, clusters and links
        to enrolled copies (whose source follows the file). False, nothing changed, when
        ``old_path`` is not recorded with that sha256 or ``photo.path`` is recorded already."""
        with self.transaction():
            row = self._row(
                "SELECT id FROM library_photos WHERE path = ? AND sha256 = ? AND NOT EXISTS "
                "(SELECT 1 FROM library_photos WHERE path = ?)",
                (old_path, photo.sha256, photo.path),
            )
            if row is None:
                return False
            self._execute(  # scanned_at stays: when its faces were found (retention counts from it)
                "UPDATE library_photos SET path = ?, size = ?, mtime_ns = ? WHERE id = ?",
                (photo.path, photo.size, photo.mtime_ns, row[0]),
            )
            self._execute(  # the enrolled copies of its named faces name the file where it is now
                "UPDATE faces SET source = ? WHERE id IN (SELECT enrolled_face_id FROM library_faces WHERE photo_id = ?)",
                (photo.path, row[0]),
            )
            self._audit("move_photos", detail={"photos": 1})
        return True

    def erased_photos(self) -> set[str]:
        """The sha256 of the files no longer recorded because every face of theirs was erased with
        a removed person: a scan leaves them out (see :meth:`remove_person`)."""
        return {sha for (sha,) in self._rows("SELECT sha256 FROM library_erased")}

    def forget_photos(self, paths: list[str]) -> int:
        """Forget these recorded files (unknown paths are ignored) with their library faces, in one
        transaction, and erase the freed space; returns how many faces went. Enrolled copies of
        named faces stay enrolled."""
        wanted = sorted(set(paths))
        with self.transaction():
            photos, faces = self._row(
                "SELECT COUNT(*), (SELECT COUNT(*) FROM library_faces WHERE photo_id IN "
                "(SELECT id FROM library_photos WHERE path = ANY(?))) FROM library_photos WHERE path = ANY(?)",
                (wanted, wanted),
            )
            if not photos:
                return 0
            self._execute("DELETE FROM library_photos WHERE path = ANY(?)", (wanted,))
            self._audit("forget_photos", detail={"photos": photos, "library_faces": faces})
            self._erase_later()
        self.erase_freed_pages()
        return faces

    def library_faces(
        self, ids: list[int] | None = None, person: str | None = None, cluster: int | None = None, unnamed: bool = False
    ) -> list[LibraryFace]:
        """Library faces by id ascending: those of ``ids`` that exist, of ``person`` (any spelling
        of the name; [] for nobody), of ``cluster``, unnamed only; filters combine."""
        where, params = [], []
        with self.reading():
            if ids is not None:
                where.append("lf.id = ANY(?)")
                params.append(id_list(valid_ids(ids, "library face")))
            if person is not None:
                if (found := self._find_person(person)) is None:
                    return []
                where.append("lf.person_id = ?")
                params.append(found[0])
            if cluster is not None:
                where.append("lf.cluster = ?")
                params.append(valid_id(cluster, "cluster", low=0))
            if unnamed:
                where.append("lf.person_id IS NULL")
            clause = f" WHERE {' AND '.join(where)}" if where else ""
            rows = self._rows(f"SELECT {LIBRARY_FACE_COLUMNS} FROM {LIBRARY_FACES_FROM}{clause} ORDER BY lf.id", params)
        return [library_face(row) for row in rows]

    def library_vectors(self, ids: list[int]) -> np.ndarray:
        """(len(ids), dim) float32 unit embeddings of these library faces, in the order given.
        UnknownFaceError naming the ids that do not exist; GalleryError for one of another dimension."""
        wanted = valid_ids(ids, "library face")
        with self.reading():
            dim = self.dim
            found = dict(self._rows("SELECT id, embedding FROM library_faces WHERE id = ANY(?)", (id_list(wanted),)))
        missing_library_faces(wanted, found, self.location)
        out = np.zeros((len(wanted), dim), np.float32)
        for row, face_id in enumerate(wanted):
            if len(found[face_id]) != 4 * dim:
                raise GalleryError(f"{self.location}: library face #{face_id} has {len(found[face_id]) // 4} values, not {dim}")
            out[row] = np.frombuffer(found[face_id], "<f4")
        return out

    def library_crops(self, ids: list[int]) -> dict[int, bytes]:
        """Library face id -> its JPEG crop, for those of ``ids`` that exist."""
        wanted = id_list(valid_ids(ids, "library face"))
        return dict(self._rows("SELECT id, crop FROM library_faces WHERE id = ANY(?)", (wanted,)))

    def library_faces_to_reembed(
        self, model_id: str, after: int, limit: int
    ) -> list[tuple[int, bytes, list[float], list[list[float]]]]:
        """(id, JPEG crop, crop origin, landmarks in source pixels) of up to ``limit`` library faces
        with an id above ``after`` that were embedded by a model other than ``model_id``, by id."""
        rows = self._rows(
            "SELECT id, crop, crop_origin, landmarks FROM library_faces WHERE id > ? AND model_id <> ? ORDER BY id LIMIT ?",
            (int(after), model_id, int(limit)),
        )
        return [(face_id, jpeg, json.loads(origin), json.loads(landmarks)) for face_id, jpeg, origin, landmarks in rows]

    def reembed_library_faces(self, model_id: str, vectors: Mapping[int, np.ndarray]) -> int:
        """Give library faces the unit embeddings ``vectors`` (face id -> vector) made by ``model_id``,
        the gallery's model (GalleryError otherwise, or for a vector of another dimension), in ONE
        transaction, with the model id in the same row update; faces gone meanwhile or of
        ``model_id`` already are left alone. A recorded file whose faces are then all of
        ``model_id`` counts as scanned with it (a scan does not read it again); with no ``vectors``
        this holds for every recorded file (the end of a reindex). Returns how many faces changed.
        Library only: the generation stays."""
        with self.transaction():
            self._check_model(model_id)
            dim = self.dim
            if any(np.asarray(vector).shape != (dim,) for vector in vectors.values()):
                raise GalleryError(f"{self.location}: library face vectors must have {dim} values for {model_id}")
            wanted = id_list(list(vectors))
            rows = self._rows("SELECT id FROM library_faces WHERE id = ANY(?) AND model_id <> ? ORDER BY id", (wanted, model_id))
            ids = [face_id for (face_id,) in rows]
            self._execute_many(
                "UPDATE library_faces SET embedding = ?, model_id = ? WHERE id = ?",
                [(embedding_bytes(vectors[face_id]), model_id, face_id) for face_id in ids],
            )
            of_these = " AND id IN (SELECT photo_id FROM library_faces WHERE id = ANY(?))" if vectors else ""
            self._execute(
                "UPDATE library_photos SET model_id = ? WHERE model_id <> ? AND NOT EXISTS (SELECT 1 FROM library_faces lf "
                f"WHERE lf.photo_id = library_photos.id AND lf.model_id <> ?){of_these}",
                (model_id, model_id, model_id, *([wanted] if vectors else [])),
            )
            if ids:
                self._audit("reembed_library_faces", detail={"model_id": model_id, "library_faces": len(ids)})
        return len(ids)

    def set_clusters(self, ids: list[int], clusters: list[int]) -> None:
        """Set the cluster of each library face (ids that do not exist, or are named meanwhile, are
        left alone) in one transaction; meta ``last_cluster_id`` keeps the highest cluster id ever
        set, so new clusters can be given ids never used before."""
        pairs = [(int(c), int(i)) for i, c in zip(ids, clusters, strict=True)]
        with self.transaction():
            self._execute_many("UPDATE library_faces SET cluster = ? WHERE id = ? AND person_id IS NULL", pairs)
            last = max([int(self.meta().get("last_cluster_id", -1))] + [c for c, _ in pairs])
            self._set_meta({"last_cluster_id": last})
            self._audit("cluster", detail={"library_faces": len(pairs), "clusters": len({c for c, _ in pairs})})

    def name_library_faces(
        self, ids: list[int], name: str, seen: Mapping[int, SeenFace] | None = None, cluster: int | None = None
    ) -> NamedFaces:
        """Name library faces ``name`` in ONE transaction: the person is created, or the existing
        person of that name (compared ignoring case, :func:`name_key`) is used; each face is copied
        into ``faces`` (crop, embedding, geometry, path, sha256; logged in the change log) unless its
        photo has an enrolled face already, linked to its copy, and marked assigned "user". A face
        named another person before loses that copy. UnknownFaceError for ids that do not exist;
        GalleryError for a face of another model or when the person would have no enrolled face.
        ``seen``: the faces as the caller read them (:func:`seen_faces`); ChangedMeanwhileError,
        nothing changed, when one is no longer so (unless it is ``name``'s already). ``cluster``:
        the cluster these faces are, noted in the audit event (:meth:`cluster_naming`)."""
        name, ids = normalize_name(name), valid_ids(ids, "library face")
        with self.transaction():
            self._check_seen(seen, lambda face: face.assigned == "user" and name_key(face.person or "") == name_key(name))
            rows = self._library_rows(ids)
            model_id = self.model_id
            for face_id, _, _, _, _, face_model in rows:
                if face_model != model_id:
                    raise ConflictError(
                        f"library face #{face_id} was made by {face_model}; the gallery's model is {model_id} "
                        "(scan the library again)"
                    )
            existing = self._person_row(name)
            # faces named this person already, with their copy, stay as they are; the others are (re)named
            todo = [row for row in rows if not (existing and row[1] == existing[0] and row[2] is not None)]
            dropped = self._drop_copies(todo)  # copies made when they were named someone else
            name = existing[1] if existing else name
            chosen = choose_copies(todo, self._enrolled_photos(sorted({row[3] for row in todo})))
            if existing is None and not chosen:
                raise ConflictError(
                    f"{name!r} would have no enrolled face: the photos of these library faces are enrolled already "
                    "(one enrolled face per photo); name a face from another photo first"
                )
            person_id = self._person_id(name, create=True)
            enrolled = {face_id: self._copy_library_face(face_id, person_id) for face_id in chosen}
            self._assign_library_faces(person_id, [(row[0], enrolled.get(row[0])) for row in todo])
            if enrolled:
                self._log(self._bump_generation(), list(enrolled.values()), added=True)
            detail = {"library_faces": [row[0] for row in rows], "face_ids": list(enrolled.values())}
            self._audit("name_faces", person_id, detail | ({"cluster": int(cluster)} if cluster is not None else {}))
        if dropped:
            self.erase_freed_pages()
        return NamedFaces(name, [row[0] for row in rows], enrolled, [row[0] for row in todo if row[0] not in enrolled])

    def unname_library_faces(self, ids: list[int], seen: Mapping[int, SeenFace] | None = None) -> list[int]:
        """Take these library faces back from their person (automatic or not), removing their
        enrolled copies (a person left without faces goes too), in one transaction; returns those
        that were named. UnknownFaceError for ids that do not exist. ``seen``: as for
        :meth:`name_library_faces` (a face unnamed already is no conflict)."""
        ids = valid_ids(ids, "library face")
        with self.transaction():
            self._check_seen(seen, lambda face: face.person is None)
            named = [row for row in self._library_rows(ids) if row[1] is not None]
            dropped = self._drop_copies(named)
            self._execute(  # no person, assignment, copy or cluster
                "UPDATE library_faces SET person_id = NULL, assigned = NULL, enrolled_face_id = NULL, cluster = NULL "
                "WHERE id = ANY(?)",
                ([row[0] for row in named],),
            )
            self._audit_faces("unname_faces", [(row[0], row[1]) for row in named], "library_faces")
        if dropped:
            self.erase_freed_pages()
        return [row[0] for row in named]

    def remove_library_faces(self, ids: list[int], seen: Mapping[int, SeenFace] | None = None) -> int:
        """Delete these library faces and their enrolled copies (crops and vectors gone, freed space
        erased), in one transaction; returns how many. The file stays recorded, so a re-scan does
        not find the face again until the file changes. UnknownFaceError for ids that do not exist.
        ``seen``: as for :meth:`name_library_faces`."""
        ids = valid_ids(ids, "library face")
        with self.transaction():
            self._check_seen(seen, lambda face: False)
            rows = self._library_rows(ids)
            self._drop_copies(rows)
            self._execute("DELETE FROM library_faces WHERE id = ANY(?)", ([row[0] for row in rows],))
            self._erase_later()
            self._audit("remove_library_faces", detail={"library_faces": [row[0] for row in rows]})
        self.erase_freed_pages()
        return len(rows)

    def _check_seen(self, seen: Mapping[int, SeenFace] | None, done) -> None:
        """Inside a write transaction (writers queue, so nothing changes these faces until it ends):
        ChangedMeanwhileError naming who has it now for the first face of ``seen`` that is no
        longer as seen, unless ``done(face)``: it is already what the change makes it."""
        if not seen:
            return
        now = {face.id: face for face in self.library_faces(list(seen))}
        for face_id, was in sorted(seen.items()):
            face = now.get(face_id)
            if face is not None and (done(face) or _same_face(was, face)):
                continue
            raise _changed_meanwhile(face_id, was, face)

    def cluster_naming(self, cluster: int) -> AuditEvent | None:
        """The audit event of the naming of ``cluster`` (by :meth:`name_library_faces` with that
        cluster), newest first, or None; cluster ids are never reused, so it says who took it."""
        return next((e for e in self.audit_log(None) if e.action == "name_faces" and e.detail.get("cluster") == cluster), None)

    # What naming library faces needs; each runs inside :meth:`transaction`.

    def _library_rows(self, ids: list[int]) -> list[tuple]:
        """(id, person id, enrolled face id, photo sha256, score, model id) of the library faces
        ``ids``; UnknownFaceError naming those that do not exist."""
        rows = self._rows(
            "SELECT lf.id, lf.person_id, lf.enrolled_face_id, lp.sha256, lf.score, lf.model_id FROM library_faces lf "
            "JOIN library_photos lp ON lp.id = lf.photo_id WHERE lf.id = ANY(?) ORDER BY lf.id",
            (id_list(ids),),
        )
        missing_library_faces([int(i) for i in ids], [row[0] for row in rows], self.location)
        return rows

    def _drop_copies(self, rows: list[tuple]) -> list[int]:
        """Delete the enrolled copies of library face ``rows`` (from :meth:`_library_rows`) as
        :meth:`_delete_faces` does; returns the copies' face ids."""
        copies = [(row[2], row[1]) for row in rows if row[2] is not None]
        return self._delete_faces(copies) if copies else []

    def _relink_copies(self, sha: str, copies: list[int], ids: list[int], faces: list[NewLibraryFace]) -> None:
        """Inside a transaction: a new library face (``ids``, ``faces``) of the photo ``sha`` that is
        the same face as an enrolled copy no library face links to any more (one of the same bytes:
        its file was forgotten and found again; or one of the ``copies`` of the faces it replaces:
        only its metadata changed) is that copy's face again: linked to it and named its person by
        the user (never attached "auto")."""
        new = [(face_id, "", embedding_bytes(face.embedding)) for face_id, face in zip(ids, faces, strict=True)]
        for copy, person_id, blob in self._orphaned_copies(sha, copies):
            for face_id in same_faces([("", blob)], new):
                new = [row for row in new if row[0] != face_id]  # one copy per face
                self._assign_library_faces(person_id, [(face_id, copy)])

    def _orphaned_copies(self, sha: str, copies: list[int]) -> list[tuple[int, int, bytes]]:
        """(face id, person id, embedding bytes) of the enrolled copies made by naming a library face
        (``faces.from_library``) that no library face links to any more, among those of photo ``sha``
        and the face ids ``copies``."""
        return self._rows(
            "SELECT id, person_id, embedding FROM faces f WHERE (image_sha256 = ? OR id = ANY(?)) AND from_library "
            "AND NOT EXISTS (SELECT 1 FROM library_faces lf WHERE lf.enrolled_face_id = f.id)",
            (sha, sorted(copies)),
        )

    def _enrolled_photos(self, hashes: list[str]) -> set[str]:
        """Those of the image sha256 ``hashes`` that have an enrolled face."""
        return {sha for (sha,) in self._rows("SELECT image_sha256 FROM faces WHERE image_sha256 = ANY(?)", (list(hashes),))}

    def _copy_library_face(self, face_id: int, person_id: int) -> int:
        """Copy library face ``face_id`` into ``faces`` as ``person_id``'s; returns the new face id."""
        columns = ("source", "image_sha256", "box", "landmarks", "score", "crop", "crop_origin", "embedding", "model_id")
        row = self._row(
            "SELECT lp.path, lp.sha256, lf.box, lf.landmarks, lf.score, lf.crop, lf.crop_origin, lf.embedding, lf.model_id "
            "FROM library_faces lf JOIN library_photos lp ON lp.id = lf.photo_id WHERE lf.id = ?",
            (face_id,),
        )
        copy = {"person_id": person_id} | dict(zip(columns, row, strict=True))
        return self._insert("faces", [copy | {"created_at": time.time(), "from_library": True}])[0]

    def _assign_library_faces(self, person_id: int, faces: list[tuple[int, int | None]]) -> None:
        """Name (library face id, its enrolled copy or None) ``faces`` ``person_id``'s, assigned by the user, unclustered."""
        self._execute_many(
            "UPDATE library_faces SET person_id = ?, assigned = 'user', cluster = NULL, enrolled_face_id = ? WHERE id = ?",
            [(person_id, copy, face_id) for face_id, copy in faces],
        )

    def _erase_library_faces_of(self, person_id: int) -> int:
        """Inside a transaction: delete the library faces of ``person_id`` and those that are one of
        their enrolled faces again, remembering them as :meth:`remove_person` says; returns how many."""
        rows = self._rows(
            "DELETE FROM library_faces WHERE person_id = ? OR id = ANY(?) RETURNING id, photo_id, frame, box",
            (person_id, self._same_library_faces(person_id)),
        )
        self._remember_erased(rows)
        return len(rows)

    def _same_library_faces(self, person_id: int) -> list[int]:
        """The ids of the library faces that are one of ``person_id``'s enrolled faces again (the
        same photo sha256, embedding within SAME_FACE_DISTANCE: :func:`same_faces`), ascending."""
        enrolled = self._rows("SELECT image_sha256, embedding FROM faces WHERE person_id = ?", (person_id,))
        same = self._rows(
            "SELECT lf.id, lp.sha256, lf.embedding FROM library_faces lf JOIN library_photos lp ON lp.id = lf.photo_id "
            "WHERE lp.sha256 = ANY(?)",
            (sorted({sha for sha, _ in enrolled}),),
        )
        return sorted(same_faces(enrolled, same))

    def _remember_erased(self, rows: list[tuple]) -> int:
        """Inside a transaction: after library faces were deleted (``rows`` of id, photo id, frame,
        box), remember them as :meth:`remove_person` says (their photo keeps their positions in
        ``erased``; a photo left without faces goes, its sha256 stays in ``library_erased``);
        returns how many photos went."""
        gone = 0
        for photo_id in sorted({row[1] for row in rows}):
            erased = [(frame, box) for _, photo, frame, box in rows if photo == photo_id]
            sha, old, left = self._row(
                "SELECT sha256, erased, (SELECT COUNT(*) FROM library_faces WHERE photo_id = ?) FROM library_photos WHERE id = ?",
                (photo_id, photo_id),
            )
            if left:
                self._execute(
                    "UPDATE library_photos SET faces = ?, erased = ? WHERE id = ?", (left, erased_boxes(old, erased), photo_id)
                )
            else:
                self._execute("DELETE FROM library_photos WHERE id = ?", (photo_id,))
                self._execute(
                    "INSERT INTO library_erased(sha256, faces) VALUES (?, ?) ON CONFLICT (sha256) DO UPDATE SET faces = "
                    "CASE WHEN excluded.faces > library_erased.faces THEN excluded.faces ELSE library_erased.faces END",
                    (sha, len(erased)),
                )
                gone += 1
        return gone


def _same_face(seen: SeenFace, now: LibraryFace) -> bool:
    """Whether library face ``now`` is still as ``seen`` (names compared ignoring case and form)."""
    if (seen.person is None) != (now.person is None):
        return False
    if seen.person is None:
        return True
    return name_key(seen.person) == name_key(now.person) and seen.assigned in (None, now.assigned)


def _changed_meanwhile(face_id: int, seen: SeenFace, now: LibraryFace | None) -> ChangedMeanwhileError:
    """The error for library face ``face_id`` seen as ``seen`` and found as ``now`` (None: gone)."""
    was = f"named {seen.person!r}" if seen.person is not None else "unnamed"
    if now is None:
        what, owner = "was removed", None
    elif now.person is None:
        what, owner = "was unnamed", None
    else:
        how = " automatically" if now.assigned == "auto" else ""
        what, owner = f"was named {now.person!r}{how}", now.person
    return ChangedMeanwhileError(
        f"library face #{face_id} {what} meanwhile by another change (this one saw it {was}); nothing was changed", owner
    )


def choose_copies(rows: list[tuple], taken: set[str]) -> list[int]:
    """Which library faces to copy into ``faces`` when naming them: of ``rows`` (id, person id,
    enrolled face id, photo sha256, detection score, ...), the best-scored face of each photo whose
    sha256 is not ``taken`` by an enrolled face (image_sha256 is unique there); ids ascending."""
    chosen: dict[str, int] = {}
    for row in sorted(rows, key=lambda row: (-row[4], row[0])):
        if row[3] not in taken:
            chosen.setdefault(row[3], row[0])
    return sorted(chosen.values())


def same_faces(enrolled: list[tuple[str, bytes]], library: list[tuple[int, str, bytes]]) -> set[int]:
    """Which library faces are an enrolled face again: of ``library`` (id, photo sha256, embedding
    bytes), for each of ``enrolled`` (image sha256, embedding bytes), the nearest face of the same
    photo when it lies within SAME_FACE_DISTANCE (the same detection, embedded by the same model)."""
    found: set[int] = set()
    for sha, blob in enrolled:
        vector = np.frombuffer(blob, "<f4")
        best = None
        for face_id, photo_sha, other in library:
            if photo_sha != sha or len(other) != len(blob):
                continue
            distance = float(np.linalg.norm(np.frombuffer(other, "<f4") - vector))
            if distance < SAME_FACE_DISTANCE and (best is None or distance < best[0]):
                best = (distance, face_id)
        if best is not None:
            found.add(best[1])
    return found


def erased_boxes(old: str | None, faces: list[tuple[int | None, str]]) -> str:
    """The ``erased`` column of a photo (JSON) once ``faces`` (frame, box as JSON text) are erased
    from it too; only positions, no pixels nor embeddings."""
    boxes = json.loads(old) if old else []
    return json.dumps(boxes + [[frame, *json.loads(box)] for frame, box in faces])
