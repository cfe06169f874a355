"""Who changed the gallery: the acting party of the current context, and the events the store logs.

Every change a store commits writes one audit event in the same transaction, naming
:func:`current_actor`: "local user <login>" by default, or what :func:`acting_as` set (the
service sets "key <name>" for each request; a context variable, so threads and asyncio tasks
each keep their own).

The log holds no personal data: a person is stored as their numeric id (never reused), and
:class:`AuditEvent` gets their current name when read, or None once they are removed. Details
hold face ids, counts, settings and key names, never names, photo paths, image hashes or pixels.
"""

from __future__ import annotations

import contextvars
import getpass
import os
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from facesys.errors import InvalidValueError

MAX_ACTOR_LENGTH = 200
ACTIONS = (
    "enroll",
    "import",
    "remove_person",
    "remove_faces",
    "rename",
    "set_setting",
    "set_model",
    "replace_embeddings",
    "key_create",
    "key_revoke",
    "remove_empty_people",
    "repair",
    # the photo library (facesys/library/)
    "auto_attach",
    "forget_photos",
    "move_photos",
    "cluster",
    "name_faces",
    "unname_faces",
    "remove_library_faces",
    "reembed_library_faces",
    # retention (facesys/gallery/store/retention.py)
    "set_retention",
    "retention",
    # encryption at rest (facesys/gallery/sealing.py): detail {"faces": re-sealed}
    "encrypt",
    "rekey",
    "decrypt",
)

_actor: contextvars.ContextVar[str | None] = contextvars.ContextVar("facesys_actor", default=None)


@dataclass(frozen=True)
class AuditEvent:
    """One logged change: when (seconds since the epoch), who, what (one of ACTIONS), the person
    it concerned (their current name, None when removed or when it concerned nobody; ``person_id``
    is their stored id) and a JSON-able ``detail``."""

    at: float
    actor: str
    action: str
    person: str | None
    detail: dict = field(default_factory=dict)
    person_id: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def local_user() -> str:
    """ "local user <login>" (the uid when the login cannot be found)."""
    try:
        login = getpass.getuser()
    except Exception:  # no $USER and no passwd entry (containers): getuser raises OSError or KeyError
        login = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"local user {login}"


def current_actor() -> str:
    """Who the changes made now are logged as."""
    return _actor.get() or local_user()


def check_actor(actor: object) -> str:
    """``actor`` trimmed; InvalidValueError when it is not text, empty, too long or holds control characters."""
    if not isinstance(actor, str) or not actor.strip():
        raise InvalidValueError(f"actor: must be non-empty text, not {actor!r}")
    if len(actor) > MAX_ACTOR_LENGTH or any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in actor):
        raise InvalidValueError(f"actor {actor[:40]!r}: at most {MAX_ACTOR_LENGTH} characters, none of them control characters")
    return actor.strip()


@contextmanager
def acting_as(actor: str) -> Iterator[str]:
    """Log the changes made inside (in this thread or task) as done by ``actor``."""
    name = check_actor(actor)
    token = _actor.set(name)
    try:
        yield name
    finally:
        _actor.reset(token)
