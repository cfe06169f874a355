"""The /v1 endpoints. Each one checks its scope (``require``), reads bounded uploads, and runs the
library's work off the event loop: recognition through the micro-batcher, everything else in the
thread pool (FastAPI runs plain ``def`` endpoints there). Changes are made ``acting_as`` the caller,
so the gallery's audit log names the key."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from typing import Annotated

from fastapi import APIRouter, File, Query, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool

from facesys.config import CANDIDATE_PHOTOS, LOG_EVENTS, TOP_K
from facesys.durations import parse_duration
from facesys.enroll import EnrollReport, enrollment_name
from facesys.errors import FacesysError, ImageError
from facesys.gallery.audit import acting_as
from facesys.keys import allows, parse_rate
from facesys.service import schemas
from facesys.service.deps import (
    ERRORS,
    JPEG,
    Admin,
    FaceId,
    KeyPath,
    MayEnroll,
    MayIdentify,
    PersonPath,
    Ready,
    RequestStoreDep,
    Threshold,
    person_name,
    within_time,
)
from facesys.service.errors import ApiError, api_error, error_body
from facesys.service.uploads import check_total_pixels, read_uploads
from facesys.vision.images import ImageBytes, check_image_bytes

router = APIRouter(prefix="/v1", responses=ERRORS)
STATUSES = ("enrolled", "duplicate", "rejected", "error")


def refusal(image: ImageBytes) -> ApiError | None:
    """Why an upload cannot be used, read from its header before anything is decoded (413 too
    large, 415 not an image), or None."""
    try:
        check_image_bytes(image)
    except FacesysError as exc:
        return api_error(exc)
    return None


@router.post("/verify", response_model=schemas.VerifyAnswer, tags=["recognition"])
async def verify(
    a: Annotated[UploadFile, File(description="First photo")],
    b: Annotated[UploadFile, File(description="Second photo")],
    caller: MayIdentify,
    service: Ready,
    threshold: Threshold = None,
) -> dict:
    """Are the largest faces of photos ``a`` and ``b`` the same person? 422 when one has no face."""
    limits = service.settings.max_files, service.settings.max_pixels
    images = [*(await read_uploads([a], "a", *limits)), *(await read_uploads([b], "b", *limits))]
    check_total_pixels(images, "a, b", service.settings.max_request_pixels)
    if problem := next(filter(None, map(refusal, images)), None):
        raise problem
    verified = service.batcher.submit(images, lambda both: service.system.verify_faces(*both, threshold))
    answer = await within_time(service, verified)
    return {"model": service.system.embedder.model_id, **answer.to_dict((images[0].name, images[1].name))}


@router.post("/identify", response_model=schemas.IdentifyAnswer, tags=["recognition"])
async def identify(
    images: Annotated[list[UploadFile], File(description="One or more photos")],
    request: Request,
    caller: MayIdentify,
    service: Ready,
    store: RequestStoreDep,
    top_k: Annotated[int, Query(ge=1, le=50, description="Candidates listed per face")] = TOP_K,
    threshold: Threshold = None,
    explain: Annotated[
        bool, Query(description=f"List every enrolled photo of each candidate, not only the {CANDIDATE_PHOTOS} nearest")
    ] = False,
) -> dict:
    """Every face of every photo, largest first: the enrolled person (or null), the enrolled photo that
    decided it, person scores, candidates with their nearest enrolled photos. With a key of scope
    ``identify`` (which may not list people) each face carries the decided name only: ``candidates``
    empty, ``face_id`` and ``matched`` null; asking it for candidates (``top_k`` above 1 or
    ``explain=true``) is refused 403."""
    lists_people = allows(caller.scope, "enroll")  # the scope GET /v1/people needs
    if not lists_people and (explain or ("top_k" in request.query_params and top_k > 1)):
        raise ApiError(
            403, f"{caller.actor} has scope {caller.scope!r}; top_k above 1 and explain list enrolled people: they need 'enroll'"
        )
    uploads = await read_uploads(images, "images", service.settings.max_files, service.settings.max_pixels)
    check_total_pixels(uploads, "images", service.settings.max_request_pixels)
    system = service.system
    refused = [refusal(upload) for upload in uploads]
    usable = [upload for upload, problem in zip(uploads, refused, strict=True) if problem is None]

    def finish(results: list) -> list:  # the library's one identify call, over the request's store (the key check's)
        with store.using() as opened, system.identifying(top_k if lists_people else 1, threshold, opened) as identify:
            return list(zip(results, identify(results), strict=True))

    found = iter(await within_time(service, service.batcher.submit(usable, finish)) if usable else [])
    results, problems = [], []
    for upload, problem in zip(uploads, refused, strict=True):
        result, faces = (None, []) if problem else next(found)
        problem = problem or (api_error(ImageError(result.error)) if result.error else None)  # not decodable, detection failed
        if problem:
            problems.append(problem)
            results.append({"file": upload.name, **error_body(problem.code, problem.message)})
        else:
            faces = [face.to_dict(None if explain else CANDIDATE_PHOTOS) for face in faces]
            results.append({"file": upload.name, "faces": faces if lists_people else [decided_only(f) for f in faces]})
    if len(problems) == len(uploads):  # nothing could be used: the first photo's problem
        raise problems[0]
    return {"model": system.embedder.model_id, "results": results, "summary": {"files": len(uploads), "errors": len(problems)}}


def decided_only(face: dict) -> dict:
    """A face of identify's answer for a caller that may not list people: the decided name, its
    distance and threshold; no candidates, no enrolled face id or photo path."""
    return face | {"face_id": None, "matched": None, "candidates": []}


# -- people -------------------------------------------------------------------------------------


@router.post(
    "/people/{name:name}",
    status_code=201,
    response_model=schemas.EnrollAnswer,
    response_model_exclude_none=True,
    responses={200: {"model": schemas.EnrollAnswer, "description": "Every usable photo was enrolled already"}},
    tags=["people"],
)
async def enroll(
    name: PersonPath,
    response: Response,
    images: Annotated[list[UploadFile], File(description="Photos of this person (one face each)")],
    caller: MayEnroll,
    service: Ready,
) -> dict:
    """Enroll photos of ``name`` (created if new): a result per photo, as ``facesys enroll --json``.
    201 when a photo was enrolled, 200 when all were enrolled already; an error when none could be.
    Each photo is committed on its own, not all-or-nothing: when the database becomes unreachable
    mid-request, the answer is still 201 with a result per photo, "enrolled" for those committed
    and "error" (not enrolled, database unreachable) for the rest; 503 when none was committed."""
    name = await run_in_threadpool(enrollment_name, person_name(name), service.system.gallery)  # 409: taken in another case
    uploads = await read_uploads(images, "images", service.settings.max_files, service.settings.max_pixels)
    check_total_pixels(uploads, "images", service.settings.max_request_pixels)

    def run() -> EnrollReport:
        with acting_as(caller.actor):
            return service.system.enroll(name, uploads)

    report = await within_time(service, run_in_threadpool(run))
    if report.unavailable is not None and not report.count("enrolled"):
        raise api_error(report.unavailable)  # nothing committed: 503
    counts = Counter(r.status for r in report.results)
    if not counts["enrolled"] and not counts["duplicate"]:  # nothing could be used: the first photo's problem
        first = report.results[0]
        if first.status == "rejected":
            raise ApiError(422, f"{first.source}: {first.reason}", "rejected")
        raise api_error(first.error or ImageError(first.reason or "not a usable image"))
    if not counts["enrolled"]:
        response.status_code = 200
    results = [r.to_dict() for r in report.results]
    return {"name": name, "results": results, "summary": {s: counts.get(s, 0) for s in STATUSES}}


@router.get("/people", response_model=schemas.PeopleAnswer, tags=["people"])
def list_people(caller: MayEnroll, service: Ready) -> dict:
    """Everyone enrolled, with their number of photos."""
    return {"people": [{"name": n, "faces": c} for n, c in service.system.gallery.people()]}


@router.get("/people/{name:name}", response_model=schemas.PersonAnswer, tags=["people"])
def show_person(name: PersonPath, caller: MayEnroll, service: Ready) -> dict:
    """A person's enrolled photos (404 when nobody has that name)."""
    faces = service.system.gallery.faces(person_name(name))
    rows = [
        {"face_id": f.id, "source": f.source, "box": f.box, "score": round(f.score, 4), "created_at": f.created_at} for f in faces
    ]
    return {"name": faces[0].person, "faces": rows}


@router.patch("/people/{name:name}", response_model=schemas.RenamedAnswer, tags=["people"])
def rename_person(name: PersonPath, body: schemas.NewName, caller: Admin, service: Ready) -> dict:
    """Rename a person (404 when missing, 409 when the new name is taken)."""
    old, new = person_name(name), person_name(body.name)
    with acting_as(caller.actor):
        service.system.gallery.rename(old, new)
    return {"name": new}


@router.delete("/people/{name:name}", response_model=schemas.RemovedPersonAnswer, tags=["people"])
def remove_person(name: PersonPath, caller: Admin, service: Ready) -> dict:
    """Forget a person: embeddings, crops and index entries are erased."""
    name = person_name(name)
    with acting_as(caller.actor):
        count = service.system.gallery.remove(name)
    return {"removed": name, "faces": count}


@router.get(
    "/faces/{face_id}/crop",
    response_class=Response,
    responses=JPEG,
    tags=["people"],
)
def face_crop(face_id: FaceId, caller: MayEnroll, service: Ready) -> Response:
    """The stored JPEG crop of one enrolled face."""
    return Response(service.system.gallery.crop(face_id), media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@router.delete("/faces/{face_id}", response_model=schemas.RemovedFaceAnswer, tags=["people"])
def remove_face(face_id: FaceId, caller: Admin, service: Ready) -> dict:
    """Remove one enrolled photo (the person goes too when it was their last)."""
    with acting_as(caller.actor):
        name = service.system.gallery.remove_face(face_id)
    return {"removed_face": face_id, "name": name}


@router.get("/stats", tags=["gallery"])
def stats(caller: MayEnroll, service: Ready) -> dict:
    """Size, model and thresholds of the gallery (as ``facesys gallery stats --json``)."""
    gallery = service.system.gallery
    return {"schema_version": 1, **gallery.stats()} if gallery.exists() else {"schema_version": 1, "people": 0, "faces": 0}


# -- administration -------------------------------------------------------------------------------


@router.get("/keys", response_model=schemas.KeysAnswer, tags=["admin"])
def list_keys(caller: Admin, service: Ready) -> dict:
    """Every API key, active and revoked (names and scopes only: keys are not stored)."""
    keys = service.system.gallery.keys()
    return {"keys": [dataclasses.asdict(key) for key in keys]}


@router.post("/keys", status_code=201, response_model=schemas.CreatedKey, tags=["admin"])
def create_key(body: schemas.NewKey, caller: Admin, service: Ready) -> dict:
    """A new key: shown in this answer only; the gallery keeps its hash."""
    expires_at = None if body.expires is None else time.time() + parse_duration(body.expires, "expires")
    rate = None if body.rate is None else parse_rate(body.rate)
    with acting_as(caller.actor):
        key = service.system.gallery.create_key(body.name, body.scope, expires_at, rate)
    return {"name": body.name, "scope": body.scope, "key": key, "expires_at": expires_at, "rate": rate}


@router.delete("/keys/{name:name}", response_model=schemas.RevokedAnswer, tags=["admin"])
def revoke_key(name: KeyPath, caller: Admin, service: Ready) -> dict:
    """Revoke a key: requests with it get 401 from now on."""
    with acting_as(caller.actor):
        service.system.gallery.revoke_key(name)
    return {"revoked": name}


@router.put("/thresholds", response_model=schemas.ThresholdsAnswer, tags=["admin"])
def set_thresholds(body: schemas.Thresholds, caller: Admin, service: Ready) -> dict:
    """Store calibrated thresholds in the gallery (null removes one; a field left out is kept)."""
    with acting_as(caller.actor):
        for kind in body.model_fields_set:
            service.system.set_threshold(kind, getattr(body, kind))
    return service.system.gallery.thresholds()


ZIP = {200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}, "description": "A zip"}}


@router.get("/export/people/{name:name}", response_class=Response, responses=ZIP, tags=["admin"])
def export_person(name: PersonPath, caller: Admin, service: Ready) -> Response:
    """Everything held about one person, for a data subject's access request: the zip that
    ``facesys gallery export --person`` writes (docs/privacy.md); 404 when nobody has that name."""
    _, data = service.system.gallery.person_archive(person_name(name))
    headers = {"Cache-Control": "private, no-store", "Content-Disposition": 'attachment; filename="person.zip"'}
    return Response(data, media_type="application/zip", headers=headers)


@router.get("/log", response_model=schemas.LogAnswer, tags=["admin"])
def audit_log(caller: Admin, service: Ready, limit: Annotated[int, Query(ge=1, le=10_000)] = LOG_EVENTS) -> dict:
    """The gallery's audit log, newest first: who changed what, when."""
    return {"events": [event.to_dict() for event in service.system.gallery.log(limit)]}
