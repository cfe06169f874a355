"""Naming library faces (a cluster, or faces one by one), taking names back, removing faces, and
finding the photos a person appears in.

Naming copies each face into the enrolled faces (one per photo), so identify finds the person
afterwards; the gallery's search index follows at once (and is saved for the next process).
"""

from __future__ import annotations

from dataclasses import dataclass

from facesys.errors import ChangedMeanwhileError, FacesysError, UnknownClusterError, UnknownPersonError
from facesys.gallery.gallery import Gallery
from facesys.gallery.store.records import NamedFaces, SeenFace, seen_faces
from facesys.gallery.store.rules import name_key, valid_id


@dataclass(frozen=True)
class FaceSeen:
    """One face of a person in a photo: ``box`` x1, y1, x2, y2 source pixels, the video ``frame``
    (None for a photo), whether it was attached ``automatically`` by a scan, and its ids: the
    library face (None for a photo enrolled directly) and the enrolled face (None when it is not
    enrolled)."""

    box: list[float]
    frame: int | None
    automatic: bool
    library_face_id: int | None
    face_id: int | None

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "frame": self.frame,
            "automatic": self.automatic,
            "library_face_id": self.library_face_id,
            "face_id": self.face_id,
        }


@dataclass(frozen=True)
class PhotoFound:
    """A file a person appears in, with their faces there."""

    path: str
    faces: list[FaceSeen]

    def to_dict(self) -> dict:
        return {"file": self.path, "faces": [face.to_dict() for face in self.faces]}


@dataclass(frozen=True)
class Found:
    """The photos ``name`` (as stored) appears in, by path."""

    name: str
    photos: list[PhotoFound]

    def to_dict(self) -> dict:
        return {"name": self.name, "photos": [photo.to_dict() for photo in self.photos]}


def checked_ids(face_ids, what: str = "library face") -> list[int]:
    """``face_ids`` as a list of ints from 1 to MAX_ID without repeats (order kept); FacesysError
    naming a bad one (InvalidIdError, :func:`valid_id`) or none."""
    ids: list[int] = []
    for value in face_ids:
        number = valid_id(value, what)
        if number not in ids:
            ids.append(number)
    if not ids:
        raise FacesysError(f"no {what} id given")
    return ids


def _seen(store, ids: list[int], seen) -> dict[int, SeenFace]:
    """What the caller saw of library faces ``ids``: ``seen`` as given (face id -> SeenFace, or the
    person's name, None for unnamed; faces not in ``ids`` are left out), else the faces as read
    now, so the change is made only while nobody else changed them in between (compare-and-set
    in the store)."""
    if seen is None:
        return seen_faces(store.library_faces(ids))
    return {int(i): was if isinstance(was, SeenFace) else SeenFace(was) for i, was in seen.items() if int(i) in ids}


def name_faces(gallery: Gallery, face_ids, name: str, seen=None) -> NamedFaces:
    """Name library faces ``name`` (merged into an existing person of that name); see
    ``TruthStore.name_library_faces``. The index follows the new enrolled faces. ``seen``: face id
    -> the person (None: unnamed) the caller saw it as; ChangedMeanwhileError naming the person
    when another change came first (without it: as read here, just before)."""
    ids = checked_ids(face_ids)
    with gallery.open() as store:
        named = store.name_library_faces(ids, name, seen=_seen(store, ids, seen))
        gallery.refresh(store)
    return named


def name_cluster(gallery: Gallery, cluster: int, name: str) -> NamedFaces:
    """Name every unnamed face of ``cluster``; UnknownClusterError when it has none (named ``name``
    already, or never clustered). ChangedMeanwhileError naming the winner when another call named
    the cluster (or one of its faces) otherwise first: the faces are named only while still unnamed."""
    cluster = valid_id(cluster, "cluster", low=0)
    with gallery.open() as store:
        faces = store.library_faces(cluster=cluster, unnamed=True)
        if not faces:
            event = store.cluster_naming(cluster)
            who = repr(event.person) if event and event.person else "a person removed since"
            taken = f"cluster {cluster} was named {who} by {event.actor} already" if event else ""
            if event is not None and not (event.person and name_key(event.person) == name_key(name)):
                raise ChangedMeanwhileError(f"{taken}; 'facesys clusters' lists the unnamed ones", event.person)
            raise UnknownClusterError(
                f"no cluster {cluster} among the unnamed faces of {gallery.location}" + (f" ({taken})" if taken else "")
            )
        try:
            named = store.name_library_faces([face.id for face in faces], name, seen=seen_faces(faces), cluster=cluster)
        except ChangedMeanwhileError as exc:
            raise ChangedMeanwhileError(f"cluster {cluster}: {exc}", exc.owner) from None
        gallery.refresh(store)
    return named


def unname_faces(gallery: Gallery, face_ids, seen=None) -> list[int]:
    """Take library faces back from their person (their enrolled copies go); returns those that
    were named. ``seen``: as for :func:`name_faces`."""
    ids = checked_ids(face_ids)
    with gallery.open() as store:
        done = store.unname_library_faces(ids, seen=_seen(store, ids, seen))
        gallery.refresh(store)
    return done


def remove_faces(gallery: Gallery, face_ids, seen=None) -> int:
    """Delete library faces and their enrolled copies (crops and vectors erased); returns how many.
    ``seen``: as for :func:`name_faces`."""
    ids = checked_ids(face_ids)
    with gallery.open() as store:
        count = store.remove_library_faces(ids, seen=_seen(store, ids, seen))
        gallery.refresh(store)
    return count


CANDIDATES_SHOWN = 10  # names listed when a partial name fits several people


def person_matching(gallery: Gallery, name: str) -> str:
    """The person ``name`` means, as stored: the one named exactly that ignoring case; else the
    only one whose name, or a word of it, starts with ``name`` ignoring case ("salma" -> "Salma
    Hayek"). UnknownPersonError when nobody fits, or listing the candidates when several do."""
    stored = gallery.spelling_of(name) if isinstance(name, str) and name.strip() else None
    if stored is not None:
        return stored
    query = " ".join(name.split()).casefold() if isinstance(name, str) else ""
    fits = [
        person
        for person, _ in gallery.people()
        if query and (person.casefold().startswith(query) or any(word.startswith(query) for word in person.casefold().split()))
    ]
    if len(fits) == 1:
        return fits[0]
    if fits:
        shown = ", ".join(fits[:CANDIDATES_SHOWN]) + (", ..." if len(fits) > CANDIDATES_SHOWN else "")
        raise UnknownPersonError(f"{name!r} fits {len(fits)} people in {gallery.location}: {shown}; give the whole name")
    raise UnknownPersonError(f"no person named {name!r} in {gallery.location}")


def find(gallery: Gallery, name: str) -> Found:
    """The photos ``name`` appears in (see ``person_matching``: exact or partial, ignoring case):
    their enrolled photos and the library files with one of their faces (named or attached
    automatically), by path, each with the boxes. UnknownPersonError when nobody has that name
    or several people fit it."""
    stored = person_matching(gallery, name)
    with gallery.open() as store, store.reading():
        enrolled = store.faces(stored)
        library = store.library_faces(person=stored)
    copies = {face.enrolled_face_id for face in library if face.enrolled_face_id is not None}
    photos: dict[str, list[FaceSeen]] = {}
    for face in library:
        seen = FaceSeen(face.box, face.frame, face.assigned == "auto", face.id, face.enrolled_face_id)
        photos.setdefault(face.path, []).append(seen)
    for record in enrolled:
        if record.id not in copies:
            photos.setdefault(record.source, []).append(FaceSeen(record.box, None, False, None, record.id))
    return Found(stored, [PhotoFound(path, photos[path]) for path in sorted(photos)])
