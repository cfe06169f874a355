"""Gallery: a truth store, the vector index derived from it, and their administration.

Thread-safe: each call opens its own store connection; the in-memory index is shared and guarded
by a lock (it is brought up to date and searched under it). Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from facesys.config import DEFAULT_TARGET_FPIR, LOG_EVENTS, REEMBED_BATCH, default_gallery
from facesys.decide import ranking
from facesys.decide.calibration import Calibration
from facesys.decide.match import Candidate, OpenSetThreshold, ThresholdPolicy
from facesys.decide.ranking import Neighbours
from facesys.decide.scoring import DEFAULT_PERSON_SCORE
from facesys.errors import GalleryError, KeyMissingError, NoGalleryError, UnknownFaceError, UnknownKeyError, UnknownPersonError
from facesys.gallery.audit import AuditEvent
from facesys.gallery.index import DEFAULT_INDEX_BACKEND, VectorIndex, index_class
from facesys.gallery.index import sync as index_sync
from facesys.gallery.location import index_folder_of, is_database_url, public_form
from facesys.gallery.sealing import GalleryKey, key_from
from facesys.gallery.store import Carried, FaceRecord, NewFace, TruthStore, open_store, store_exists
from facesys.gallery.store.retention import RETENTION_SETTINGS
from facesys.gallery.store.subjects import HeldAbout
from facesys.keys import ApiKey, hash_key, new_key
from facesys.models import ModelInfo, ModelSpec

THRESHOLD_KINDS = ("verify", "identify")


@dataclass(frozen=True)
class Reembedded:
    """What a reindex did: enrolled faces and photo-library faces re-embedded from their crops."""

    faces: int
    library_faces: int


class Gallery:
    """The gallery at ``location``: a folder (SQLite) or a ``postgresql://`` URL; default
    ``$FACESYS_GALLERY`` or ``./gallery``.

    ``location`` is what messages show (a URL without its password). ``index_backend`` names the
    vector index (see ``facesys.gallery.index.INDEX_BACKENDS``); index files are kept in the
    gallery folder, or for a database in this machine's cache (``location.index_folder_of``).
    ``save_index``: write the index file whenever it changed (right for a short-lived process; a
    service keeps it in memory, follows changes with :meth:`follow` and calls :meth:`save_index`).
    ``key_file``: the key of an encrypted gallery (default ``$FACESYS_KEY_FILE``); a new gallery
    made with one is encrypted (facesys/gallery/sealing.py). Opening an encrypted gallery without
    its key, or a gallery in clear with a key, raises GalleryKeyError and writes nothing.
    """

    def __init__(
        self,
        location: str | Path | None = None,
        index_backend: str = DEFAULT_INDEX_BACKEND,
        save_index: bool = True,
        key_file: str | Path | None = None,
    ):
        address = str(location) if location is not None else default_gallery()
        self._key = key_from(key_file)  # None: $FACESYS_KEY_FILE, if set; a bad key file fails here
        self._address = address if is_database_url(address) else Path(address)  # what stores are opened with
        self.location = public_form(self._address)
        self.index_backend = index_backend
        self.saves_index = save_index
        self._index: VectorIndex | None = None
        self._lock = threading.RLock()
        self._erasure_finished = False  # whether index files of removed faces were looked for since opening
        self._person_faces = ranking.PersonFaces()
        self._calibration: tuple = (None, None, None, None)  # (gallery id, method), generation, size, value

    @property
    def is_folder(self) -> bool:
        """Whether the gallery is a folder on this machine (not a database server)."""
        return isinstance(self._address, Path)

    def __repr__(self) -> str:
        return f"Gallery({str(self.location)!r})"

    # -- opening --------------------------------------------------------------------------------

    def exists(self) -> bool:
        return store_exists(self._address)

    def open(self, create: bool = False) -> TruthStore:
        """The store (a context manager). GalleryError naming the place looked at when there is
        no gallery and ``create`` is False.

        The first open of this Gallery finishes an erasure that a killed removal left undone:
        saved index files that may hold removed faces are overwritten and deleted (the store
        itself finishes erasing its freed pages when opened); later removals are erased by
        whoever syncs the index past them (:func:`index_sync.keep`)."""
        if not create and not self.exists():
            raise NoGalleryError(self.location)
        store = open_store(self._address, create=create, key=self.key)
        if not self._erasure_finished:
            with contextlib.suppress(GalleryError):  # an unreachable database: the next open tries again
                index_sync.erase_removed(store, self.index_folder)
                self._erasure_finished = True
        return store

    @property
    def key(self) -> GalleryKey | None:
        """The gallery key given (``key_file``, else ``$FACESYS_KEY_FILE``); None: none."""
        return self._key

    def reseal(self, new_key: GalleryKey | None, key: GalleryKey | None = None) -> int:
        """Encrypt the gallery (``key`` None: it is in clear) with ``new_key``, re-key it (``key``
        its current key), or decrypt it (``new_key`` None), in one transaction; the index files
        sealed otherwise are overwritten and deleted, and so is the freed space of the database.
        From then on this Gallery opens it with ``new_key``. Returns how many faces were re-sealed."""
        if not self.exists():
            raise NoGalleryError(self.location)
        try:
            store = open_store(self._address, key=key)
        except KeyMissingError:
            if new_key is None:
                raise
            raise KeyMissingError(
                f"{self.location}: the gallery is encrypted already; 'facesys gallery rekey' changes its key",
                parameter="key_file",
            ) from None
        with store:
            count = store.reseal(new_key)
            index_sync.erase_removed(store, self.index_folder)
        with self._lock:
            self._key, self._index = new_key, None
        return count

    def copies_set_aside(self) -> list[Path]:
        """Files ``repair`` left in a folder gallery (a damaged database moved aside, a salvage
        export): kept for the user, they hold the faces as the gallery held them then (in clear
        if it was not encrypted yet). Empty for a database gallery."""
        if not self.is_folder or not self._address.is_dir():
            return []
        return sorted([*self._address.glob("gallery.sqlite3.damaged-*"), *self._address.glob("salvage-*.zip")])

    @property
    def index_folder(self) -> Path:
        """Where index files are saved."""
        return index_folder_of(self._address)

    def model(self, store: TruthStore | None = None) -> tuple[str, str] | None:
        """(model id, model name) of the embeddings stored, or None for a new or empty gallery."""
        if store is None:
            if not self.exists():
                return None
            with self.open() as opened:
                return self.model(opened)
        meta = store.meta()
        return (meta["model_id"], meta.get("model_name", meta["model_id"])) if "model_id" in meta else None

    def require_model(self, model_id: str, store: TruthStore | None = None) -> tuple[str, str] | None:
        """:meth:`model` (None for a new or empty gallery); GalleryError when the gallery holds
        embeddings of another model than ``model_id``."""
        held = self.model(store)
        if held is not None and held[0] != model_id:
            raise GalleryError(
                f"{self.location}: gallery was built with {held[0]}, not {model_id}; use model {held[1]!r}, "
                "or re-embed the gallery with the new model (gallery reindex)",
                parameter="model",
            )
        return held

    # -- people ---------------------------------------------------------------------------------

    def people(self) -> list[tuple[str, int]]:
        """(name, number of enrolled faces) of everyone; [] when there is no gallery."""
        if not self.exists():
            return []
        with self.open() as store:
            return store.people()

    def faces(self, name: str) -> list[FaceRecord]:
        """The enrolled face records of ``name``, oldest first (UnknownPersonError if nobody has
        that name, or there is no gallery)."""
        records = []
        if self.exists():
            with self.open() as store:
                records = store.faces(name)
        if not records:
            raise UnknownPersonError(f"no person named {name!r} in {self.location}")
        return records

    def crop(self, face_id: int) -> bytes:
        """The stored JPEG crop of face ``face_id``; UnknownFaceError when there is no such face."""
        jpeg = None
        if self.exists():
            with self.open() as store:
                jpeg = store.crop(face_id)
        if jpeg is None:
            raise UnknownFaceError(f"no face #{face_id} in {self.location}")
        return jpeg

    def library_crop(self, face_id: int) -> bytes:
        """The stored JPEG crop of library face ``face_id``; UnknownFaceError when there is no such face."""
        crops: dict[int, bytes] = {}
        if self.exists():
            with self.open() as store:
                crops = store.library_crops([face_id])
        if face_id not in crops:
            raise UnknownFaceError(f"no library face #{face_id} in {self.location}")
        return crops[face_id]

    def owner_of_photo(self, image_sha256: str) -> str | None:
        """Who the photo with this sha256 is enrolled as, if anyone."""
        if not self.exists():
            return None
        with self.open() as store:
            return store.person_of_image(image_sha256)

    def spelling_of(self, name: str) -> str | None:
        """The enrolled person whose name equals ``name`` ignoring case, as stored, or None."""
        if not self.exists():
            return None
        with self.open() as store:
            return store.person_named(name)

    def add_faces(self, faces: list[tuple[str, NewFace]], model: ModelInfo) -> list[int]:
        """Store (name, face) pairs in one transaction; the gallery is created (bound to ``model``)
        with its first face. DuplicatePhotoError when a photo is enrolled already."""
        with self.open(create=True) as store:
            if store.model_id is None:
                store.set_model(model.model_id, model.name, model.weights_sha256, model.dim)
            return store.add_faces(faces, model.model_id)

    def remove(self, name: str) -> int:
        """Forget a person: their faces, crops and index entries; returns the faces removed."""
        with self.open() as store:
            try:
                return store.remove_person(name)
            finally:  # even when erasing freed pages failed, or an earlier removal was killed
                self.refresh(store)

    def remove_faces(self, face_ids: list[int]) -> dict[int, str]:
        """Forget faces by id (a person left without faces goes too); returns face id -> person
        name of those that existed."""
        with self.open() as store:
            try:
                return store.remove_faces(face_ids)
            finally:
                self.refresh(store)

    def remove_face(self, face_id: int) -> str:
        """Forget one face (in one transaction); returns whose it was. UnknownFaceError when there
        is no such face."""
        removed = self.remove_faces([face_id]) if self.exists() else {}
        if face_id not in removed:
            raise UnknownFaceError(f"no face #{face_id} in {self.location}")
        return removed[face_id]

    def rename(self, old: str, new: str, seen: list[int] | None = None) -> None:
        """Rename a person (no re-embedding). ``seen``: ``old``'s face ids as the caller read them
        (default: as read here, just before); ChangedMeanwhileError naming the new name when
        another change renamed or removed ``old`` in between (compare-and-set in the store)."""
        with self.open() as store:
            if seen is None:
                seen = [face.id for face in store.faces(old)]
            store.rename_person(old, new, seen=seen)

    def forget_missing_photos(self, folder: str | Path, allow_share: float = 1.0) -> int:
        """Forget faces whose source photo lay under ``folder`` and no longer exists; returns how many.
        GalleryError (nothing forgotten) when that is more than ``allow_share`` of all faces."""
        if not self.exists():
            return 0
        folder = Path(folder).resolve()
        with self.open() as store:
            records = store.faces()
            gone = [f.id for f in records if Path(f.source).is_relative_to(folder) and not Path(f.source).exists()]
            if gone and len(gone) > allow_share * len(records):
                raise GalleryError(
                    f"{folder}: {len(gone)} of {len(records)} enrolled photos are missing there; "
                    "refusing to forget them (is the folder unmounted?); force it to forget them anyway"
                )
            if gone:
                store.remove_faces(gone)
                self.refresh(store)
        return len(gone)

    # -- search ---------------------------------------------------------------------------------

    def refresh(self, store: TruthStore, save: bool | None = None) -> VectorIndex:
        """The index of ``store``'s current state (kept in memory; saved when ``save``, by default
        when the gallery ``saves_index``)."""
        save = self.saves_index if save is None else save
        with self._lock:
            self._index = index_sync.synced(store, self.index_folder, self._index, self.index_backend, save)
            return self._index

    def save_index(self) -> None:
        """Write the in-memory index, brought up to the store's current state, to its file (a
        service does this when it stops); nothing when the store cannot be read (an index of an
        older state may hold faces removed since)."""
        with self._lock:
            if self._index is None:
                return
            with contextlib.suppress(GalleryError), self.open() as store:
                index_sync.keep(self.refresh(store, save=False), store, self.index_folder)

    def follow(self, stop: threading.Event, poll_s: float = 5.0) -> None:
        """Keep the in-memory index current until ``stop`` is set: woken by the store's change
        notifications (PostgreSQL LISTEN/NOTIFY) or every ``poll_s`` seconds. Searches sync the
        index themselves anyway; following takes that work off the requests. A store that cannot be
        reached is retried every ``poll_s`` seconds."""
        store: TruthStore | None = None
        while not stop.is_set():
            try:
                if store is None and self.exists():
                    store = self.open()
                if store is not None:
                    self.refresh(store)
                    store.wait_for_change(poll_s)
                else:
                    stop.wait(poll_s)
            except GalleryError:
                if store is not None:
                    with contextlib.suppress(Exception):
                        store.close()
                store = None
                stop.wait(poll_s)
        if store is not None:
            store.close()

    def search(self, vectors: np.ndarray, k: int, store: TruthStore | None = None, save: bool | None = None) -> Neighbours:
        """The ``k`` faces nearest each of (Q, D) float32 unit ``vectors`` (Euclidean), with names."""
        if store is None:
            with self.open() as opened:
                return self.search(vectors, k, opened, save)
        with self._lock:
            index = self.refresh(store, save)
            distances, ids = index.search(vectors, k)
            size = len(index)
        return Neighbours(distances, ids, store.names_of(ids), size)

    def identify(
        self,
        vectors: np.ndarray,
        top_k: int,
        policy: ThresholdPolicy,
        method: str = DEFAULT_PERSON_SCORE,
        store: TruthStore | None = None,
    ) -> tuple[list[list[Candidate]], OpenSetThreshold]:
        """For each of (Q, D) float32 unit ``vectors``: the ``top_k`` enrolled people, best first, by person
        score (facesys/decide/scoring.py), each with their faces nearest first; and the open-set threshold
        ``policy`` gives this gallery. The decision is facesys/decide/ranking.py's ``identify``, as in evaluation."""
        if store is None:
            with self.open() as opened:
                return self.identify(vectors, top_k, policy, method, opened)
        search, calibration = partial(self.search, store=store), partial(self.calibration, method, store)
        return ranking.identify(vectors, search, self._faces_of(store), top_k, policy, calibration, method)

    def _faces_of(self, store: TruthStore) -> ranking.FacesOf:
        """A person's (face ids, embeddings, photo of each id) in ``store``, through the per-generation cache."""

        def load(name: str) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
            records = store.faces(name)
            ids = np.array([r.id for r in records], np.int64)
            vectors = store.vectors(ids) if len(ids) else np.zeros((0, store.dim), np.float32)
            return ids, vectors, {r.id: r.source for r in records}

        return self._person_faces.reader(store.generation, load)

    def calibration(self, method: str = DEFAULT_PERSON_SCORE, store: TruthStore | None = None) -> Calibration | None:
        """The gallery's own stranger calibration (facesys/decide/calibration.py); None when too small to tell.
        Kept in memory and recomputed when the number of people (beyond 50 people: by a tenth) or
        that of faces (by a tenth) changes: it costs up to 1,000 identifications."""
        if store is None:
            with self.open() as opened:
                return self.calibration(method, opened)
        key, generation = (store.gallery_id, method), store.generation
        with self._lock:
            cached_key, cached_generation, cached_size, value = self._calibration
        if cached_key == key and cached_generation == generation:
            return value
        people = len(store.people())
        size = (people if people < 50 else round(math.log(people, 1.1)), round(math.log(max(store.face_count(), 1), 1.1)))
        if cached_key == key and cached_size == size:
            with self._lock:
                self._calibration = (key, generation, size, value)
            return value

        def faces(ids: np.ndarray) -> tuple[np.ndarray, list[str]]:
            owners = store.names_of(ids)
            kept = [i for i in ids.tolist() if i in owners]
            return store.vectors(np.array(kept, np.int64)), [owners[i] for i in kept]

        search = partial(self.search, store=store)
        value = ranking.calibrate(store.face_ids(), faces, people, search, self._faces_of(store), method)
        with self._lock:
            self._calibration = (key, generation, size, value)
        return value

    def index_info(self, kind: str | None = None) -> dict:
        """The search index (kind, faces, kind setting, seconds to get it ready); ``kind`` forces
        a kind first (``auto`` returns to choosing by size)."""
        kinds = index_class(self.index_backend).kinds
        if kind is not None and kind not in kinds:
            raise GalleryError(f"index kind {kind!r}: choose from {', '.join(kinds)}")
        with self.open() as store:
            if kind is not None:
                store.set_setting(index_sync.INDEX_KIND_SETTING, None if kind == "auto" else kind)
            started = time.perf_counter()
            index = self.refresh(store)
            seconds = time.perf_counter() - started
            forced = store.setting(index_sync.INDEX_KIND_SETTING) or "auto"
        return {"kind": index.kind, "faces": len(index), "forced": forced, "seconds": seconds}

    # -- settings -------------------------------------------------------------------------------

    def thresholds(self, store: TruthStore | None = None) -> dict[str, float | None]:
        """Calibrated ``verify`` and ``identify`` thresholds stored in the gallery (None = not set)."""
        if store is None:
            if not self.exists():
                return dict.fromkeys(THRESHOLD_KINDS)
            with self.open() as opened:
                return self.thresholds(opened)
        values = {kind: store.setting(f"{kind}_threshold") for kind in THRESHOLD_KINDS}
        return {kind: None if value is None else float(value) for kind, value in values.items()}

    def policy(
        self,
        spec: ModelSpec,
        override: float | None = None,
        target_fpir: float = DEFAULT_TARGET_FPIR,
        model_id: str | None = None,
        store: TruthStore | None = None,
    ) -> ThresholdPolicy:
        """The thresholds in force for ``spec``'s model: ``override``, else this gallery's calibrated
        ones (only while it holds ``model_id``; None: whichever model it holds), else the model's."""
        if store is None:
            if not self.exists():
                return ThresholdPolicy(override, dict.fromkeys(THRESHOLD_KINDS), spec.threshold, spec.far_table, target_fpir)
            with self.open() as opened:
                return self.policy(spec, override, target_fpir, model_id, opened)
        held = self.model(store)
        same_model = held is not None and model_id in (None, held[0])
        calibrated = self.thresholds(store) if same_model else dict.fromkeys(THRESHOLD_KINDS)
        return ThresholdPolicy(override, calibrated, spec.threshold, spec.far_table, target_fpir)

    def set_threshold(self, kind: str, value: float | None) -> None:
        """Store a calibrated ``verify`` or ``identify`` threshold (None removes it)."""
        if kind not in THRESHOLD_KINDS:
            raise GalleryError(f"threshold kind {kind!r}: choose from {', '.join(THRESHOLD_KINDS)}")
        if value is not None and not (math.isfinite(value) and 0.0 < value <= 2.0):
            raise GalleryError(f"threshold {value}: must be a distance in (0, 2]")
        with self.open() as store:
            store.set_setting(f"{kind}_threshold", value)

    # -- API keys and the audit log ---------------------------------------------------------------

    def create_key(self, name: str, scope: str, expires_at: float | None = None, rate: str | None = None) -> str:
        """Make an API key (the gallery is created if missing), expiring at ``expires_at`` (None:
        never), limited to ``rate`` requests (``10/s``; None: no limit); returns the key itself,
        which is stored only as its hash: shown once, it cannot be read back."""
        key = new_key()
        with self.open(create=True) as store:
            store.add_api_key(name, scope, hash_key(key), expires_at, rate)
        return key

    def keys(self) -> list[ApiKey]:
        """Every API key, active and revoked, oldest first (never the keys themselves)."""
        if not self.exists():
            return []
        with self.open() as store:
            return store.api_keys()

    def key_for(self, key: str, store: TruthStore | None = None, any_state: bool = False) -> ApiKey | None:
        """The usable (active, unexpired) API key ``key`` is, or None; with ``any_state``, the key
        whatever its state (one lookup by hash: cheap enough per request)."""
        if not isinstance(key, str) or not key:
            return None
        if store is None:
            if not self.exists():
                return None
            with self.open() as opened:
                return self.key_for(key, opened, any_state)
        return store.api_key_for_hash(hash_key(key), any_state)

    def record_key_uses(self, uses: dict[str, float]) -> None:
        """Record when API keys (by hash, :func:`~facesys.keys.hash_key`) were last used."""
        if uses and self.exists():
            with self.open() as store:
                store.record_key_uses(uses)

    def has_keys(self) -> bool:
        """Whether any API key is active."""
        if not self.exists():
            return False
        with self.open() as store:
            return store.has_api_keys()

    def keys_required(self, store: TruthStore | None = None) -> bool:
        """Whether every request must carry a key: the gallery has, or ever had, an API key (so
        revoking the last one never lets anonymous callers in)."""
        if store is None:
            if not self.exists():
                return False
            with self.open() as opened:
                return self.keys_required(opened)
        return store.keys_required()

    def revoke_key(self, name: str) -> None:
        """Revoke the active API key ``name``; UnknownKeyError when there is none."""
        if not self.exists():
            raise UnknownKeyError(f"no active key named {name!r} in {self.location}")
        with self.open() as store:
            store.revoke_api_key(name)

    def log(self, limit: int | None = LOG_EVENTS) -> list[AuditEvent]:
        """The latest ``limit`` audit events (None: all), newest first; [] when there is no gallery."""
        if not self.exists():
            return []
        with self.open() as store:
            return store.audit_log(limit)

    # -- administration -------------------------------------------------------------------------

    def stats(self) -> dict:
        """People, faces, model, thresholds and sizes of the gallery."""
        with self.open() as store:
            stats = store.stats()
        return stats | {f"{kind}_threshold": value for kind, value in self.thresholds().items()}

    def check(self) -> list[str]:
        """Problems in the gallery (empty when healthy): the store's own checks, and whether the
        saved index agrees with it (every id and vector). A damaged database is reported, not raised."""
        with self.open() as store:
            problems = store.check()
            try:
                problems += index_sync.problems(store, self.index_folder, self.index_backend)
            except GalleryError:  # the store's read errors; the database cannot be read whole
                problems.append(
                    "index: not compared with the database, which cannot be read whole ('gallery repair' rebuilds it)"
                )
        return problems

    def notes(self) -> list[str]:
        """What ``check`` says besides problems: normal states worth knowing (no saved index of
        the current state yet: derived, built on the next search)."""
        if not self.is_folder:  # a database's index is a per-machine cache: its absence says nothing
            return []
        with self.open() as store:
            note = index_sync.state(store, self.index_folder, self.index_backend)
        return [note] if note else []

    def repair(self) -> list[str]:
        """Rebuild everything derived (index), drop people without faces; returns what was done.

        A damaged database is rebuilt from the rows that can still be read: they are exported to
        a temporary zip in the gallery folder, the damaged files are moved aside (kept, as
        ``gallery.sqlite3.damaged-<time>``), a new database is made and the rows (with the model,
        thresholds, index kind and the readable photo library) imported into it, with the API keys and audit log that can be
        read (face ids in older events are those of the damaged database) and a "repair" event;
        then the index is rebuilt. Other processes must not use the gallery meanwhile."""
        from facesys.gallery.portable import export_gallery, import_gallery

        done = []
        with self.open() as store:
            damage = [p for p in store.check() if p.startswith("sqlite:")]
            if not damage:
                if removed := store.remove_empty_people():
                    done.append(f"removed {removed} person(s) without faces")
                store.erase_freed_pages()  # finishes a removal whose erasure failed (full disk)
                with self._lock:
                    index_sync.clean(self.index_folder)
                    self._index = None
                    self.refresh(store)
                done.append("rebuilt the index")
                return done
            stamp = time.strftime("%Y%m%d-%H%M%S")
            salvage = self.location / f"salvage-{stamp}.zip"
            lost: list[int] = []
            written = export_gallery(store, salvage, on_unreadable=lost.append)
            carried = store.salvage_keys_and_log()
            try:
                aside = store.set_aside(f"damaged-{stamp}")
            except GalleryError:
                salvage.unlink(missing_ok=True)
                raise
        with self._lock:
            self._index = None  # the new database is another gallery (new id)
            index_sync.clean(self.index_folder)
            try:
                with self.open(create=True) as fresh:
                    import_gallery(fresh, salvage, action="repair")
                    people = len(fresh.people())
                    detail = {"faces": written, "lost": lost[0] if lost else 0, "damaged_copy": Path(aside).name}
                    kept = self._carry_keys_and_log(fresh, carried, detail)
                    self.refresh(fresh)
            except GalleryError as exc:
                raise GalleryError(
                    f"{self.location}: the damaged database was moved to {aside} and its readable rows saved to {salvage}, "
                    f"but rebuilding failed ({exc}); import that file with 'facesys gallery import'"
                ) from None
        salvage.unlink(missing_ok=True)
        done.append(f"the database was damaged ({damage[0].removeprefix('sqlite: ').partition(' (')[0]})")
        done.append(
            f"rebuilt the database from its readable rows: {written} face(s) of {people} person(s) recovered, "
            f"{lost[0] if lost else 0} face row(s) could not be read and are lost (model, thresholds and index kind kept)"
        )
        done.append(f"kept the damaged database as {aside}; it still holds personal data (faces, crops) until you delete it")
        done.append(kept)
        done.append("rebuilt the index")
        return done

    @staticmethod
    def _carry_keys_and_log(fresh: TruthStore, carried: Carried, detail: dict) -> str:
        """Put the API keys and audit log read from a damaged store into the one rebuilt from it,
        with a "repair" event of ``detail``; returns what was done. Failing here loses only those."""
        try:
            fresh.restore_keys_and_log(carried, detail)
        except GalleryError as exc:
            return f"the API keys and audit log could not be carried over ({exc}); the damaged copy still holds them"
        return f"carried over {len(carried.keys)} API key(s) and {len(carried.events)} audit event(s) that could be read"

    def export(self, path: str | Path) -> tuple[int, int]:
        """Write the gallery to a portable zip (facesys/gallery/portable.py); returns (faces written,
        face rows that could not be read and were left out: 0 unless the database is damaged)."""
        from facesys.gallery.portable import export_gallery

        unreadable: list[int] = []
        with self.open() as store:
            written = export_gallery(store, path, on_unreadable=unreadable.append)
        return written, unreadable[0] if unreadable else 0

    def export_person(self, name: str, path: str | Path, clear: bool = False) -> HeldAbout:
        """Write everything held about ``name`` to the zip ``path``, for a data subject's access
        request (facesys/gallery/access.py); returns what was written. From an encrypted gallery
        the file is sealed with its key unless ``clear`` (the copy for the data subject).
        UnknownPersonError, nothing written, when nobody has that name."""
        from facesys.gallery.access import write_export

        held, data = self.person_archive(name)
        write_export(path, data, None if clear else self.key)
        return held

    def person_archive(self, name: str) -> tuple[HeldAbout, bytes]:
        """Everything held about ``name`` and its zip (bytes), as :meth:`export_person` writes it.
        UnknownPersonError when nobody has that name."""
        from facesys.gallery.access import person_archive

        if not self.exists():
            raise UnknownPersonError(f"no person named {name!r} in {self.location}")
        with self.open() as store:
            return person_archive(store, name)

    def retention(self) -> dict[str, str | None]:
        """How long unnamed library faces and audit events are kept: {"library": "90d" or None
        (for ever), "audit": ...} (facesys/gallery/store/retention.py)."""
        if not self.exists():
            return dict.fromkeys(RETENTION_SETTINGS)
        with self.open() as store:
            return store.retention()

    def set_retention(self, periods: dict[str, str | None]) -> dict[str, str | None]:
        """Set retention periods ("library", "audit" -> "90d"..., None: for ever; the gallery is
        created if missing); what has expired goes at once. Returns the periods in force."""
        with self.open(create=True) as store:
            return store.set_retention(periods)

    def import_(self, path: str | Path) -> tuple[int, int]:
        """Add the faces of an export; returns (added, skipped as already present)."""
        from facesys.gallery.portable import import_gallery

        with self.open(create=True) as store:
            result = import_gallery(store, path)
            self.refresh(store)
        return result

    def reembed(self, model: ModelInfo, embed_crops: Callable[[list[tuple]], np.ndarray]) -> Reembedded:
        """Re-embed every stored face, enrolled and in the photo library, from its crop with
        ``embed_crops`` ((crop JPEG, crop origin, landmarks) list -> (N, dim) unit vectors) and
        switch the gallery to ``model``; returns how many faces of each were done.

        Kill-safe: the enrolled faces and the gallery's model change in ONE transaction; then the
        library faces not of ``model`` are re-embedded REEMBED_BATCH at a time, each batch in its
        own transaction (a face's vector and model id change in one row update), and a file counts
        as scanned with ``model`` once all its faces are. A kill leaves every face with its old
        vector and model id or its new ones; the next reindex finishes the library (it picks the
        faces whose model id is not ``model``'s), and a scan meanwhile reads their files again
        (a scan of the old model is refused: the gallery holds ``model``)."""
        vectors: dict[int, np.ndarray] = {}
        with self.open() as store:
            pending: list[tuple[int, tuple]] = []

            def flush() -> None:
                embedded = embed_crops([crop for _, crop in pending])
                vectors.update(zip([face_id for face_id, _ in pending], embedded, strict=True))
                pending.clear()

            for face_id, jpeg, origin, landmarks in store.crops():
                pending.append((face_id, (jpeg, origin, landmarks)))
                if len(pending) == REEMBED_BATCH:
                    flush()
            if pending:
                flush()
            store.replace_embeddings(model.model_id, model.name, model.weights_sha256, model.dim, vectors)
            with self._lock:
                self._index = None
                self.refresh(store)
            library, after = 0, 0
            while batch := store.library_faces_to_reembed(model.model_id, after, REEMBED_BATCH):
                embedded = embed_crops([crop for _, *crop in batch])
                ids = [face_id for face_id, *_ in batch]
                library += store.reembed_library_faces(model.model_id, dict(zip(ids, embedded, strict=True)))
                after = ids[-1]
            store.reembed_library_faces(model.model_id, {})  # files left without faces count as scanned with it
        return Reembedded(len(vectors), library)
