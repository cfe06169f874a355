"""Typed answers of the service (they make the OpenAPI schema at /openapi.json); the fields are
those of the CLI's ``--json`` objects (docs/json.md)."""

from __future__ import annotations

import sys
import unicodedata
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

from facesys.errors import MAX_ID
from facesys.gallery.store.rules import _REFUSED_CATEGORIES, MAX_NAME_LENGTH
from facesys.keys import MAX_KEY_NAME_LENGTH, SCOPES

# -- the rules of names, as the OpenAPI document states them (the gallery enforces them: normalize_name) --


@cache
def refused_characters() -> str:
    """A regex character class body of the characters a name may not hold, for this Python's
    Unicode version: control, format, separator, private-use and unassigned (Cn runs shorter than
    64 code points are left out to keep it short: the gallery still refuses them); surrogates
    cannot reach the service in UTF-8. Astral ranges are written as the characters themselves."""
    runs: list[tuple[int, int]] = []
    start, unassigned_only = None, True
    for code in range(sys.maxunicode + 2):
        category = unicodedata.category(chr(code)) if code <= sys.maxunicode else "Lo"
        if category in _REFUSED_CATEGORIES - {"Cs"}:
            if start is None:
                start, unassigned_only = code, True
            unassigned_only &= category == "Cn"
        elif start is not None:
            if not unassigned_only or code - start >= 64:
                runs.append((start, code - 1))
            start = None

    def char(code: int) -> str:
        return f"\\u{code:04X}" if code < 0x10000 else chr(code)

    return "".join(char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in runs)


# Whitespace a name may hold (the other whitespace characters are controls or separators, refused).
SPACES = "\\u0020\\u00A0\\u1680\\u2000-\\u200A\\u202F\\u205F\\u3000"


def name_pattern() -> str:
    """The regex of a name: characters from none of the refused kinds, not only whitespace."""
    refused = refused_characters()
    return f"^[{SPACES}]*[^\\s{refused}][^{refused}]*$"


def name_rules(max_length: int, reserved: bool) -> Any:
    """``json_schema_extra`` of a name: its length and the characters it may hold (computed when
    the OpenAPI document is first made, not at import)."""

    def extra(schema: dict) -> None:
        schema.update(minLength=1, maxLength=max_length, pattern=name_pattern())
        rules = (
            f"At most {max_length} characters once trimmed"
            + (" (inner whitespace collapses to one space)" if reserved else "")
            + ", at least one that is not whitespace; no control, format (zero-width, bidi), separator, private-use "
            "or unassigned characters" + ("; 'unknown' (any case) is reserved." if reserved else ".")
        )
        schema["description"] = f"{schema.get('description', '').rstrip('.')}. {rules}".lstrip(". ")

    return extra


PERSON_NAME = name_rules(MAX_NAME_LENGTH, reserved=True)
KEY_NAME = name_rules(MAX_KEY_NAME_LENGTH, reserved=False)


def exact_integer_bounds(node: Any) -> Any:
    """The OpenAPI document with the bounds of its integers as integers: FastAPI's document model
    holds ``minimum``/``maximum`` as floats, and 2**63 - 1 as a float reads as 2**63, an id that
    overflows (the only unrepresentable bound the service declares is MAX_ID)."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in ("minimum", "maximum"):
                if isinstance(node.get(key), float):
                    node[key] = MAX_ID if node[key] >= float(MAX_ID) else int(node[key])
        for value in node.values():
            exact_integer_bounds(value)
    elif isinstance(node, list):
        for value in node:
            exact_integer_bounds(value)
    return node


class Versioned(BaseModel):
    schema_version: int = 1


class ErrorDetail(BaseModel):
    code: str = Field(description="bad_request, unauthorized, forbidden, not_found, conflict, too_large, ...")
    message: str = Field(description="One line naming the file or field and the problem")


class ErrorAnswer(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ready"]
    model: str
    gallery: str
    batches: int = Field(description="Recognition batches run by this worker process")
    batched_images: int = Field(description="Images those batches held")


class EnrolledPhoto(BaseModel):
    face_id: int
    source: str | None = Field(description="The photo it was enrolled from")


class PhotoDistance(EnrolledPhoto):
    distance: float


class CandidateOut(BaseModel):
    name: str
    distance: float = Field(description="Person score: distance to the person's template (mean of their embeddings)")
    face_id: int = Field(description="The person's enrolled face nearest the probe")
    faces: list[PhotoDistance] = Field(description="The person's enrolled faces nearest the probe (3; all with explain=true)")


class FaceOut(BaseModel):
    box: list[float] = Field(description="[x1, y1, x2, y2] pixels of the EXIF-rotated image")
    score: float
    name: str | None = Field(description="null: unknown")
    distance: float | None
    threshold: float
    threshold_source: str = Field(description="argument, gallery setting, gallery's own strangers or model table")
    quality: str | None = Field(description="Why the face is too poor to name anyone (then name is null), else null")
    face_id: int | None = Field(
        description="The enrolled face nearest this one (the photo that matched when named); null for an identify-scope key"
    )
    matched: EnrolledPhoto | None = Field(
        description="The enrolled photo that decided the name; null when unknown, and for an identify-scope key"
    )
    candidates: list[CandidateOut] = Field(description="The nearest people, best first; empty for an identify-scope key")


class ImageFaces(BaseModel):
    file: str
    faces: list[FaceOut]


class ImageProblem(BaseModel):
    file: str
    error: ErrorDetail


class IdentifySummary(BaseModel):
    files: int
    errors: int


class IdentifyAnswer(Versioned):
    model: str
    results: list[ImageFaces | ImageProblem]
    summary: IdentifySummary


class VerifySide(BaseModel):
    file: str
    box: list[float]
    faces_found: int


class VerifyAnswer(Versioned):
    model: str
    same: bool
    distance: float
    threshold: float
    threshold_source: Literal["argument", "gallery", "model default"]
    a: VerifySide
    b: VerifySide


class PhotoResult(BaseModel):
    source: str
    name: str
    status: Literal["enrolled", "duplicate", "rejected", "error"]
    reason: str | None = None
    face_id: int | None = None
    warning: str | None = None


class EnrollSummary(BaseModel):
    enrolled: int
    duplicate: int
    rejected: int
    error: int


class EnrollAnswer(Versioned):
    name: str
    results: list[PhotoResult]
    summary: EnrollSummary


class PersonSummary(BaseModel):
    name: str
    faces: int


class PeopleAnswer(Versioned):
    people: list[PersonSummary]


class StoredFace(BaseModel):
    face_id: int
    source: str
    box: list[float]
    score: float
    created_at: float = Field(description="Seconds since the Unix epoch")


class PersonAnswer(Versioned):
    name: str
    faces: list[StoredFace]


class NewName(BaseModel):
    name: str = Field(description="The person's new name", json_schema_extra=PERSON_NAME)


class RenamedAnswer(Versioned):
    name: str


class RemovedPersonAnswer(Versioned):
    removed: str
    faces: int


class RemovedFaceAnswer(Versioned):
    removed_face: int
    name: str


class KeyOut(BaseModel):
    name: str
    scope: str
    created_at: float
    revoked_at: float | None
    expires_at: float | None = None
    last_used_at: float | None = Field(None, description="Recorded at most once a minute per key per server process")
    rate: str | None = Field(None, description="Requests allowed per period, e.g. 10/second; null: no limit")


class KeysAnswer(Versioned):
    keys: list[KeyOut]


class NewKey(BaseModel):
    name: str = Field(min_length=1, max_length=MAX_KEY_NAME_LENGTH, json_schema_extra=KEY_NAME)
    scope: Literal[SCOPES] = "identify"  # type: ignore[valid-type]
    expires: str | None = Field(None, max_length=20, description="Lifetime, as keys create --expires: 30d (s, m, h, d, w, y)")
    rate: str | None = Field(None, max_length=20, description="Requests allowed, as keys create --rate: 10/s, 100/min")


class CreatedKey(Versioned):
    name: str
    scope: str
    key: str = Field(description="Shown this once; only its hash is stored")
    expires_at: float | None = None
    rate: str | None = None


class RevokedAnswer(Versioned):
    revoked: str


class Thresholds(BaseModel):
    verify: float | None = Field(None, gt=0.0, le=2.0)
    identify: float | None = Field(None, gt=0.0, le=2.0)


class ThresholdsAnswer(Versioned):
    verify: float | None
    identify: float | None


class EventOut(BaseModel):
    at: float
    actor: str
    action: str
    person: str | None
    person_id: int | None
    detail: dict[str, Any]


class LogAnswer(Versioned):
    events: list[EventOut]


# -- the photo library (facesys/library/, facesys/service/library_api.py) ------------------------


def _integral(value: Any) -> Any:
    """A JSON number with no fraction (``3.0``) as the integer it is (JSON Schema's "integer"
    admits it); anything else as sent, for the strict check (no strings, no booleans)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


LibraryFaceId = Annotated[int, Field(strict=True, ge=1, le=MAX_ID), BeforeValidator(_integral)]  # this order keeps min/max


class ClusterRunAnswer(Versioned):
    faces: int = Field(description="Unnamed library faces clustered")
    clusters: int = Field(description="Clusters they form")
    new: int = Field(description="Clusters that did not exist before this run (the others keep their ids)")
    placed: int = Field(description="Faces clustered for the first time")
    threshold: float | None = Field(description="Distance under which two faces are linked")
    poor: int = Field(description="Faces left out: too small, unsure or in profile to group (they can be named one by one)")


class ClusterOut(BaseModel):
    cluster: int = Field(description="The cluster's id (ids are never reused)")
    size: int = Field(description="Its faces")
    photos: int = Field(description="Files its faces come from")
    faces: list[int] = Field(description="Library face ids, the most typical first (the first max_faces of them)")


class ClustersAnswer(Versioned):
    total: int = Field(description="Clusters of at least min_size faces (the first limit are listed)")
    clusters: list[ClusterOut]


class PersonName(BaseModel):
    name: str = Field(
        description="The person's name (an existing person of that name, ignoring case, gets the faces)",
        json_schema_extra=PERSON_NAME,
    )


class LibraryFaces(BaseModel):
    face_ids: list[LibraryFaceId] = Field(min_length=1, max_length=10_000, description="Library face ids")
    expected: dict[Annotated[int, Field(ge=1, le=2**63 - 1)], str | None] | None = Field(
        None,
        max_length=10_000,
        description="Optional: library face id -> the person (null: unnamed) you saw it as (ids not in face_ids are "
        "ignored). The change is made only while each face is still so, else 409 naming who has it now. Without it: "
        "the faces as this request reads them, so of two requests changing the same faces at once one gets 409.",
    )


class LibraryFacesToName(LibraryFaces):
    name: str = Field(
        description="The person's name (an existing person of that name, ignoring case, gets the faces)",
        json_schema_extra=PERSON_NAME,
    )


class EnrolledCopy(BaseModel):
    library_face_id: int
    face_id: int = Field(description="Its new enrolled face (what identify searches)")


class NamedAnswer(Versioned):
    name: str = Field(description="The person as stored (an existing person's spelling when the name matched one)")
    faces: list[int] = Field(description="The library faces named")
    enrolled: list[EnrolledCopy]
    not_enrolled: list[int] = Field(description="Named without an enrolled copy: their photo has an enrolled face already")


class NamedClusterAnswer(NamedAnswer):
    cluster: int


class UnnamedAnswer(Versioned):
    unnamed: list[int] = Field(description="The faces that were named (their enrolled copies are removed)")


class RemovedLibraryFaceAnswer(Versioned):
    removed_library_face: int


class FaceSeenOut(BaseModel):
    box: list[float] = Field(description="[x1, y1, x2, y2] pixels of the EXIF-rotated image")
    frame: int | None = Field(description="The video frame; null for a photo")
    automatic: bool = Field(description="Attached by a scan's match, not named by anyone")
    library_face_id: int | None = Field(description="null for a photo enrolled directly")
    face_id: int | None = Field(description="The enrolled face; null when not enrolled")


class PhotoFoundOut(BaseModel):
    file: str = Field(description="The photo's path (on the machine it was enrolled or scanned on)")
    faces: list[FaceSeenOut]


class FoundAnswer(Versioned):
    name: str = Field(description="The person as stored")
    photos: list[PhotoFoundOut]
