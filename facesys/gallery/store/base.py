"""The truth store: what every gallery backend (SQLite, PostgreSQL) keeps and answers, and how.

A store holds people, their faces (source, image hash, box, landmarks, score, JPEG crop,
embedding) and a few named settings; it counts its changes in a ``generation`` and can say which
faces were added or removed since an earlier generation, so a derived vector index can follow it
without reading everything again. Face ids and person ids are never reused. Embeddings are (dim,)
float32 unit vectors compared by Euclidean distance. Every change is one transaction, and writes
one audit event (facesys/gallery/audit.py) in it. It also keeps the service's API keys, by hash,
and the photo library (faces found by scans).

Every rule is written once, in SQL valid for every backend (``?`` placeholders, ``= ANY(?)`` with
a list parameter, values both backends store alike), in five parts over the same primitives:
core.py (the primitives, identity, settings, change tracking, the audit log, people and faces),
library.py (the photo library), admin.py (API keys, repair, check, stats), retention.py (how
long unnamed library faces and the audit log are kept, enforced by every write) and subjects.py
(everything held about one person, for an access request); records and their
row encoding are in records.py, name, key and id rules in rules.py. A backend subclasses
:class:`TruthStore` with its connection, transactions (writers queue, so no row locks are
needed), SQL dialect, schema, how ids are made, erasure, check and size: the abstract methods of
:class:`~facesys.gallery.store.core.StoreCore`. ``tests/gallery/test_store_interface.py`` runs the
same suite against every backend listed in ``facesys.gallery.store.STORE_BACKENDS``.
"""

from __future__ import annotations

from facesys.gallery.store.admin import Administration
from facesys.gallery.store.library import PhotoLibrary
from facesys.gallery.store.retention import Retention
from facesys.gallery.store.subjects import DataSubjects


class TruthStore(PhotoLibrary, Administration, Retention, DataSubjects):
    """A gallery's source of truth. Use as a context manager or call :meth:`close`. Names given to
    methods are normalised with :func:`normalize_name`; a new name equal to an existing one
    ignoring case is refused. Errors are GalleryErrors naming the store."""
