"""Schemathesis hooks for fuzzing ``facesys serve`` (tests/service/test_fuzz_api.py, or by hand:
``SCHEMATHESIS_HOOKS=tests.service.fuzz_hooks schemathesis run URL/openapi.json -H "Authorization: Bearer KEY"``).

The fuzzer is given an admin key named FUZZ_KEY; revoking it would leave it locked out (401 for the
rest of the run), so a request to revoke it is sent for another name instead. Uploads are drawn
from real face photos (./../shared/data/lfw) as well as schemathesis's own small files and random
bytes, so that enroll and verify are reached with photos they accept.
"""

from __future__ import annotations

import unicodedata

import schemathesis
from hypothesis import strategies as st

from tests.conftest import DATA

FUZZ_KEY = "fuzz-admin"
LIBRARY_FACES = 7  # library face ids 1..7 (tests/service/conftest.py's library_gallery)
FACES = [
    DATA / "lfw" / person / f"{person}_000{n}.jpg" for person in ("Colin_Powell", "Hu_Jintao", "Aaron_Peirsol") for n in (1, 2)
]
PHOTOS = [path.read_bytes() for path in FACES if path.is_file()]


def _key_name(name: object) -> str:
    return unicodedata.normalize("NFC", str(name)).strip().casefold()


@schemathesis.hook
def before_call(context, case, kwargs) -> None:
    """Never revoke the fuzzer's own key (any spelling the service could read as its name)."""
    revoking = case.method.upper() == "DELETE" and case.path == "/v1/keys/{name}"
    if revoking and _key_name(case.path_parameters.get("name", "")) == _key_name(FUZZ_KEY):
        case.path_parameters["name"] = "not-the-fuzz-key"


@schemathesis.hook
def map_body(context, body):
    """Library face ids drawn at random name nothing (404 every time, so the operation never
    succeeds): positive ids are folded onto LIBRARY_FACES, the ids a small test library has."""
    operation = context.operation
    if operation is not None and operation.path in ("/v1/library/faces/name", "/v1/library/faces/unname"):
        ids = body.get("face_ids") if isinstance(body, dict) else None
        if isinstance(ids, list) and all(type(i) is int and i >= 1 for i in ids):
            body["face_ids"] = [1 + (i - 1) % LIBRARY_FACES for i in ids]
    return body


if PHOTOS:
    from schemathesis.core.file_samples import FILE_SAMPLES

    # A real photo in one draw of ten: faces make enroll and verify succeed, and cost a network pass each.
    others = st.one_of(st.sampled_from(list(FILE_SAMPLES.values())), st.binary(max_size=4096))
    schemathesis.openapi.format("binary", st.integers(0, 9).flatmap(lambda n: st.sampled_from(PHOTOS) if n == 0 else others))
