"""Typed answers of the service (they make the OpenAPI schema at /openapi.json); the fields are
those of the CLI's ``--json`` objects (docs/json.md)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from facesys.keys import SCOPES


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


class CandidateOut(BaseModel):
    name: str
    distance: float
    face_id: int = Field(description="The person's enrolled face nearest the probe")


class FaceOut(BaseModel):
    box: list[float] = Field(description="[x1, y1, x2, y2] pixels of the EXIF-rotated image")
    score: float
    name: str | None = Field(description="null: unknown")
    distance: float | None
    threshold: float
    face_id: int | None = Field(description="The enrolled face nearest this one (the photo that matched when named)")
    candidates: list[CandidateOut]


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
    name: str = Field(description="The person's new name")


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


class KeysAnswer(Versioned):
    keys: list[KeyOut]


class NewKey(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scope: Literal[SCOPES] = "identify"  # type: ignore[valid-type]


class CreatedKey(Versioned):
    name: str
    scope: str
    key: str = Field(description="Shown this once; only its hash is stored")


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
