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


class NoFaceError(FacesysError):
    """An image in which no usable face was found."""


class ModelError(FacesysError):
    """A model that cannot be created: unknown name, missing or malformed weights."""


class GalleryError(FacesysError):
    """A gallery that cannot be opened or changed as asked."""
