"""The /v1/library endpoints: the photo library (facesys/library/) over HTTP. Group the unnamed
faces, list the groups with their crops, name a group or single faces (merged into an existing
person of that name), take names back, remove faces, and find the photos a person appears in.

Scanning is not offered: it would read folders of the server named by the caller. Scan with
``facesys scan`` on the server's machine. Scopes follow docs/service.md: reading faces and
naming them needs ``enroll``, deleting a face ``admin``. Changes are made ``acting_as`` the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from facesys.errors import MAX_ID, NoGalleryError
from facesys.gallery.audit import acting_as
from facesys.service import schemas
from facesys.service.auth import Caller
from facesys.service.deps import ERRORS, JPEG, Admin, MayEnroll, PersonPath, Ready, person_name

router = APIRouter(prefix="/v1", responses=ERRORS, tags=["library"])
LibraryFaceId = Annotated[int, Path(ge=1, le=MAX_ID, description="A library face's id")]
ClusterId = Annotated[int, Path(ge=0, le=MAX_ID, description="A cluster's id")]


@contextmanager
def changing(service, caller: Caller) -> Iterator[None]:
    """Around a change of library faces: 404 when there is no gallery (so no such face or cluster),
    and the change made ``acting_as`` the caller (library errors get their status from LIBRARY_ERRORS:
    a ConflictError, e.g. faces made by another model, is 409)."""
    gallery = service.system.gallery
    if not gallery.exists():
        raise NoGalleryError(gallery.location, "scan photos first")
    with acting_as(caller.actor):
        yield


def named(result) -> dict:
    """A NamedFaces as NamedAnswer's fields (as ``facesys name --json``)."""
    pairs = [{"library_face_id": lib, "face_id": face} for lib, face in sorted(result.enrolled.items())]
    return {"name": result.name, "faces": result.faces, "enrolled": pairs, "not_enrolled": result.not_enrolled}


@router.post("/library/cluster", response_model=schemas.ClusterRunAnswer)
def cluster(
    caller: MayEnroll,
    service: Ready,
    threshold: Annotated[float | None, Query(gt=0.0, le=2.0, description="Link faces closer than this distance")] = None,
) -> dict:
    """Group the unnamed library faces by person (as ``facesys cluster --json``). Incremental:
    clusters that persist keep their ids; new faces join them or form new ones."""
    if not service.system.gallery.exists():
        return {"faces": 0, "clusters": 0, "new": 0, "placed": 0, "threshold": threshold}
    with acting_as(caller.actor):
        return service.system.cluster(threshold).to_dict()


@router.get("/library/clusters", response_model=schemas.ClustersAnswer)
def list_clusters(
    caller: MayEnroll,
    service: Ready,
    min_size: Annotated[int, Query(ge=1, description="Only clusters of at least this many faces")] = 1,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Clusters listed at most")] = 200,
    max_faces: Annotated[int, Query(ge=1, le=1000, description="Face ids listed per cluster at most")] = 24,
) -> dict:
    """The clusters of unnamed faces, largest first: id, size, files and face ids (most typical first)."""
    found = service.system.clusters(min_size)
    rows = [{**c.to_dict(), "faces": c.faces[:max_faces]} for c in found[:limit]]
    return {"total": len(found), "clusters": rows}


@router.get(
    "/library/faces/{face_id}/crop",
    response_class=Response,
    responses=JPEG,
)
def library_face_crop(face_id: LibraryFaceId, caller: MayEnroll, service: Ready) -> Response:
    """The stored JPEG crop of one library face (404 when there is none)."""
    jpeg = service.system.gallery.library_crop(face_id)
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@router.post("/library/clusters/{cluster}/name", response_model=schemas.NamedClusterAnswer)
def name_cluster(cluster: ClusterId, body: schemas.PersonName, caller: MayEnroll, service: Ready) -> dict:
    """Name every face of a cluster (merged into an existing person of that name); their faces are
    enrolled, so identify names the person from now on. 404 for no such cluster."""
    name = person_name(body.name)
    with changing(service, caller):
        result = service.system.name_cluster(cluster, name)
    return {"cluster": cluster, **named(result)}


@router.post("/library/faces/name", response_model=schemas.NamedAnswer)
def name_faces(body: schemas.LibraryFacesToName, caller: MayEnroll, service: Ready) -> dict:
    """Name single library faces (moving them from whoever they were given to before)."""
    name = person_name(body.name)
    with changing(service, caller):
        return named(service.system.name_faces(body.face_ids, name, body.expected))


@router.post("/library/faces/unname", response_model=schemas.UnnamedAnswer)
def unname_faces(body: schemas.LibraryFaces, caller: MayEnroll, service: Ready) -> dict:
    """Take library faces back from their person (automatic or named); their enrolled copies go,
    and the faces are unnamed again (clustered by the next ``cluster``)."""
    with changing(service, caller):
        return {"unnamed": service.system.unname_faces(body.face_ids, body.expected)}


@router.delete("/library/faces/{face_id}", response_model=schemas.RemovedLibraryFaceAnswer)
def remove_library_face(face_id: LibraryFaceId, caller: Admin, service: Ready) -> dict:
    """Delete one library face entirely (crop, embedding and enrolled copy); its file stays recorded,
    so a re-scan does not find it again until the file changes."""
    with changing(service, caller):
        service.system.remove_library_faces([face_id])
    return {"removed_library_face": face_id}


@router.get("/library/find/{name:name}", response_model=schemas.FoundAnswer)
def find(name: PersonPath, caller: MayEnroll, service: Ready) -> dict:
    """The photos a person appears in (enrolled and library photos), each with the boxes of their
    faces and whether a scan attached them automatically (as ``facesys find --json``)."""
    return service.system.find(person_name(name)).to_dict()
