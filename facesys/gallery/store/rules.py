"""The rules a store applies to what it is given: a person's name (how it is stored, when two
are the same person), an API key's name, scope and hash, and ids (whole numbers a row can have).
Pure functions, no SQL; each raises the typed error (facesys/errors.py) a caller shows as is.
"""

from __future__ import annotations

import operator
import re
import unicodedata
from collections.abc import Iterable

import numpy as np

from facesys.errors import MAX_ID, ConflictError, InvalidIdError, InvalidValueError, UnknownFaceError
from facesys.keys import MAX_KEY_NAME_LENGTH, SCOPES

MAX_NAME_LENGTH = 200
RESERVED_NAMES = ("unknown",)  # identify's answer for nobody: never a person's name
# Unicode categories refused in names: control, format (bidi overrides, zero-width joiners...),
# line and paragraph separators. They break one-name-per-line output or hide what a name says.
_REFUSED_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def normalize_name(name: object) -> str:
    """A person's name as stored: NFC, trimmed, inner whitespace collapsed to one space.

    GalleryError when it cannot name a person: empty, longer than MAX_NAME_LENGTH, holding
    control/format characters or line separators, or a reserved word ("unknown").
    """
    if not isinstance(name, str):
        raise InvalidValueError(f"a person's name must be text, not {type(name).__name__}")
    normal = " ".join(unicodedata.normalize("NFC", name).split())
    if not normal:
        raise InvalidValueError("a person's name must not be empty or only whitespace")
    if len(normal) > MAX_NAME_LENGTH:
        raise InvalidValueError(f"name is {len(normal)} characters long; at most {MAX_NAME_LENGTH} are allowed")
    _refuse_invisible("name", name)
    if normal.casefold() in RESERVED_NAMES:
        raise InvalidValueError(f"{normal!r} is reserved (identify's answer for nobody); choose another name")
    return normal


def _refuse_invisible(what: str, text: str) -> None:
    """GalleryError naming the control, format or separator characters in ``text``, if any."""
    bad = sorted({f"U+{ord(c):04X}" for c in text if unicodedata.category(c) in _REFUSED_CATEGORIES})
    if bad:
        raise InvalidValueError(f"{what} {text!r} contains control or invisible characters ({', '.join(bad)})")
    if "\ufffd" in text:  # what a decoder leaves for bytes that were not UTF-8: never stored as a name
        raise InvalidValueError(f"{what} {text!r} contains U+FFFD (text that was not valid UTF-8); send it as UTF-8")


def key_name(name: object) -> str:
    """An API key's name as stored: trimmed. GalleryError when it is not text, empty, longer than
    MAX_KEY_NAME_LENGTH or holds control or invisible characters."""
    if not isinstance(name, str):
        raise InvalidValueError(f"a key's name must be text, not {type(name).__name__}")
    trimmed = name.strip()
    if not trimmed:
        raise InvalidValueError("a key's name must not be empty")
    if len(trimmed) > MAX_KEY_NAME_LENGTH:
        raise InvalidValueError(f"key name is {len(trimmed)} characters long; at most {MAX_KEY_NAME_LENGTH} are allowed")
    _refuse_invisible("key name", trimmed)
    return trimmed


def check_new_key(name: object, scope: object, key_hash: object) -> str:
    """The name a new key is stored under (:func:`key_name`); GalleryError for an unknown scope,
    or a hash that is not 64 lowercase hex digits (so a clear key is never stored by mistake)."""
    if scope not in SCOPES:
        raise InvalidValueError(f"key scope {scope!r}: choose from {', '.join(SCOPES)}")
    if not isinstance(key_hash, str) or not _SHA256_HEX.fullmatch(key_hash):
        raise InvalidValueError("a key is stored by its sha256 hash (facesys.keys.hash_key), 64 lowercase hex digits")
    return key_name(name)


def check_key_spelling(name: str, taken: list[str], where: object) -> None:
    """ConflictError when a key name in ``taken`` (active or revoked) differs from ``name`` only in
    case: key names are unique ignoring case, so the audit log's "key NAME" means one key name."""
    for other in taken:
        if other != name and other.casefold() == name.casefold():
            raise ConflictError(
                f"a key named {other!r} exists already in {where}; key names are unique ignoring case (use {other!r} or another)"
            )


def name_key(name: str) -> str:
    """The form two names are compared in: "Ann" and "ann " are the same person."""
    return unicodedata.normalize("NFC", " ".join(name.split())).casefold()


def _whole_number(value: object) -> int | None:
    """``value`` as an int when it is a whole number (not a bool), else None."""
    try:
        return operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        return None


def valid_id(value: object, what: str = "face", low: int = 1) -> int:
    """``value`` as an int id; InvalidIdError when it is not a whole number from ``low`` to MAX_ID
    (no row can have it: checked before it reaches SQL, where it would overflow)."""
    number = _whole_number(value)
    if number is None or not low <= number <= MAX_ID:
        raise InvalidIdError(f"{value!r}: no {what} has this id (ids are whole numbers from {low} to {MAX_ID})")
    return number


def valid_ids(values: Iterable[object], what: str = "face") -> list[int]:
    """Each of ``values`` through :func:`valid_id` (ids >= 1)."""
    return [valid_id(value, what) for value in values]


def possible_ids(values: Iterable[object], what: str = "face") -> list[int]:
    """The whole numbers among ``values`` that a row could have (1 to MAX_ID); the others are left
    out like any id no row has. InvalidIdError for a value that is not a whole number."""
    numbers = [_whole_number(value) for value in values]
    for value, number in zip(values, numbers, strict=True):
        if number is None:
            raise InvalidIdError(f"{value!r}: no {what} has this id (ids are whole numbers from 1 to {MAX_ID})")
    return [number for number in numbers if 1 <= number <= MAX_ID]


def missing_library_faces(wanted: Iterable[int], found: Iterable[int], location: str) -> None:
    """UnknownFaceError naming the ids of ``wanted`` that are not in ``found``, if any."""
    missing = sorted(set(wanted) - set(found))
    if missing:
        shown = ", ".join(f"#{i}" for i in missing[:10]) + (", ..." if len(missing) > 10 else "")
        raise UnknownFaceError(f"no library face {shown} in {location}")


def id_list(face_ids) -> list[int]:
    """Distinct ids >= 0 (-1 means none), ascending, as Python ints for ``= ANY(?)``."""
    return sorted({int(i) for i in np.ravel(np.asarray(face_ids, np.int64)) if i >= 0})
