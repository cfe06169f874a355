"""The errors facesys raises. Each message names the file (or argument) and the problem.

Only the CLI turns them into one line and an exit code; library code raises them where the
problem happens.
"""

from __future__ import annotations


class FacesysError(Exception):
    """Base class of every error facesys raises on purpose.

    ``parameter`` names the argument the problem is about (``gallery``, ``model``, ``device``,
    ``precision``, ``threshold``), so a shell around the library can say which of its own
    options to change (the CLI adds its flag; a service would name its field).
    """

    def __init__(self, message: str = "", parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter


class ImageError(FacesysError):
    """A file that cannot be used as an image: missing, unreadable, corrupt, too large."""


class ImageTooLargeError(ImageError):
    """An image whose file or declared pixel size is over a limit."""


class NoFaceError(FacesysError):
    """An image in which no usable face was found."""


class ModelError(FacesysError):
    """A model that cannot be created: unknown name, missing or malformed weights."""


class GalleryError(FacesysError):
    """A gallery that cannot be opened or changed as asked."""


class NoGalleryError(GalleryError):
    """No gallery at a location that is only read (a service answers 404). The one wording of "no
    gallery here": ``first`` says what would make one (enrolling someone, scanning photos)."""

    def __init__(self, location: object, first: str = "enroll someone first"):
        super().__init__(f"{location}: no gallery here ({first}, or choose another gallery)", parameter="gallery")


class UnknownPersonError(GalleryError):
    """No person of that name in the gallery (a service answers 404)."""


class UnknownFaceError(GalleryError):
    """No enrolled face of that id in the gallery (a service answers 404)."""


class UnknownClusterError(GalleryError):
    """No cluster of that id among the unnamed faces of the photo library (a service answers 404)."""


class UnknownKeyError(GalleryError):
    """No active API key of that name in the gallery."""


MAX_ID = 2**63 - 1  # the largest face, library face, person or cluster id (SQLite INTEGER, PostgreSQL bigint)


class InvalidIdError(GalleryError):
    """An id no face or cluster can have: not a whole number, or outside what a gallery stores
    (1 to 2**63 - 1; clusters from 0). Nothing has it, so a service answers 404."""


class InvalidValueError(GalleryError):
    """A name or value the gallery cannot store: empty, too long, control characters, reserved
    (a service answers 400)."""


class ConflictError(GalleryError):
    """A change that clashes with what is stored: a name taken, an active key of that name (a
    service answers 409)."""


class NameConflictError(ConflictError):
    """A new name equals an existing person's name ignoring case (``existing`` is that name)."""

    def __init__(self, message: str, existing: str):
        super().__init__(message)
        self.existing = existing


class ChangedMeanwhileError(ConflictError):
    """A change refused because what it would change is no longer what the caller saw: another
    call named, unnamed, removed or renamed it first. ``owner`` is the name that won (None: it
    was unnamed or removed)."""

    def __init__(self, message: str, owner: str | None):
        super().__init__(message)
        self.owner = owner


class DuplicatePhotoError(GalleryError):
    """The photo (by sha256 of its bytes) is already enrolled, as ``owner``."""

    def __init__(self, message: str, owner: str):
        super().__init__(message)
        self.owner = owner


class GalleryVersionError(GalleryError):
    """A gallery whose schema is newer than this facesys supports (a service answers 503, naming
    the version, until facesys is upgraded)."""


class GalleryKeyError(GalleryError):
    """An encrypted gallery opened without its key or with another one, a key given to a gallery
    that is not encrypted, or a key file that cannot be read (a service refuses to start)."""


class KeyMissingError(GalleryKeyError):
    """An encrypted gallery opened without a key."""


class GalleryUnavailableError(GalleryError):
    """The gallery's database cannot be reached (a service answers 503 and recovers when it can)."""
