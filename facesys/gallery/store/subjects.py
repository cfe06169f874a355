"""What a store holds about one person, for a data subject's access request, mixed into
:class:`~facesys.gallery.store.base.TruthStore` (the export itself is facesys/gallery/access.py).

Everything is read in one snapshot: the person (name, created_at), every enrolled face with all
its columns (crop and embedding bytes included), their library faces (named by the user,
attached by a scan, or the same face as one of their enrolled photos: exactly the faces
:meth:`remove_person` erases with them) with their photo's path, and the audit events about
them (by person id).
"""

from __future__ import annotations

import json
from abc import abstractmethod
from dataclasses import dataclass

from facesys.errors import UnknownPersonError
from facesys.gallery.audit import AuditEvent
from facesys.gallery.store.core import StoreCore

_FACE_COLUMNS = (
    "id", "source", "image_sha256", "box", "landmarks", "score", "crop_origin", "model_id", "created_at", "sharpness",
    "from_library", "crop", "embedding",
)  # fmt: skip
_LIBRARY_COLUMNS = (
    "id", "path", "sha256", "scanned_at", "frame", "box", "landmarks", "score", "crop_origin", "model_id", "cluster",
    "person_id", "assigned", "enrolled_face_id", "crop", "embedding",
)  # fmt: skip
_LIBRARY_SELECT = (
    "SELECT lf.id, lp.path, lp.sha256, lp.scanned_at, lf.frame, lf.box, lf.landmarks, lf.score, lf.crop_origin, "
    "lf.model_id, lf.cluster, lf.person_id, lf.assigned, lf.enrolled_face_id, lf.crop, lf.embedding "
    "FROM library_faces lf JOIN library_photos lp ON lp.id = lf.photo_id"
)
_JSON_COLUMNS = ("box", "landmarks", "crop_origin")


@dataclass(frozen=True)
class HeldAbout:
    """What a store holds about one person: their stored ``name``, ``person_id`` and
    ``created_at``; ``faces``, their enrolled faces, and ``library_faces``, as column -> value
    (geometry parsed from JSON; ``crop`` JPEG and ``embedding`` little-endian float32 as bytes; a
    library face's ``how``: "named", "attached" or "same_face"), by id; ``events`` about them,
    oldest first."""

    name: str
    person_id: int
    created_at: float
    faces: list[dict]
    library_faces: list[dict]
    events: list[AuditEvent]


def _row(columns: tuple[str, ...], row: tuple) -> dict:
    """A row as column -> value: JSON geometry parsed, bytes as bytes."""
    values = dict(zip(columns, row, strict=True))
    for key in _JSON_COLUMNS:
        values[key] = json.loads(values[key])
    values["crop"], values["embedding"] = bytes(values["crop"]), bytes(values["embedding"])
    if "from_library" in values:  # SQLite keeps 1 or NULL, PostgreSQL a boolean
        values["from_library"] = bool(values["from_library"])
    return values


class DataSubjects(StoreCore):
    """What a TruthStore holds about one person (see the module's docstring)."""

    @abstractmethod
    def _same_library_faces(self, person_id: int) -> list[int]:
        """Provided by :class:`~facesys.gallery.store.library.PhotoLibrary`."""

    def held_about(self, name: str) -> HeldAbout:
        """Everything held about the person ``name`` (any spelling of the name), in one snapshot.
        UnknownPersonError when nobody has that name."""
        with self.reading():
            found = self._find_person(name)
            if found is None:
                raise UnknownPersonError(f"no person named {name!r} in {self.location}")
            person_id, stored = found
            (created_at,) = self._row("SELECT created_at FROM people WHERE id = ?", (person_id,))
            query = f"SELECT {', '.join(_FACE_COLUMNS)} FROM faces WHERE person_id = ? ORDER BY id"
            faces = [_row(_FACE_COLUMNS, row) for row in self._rows(query, (person_id,))]
            rows = self._rows(
                f"{_LIBRARY_SELECT} WHERE lf.person_id = ? OR lf.id = ANY(?) ORDER BY lf.id",
                (person_id, self._same_library_faces(person_id)),
            )
            library = [_row(_LIBRARY_COLUMNS, row) for row in rows]
            for face in library:  # "same_face": not theirs by name, but one of their enrolled faces again
                how = "attached" if face["assigned"] == "auto" else "named"
                face["how"] = how if face.pop("person_id") == person_id else "same_face"
            events = list(reversed(self.audit_log(None, person_id=person_id)))
        return HeldAbout(stored, person_id, float(created_at), faces, library, events)
