"""gallery import on hostile or damaged exports: the whole archive is checked before anything is
written, refusals are one GalleryError naming the file and the problem, and zip bombs are refused
from the central directory alone. Also: settings (thresholds, index kind) survive a round trip."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesys.errors import GalleryError
from facesys.gallery import portable
from facesys.gallery.portable import export_gallery, import_gallery
from facesys.gallery.store import NewFace
from facesys.gallery.store.sqlite import SQLiteStore
from tests.gallery.conftest import MODEL, face

PEOPLE = ["Zoë", "'; DROP TABLE people; --", "Bob"]
SETTINGS = {"verify_threshold": "0.91", "identify_threshold": "0.77", "index_kind": "flat"}


def jpeg(seed: int, width: int = 20, height: int = 20) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), np.uint8)
    ok, encoded = cv2.imencode(".jpg", pixels)
    assert ok
    return encoded.tobytes()


def real_face(seed: int) -> NewFace:
    """conftest's synthetic face, with a real (tiny) JPEG crop."""
    return dataclasses.replace(face(seed), crop_jpeg=jpeg(seed))


def snapshot(store: SQLiteStore) -> tuple:
    meta = store.meta()
    ids, vectors, names = store.embeddings()
    kept = {k: meta.get(k) for k in ("model_id", "dim", "verify_threshold", "identify_threshold", "index_kind")}
    return store.people(), ids.tolist(), vectors.tobytes(), names, kept


@pytest.fixture()
def backup(tmp_path) -> Path:
    """An export of 8 faces (3 people) with real JPEG crops and calibrated settings."""
    with SQLiteStore(tmp_path / "source", create=True) as store:
        store.set_model(MODEL, "test-model", "0" * 64, 8)
        store.add_faces([(PEOPLE[seed % 3], real_face(seed)) for seed in range(8)], MODEL)
        for key, value in SETTINGS.items():
            store.set_setting(key, value)
        out = tmp_path / "backup.zip"
        assert export_gallery(store, out) == 8
    return out


@pytest.fixture()
def empty(tmp_path):
    with SQLiteStore(tmp_path / "empty", create=True) as store:
        yield store


@pytest.fixture()
def filled(tmp_path):
    """A gallery of the same model holding two other faces and its own settings."""
    with SQLiteStore(tmp_path / "filled", create=True) as store:
        store.set_model(MODEL, "test-model", "0" * 64, 8)
        store.add_faces([("Carol", real_face(100)), ("Dan", real_face(101))], MODEL)
        store.set_setting("verify_threshold", 0.5)
        yield store


def tamper(src: Path, change: Callable[[dict, dict], None]) -> Path:
    """A copy of the export ``src`` after ``change(manifest, files)``; files maps entry name ->
    bytes (delete a key to drop the entry)."""
    with zipfile.ZipFile(src) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(files.pop("manifest.json"))
    change(manifest, files)
    out = src.with_name("tampered.zip")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        for name, data in files.items():
            archive.writestr(name, data)
    return out


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def vectors(files: dict) -> np.ndarray:
    return np.load(io.BytesIO(files["embeddings.npy"]), allow_pickle=False).copy()


def set_face(row: int, key: str, value) -> Callable[[dict, dict], None]:
    def change(manifest, files):
        manifest["faces"][row][key] = value

    return change


def set_manifest(key: str, value) -> Callable[[dict, dict], None]:
    def change(manifest, files):
        manifest[key] = value

    return change


def drop_manifest(key: str) -> Callable[[dict, dict], None]:
    def change(manifest, files):
        del manifest[key]

    return change


def set_embedding(row: int, make: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict, dict], None]:
    def change(manifest, files):
        v = vectors(files)
        v[row] = make(v[row])
        files["embeddings.npy"] = npy(v.astype("<f4"))

    return change


def set_embeddings(make: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict, dict], None]:
    def change(manifest, files):
        files["embeddings.npy"] = make(vectors(files))

    return change


def set_file(name: str, data: bytes | None) -> Callable[[dict, dict], None]:
    def change(manifest, files):
        if data is None:
            del files[name]
        else:
            files[name] = data

    return change


def other_dim(manifest, files):
    """4-D unit embeddings under a manifest that says dim 8."""
    v = np.random.default_rng(0).normal(size=(8, 4)).astype("<f4")
    files["embeddings.npy"] = npy(v / np.linalg.norm(v, axis=1, keepdims=True))


def duplicate_sha(manifest, files):
    manifest["faces"][5]["image_sha256"] = manifest["faces"][2]["image_sha256"]


def shared_crop(manifest, files):
    manifest["faces"][4]["crop"] = manifest["faces"][1]["crop"]


def case_conflict(manifest, files):
    manifest["faces"][3]["person"] = "zoë"  # face 0 is "Zoë"


def short_faces(manifest, files):
    manifest["faces"].pop()


def truncated_crop(manifest, files):
    files["crops/3.jpg"] = files["crops/3.jpg"][:-300]


def npz(manifest, files):
    buffer = io.BytesIO()
    np.savez(buffer, vectors(files))
    files["embeddings.npy"] = buffer.getvalue()


CASES = {
    # manifest header and types
    "version as text": (set_manifest("version", "2"), "manifest version must be a whole number"),
    "version from the future": (set_manifest("version", 3), "export version 3 is newer"),
    "version a bool": (set_manifest("version", True), "manifest version must be a whole number"),
    "missing model_id": (drop_manifest("model_id"), "manifest has no model_id"),
    "model_id not text": (set_manifest("model_id", 5), "manifest model_id must be non-empty text"),
    "null model_id with faces": (set_manifest("model_id", None), "manifest model_id must be non-empty text"),
    "missing dim": (drop_manifest("dim"), "manifest has no dim"),
    "dim as text": (set_manifest("dim", "8"), "manifest dim must be a whole number"),
    "dim negative": (set_manifest("dim", -8), "manifest dim must be a whole number"),
    "other metric": (set_manifest("metric", "cosine"), "embeddings compared by 'cosine'"),
    "faces as text": (set_manifest("faces", "everyone"), "manifest faces must be a list, not str"),
    "faces missing": (drop_manifest("faces"), "manifest faces must be a list, not NoneType"),
    "settings as text": (set_manifest("settings", "fast"), "manifest settings must be an object"),
    "threshold too large": (set_manifest("settings", {"verify_threshold": 5}), "setting verify_threshold must be"),
    "threshold as text": (set_manifest("settings", {"identify_threshold": "0.8"}), "setting identify_threshold must"),
    "threshold NaN": (set_manifest("settings", {"verify_threshold": float("nan")}), "setting verify_threshold must"),
    "unknown index kind": (set_manifest("settings", {"index_kind": "magic"}), "setting index_kind must be one of"),
    # dimension and embeddings
    "manifest dim differs": (set_manifest("dim", 4), r"embeddings.npy holds \(8, 8\).*\(8, 4\)"),
    "embeddings of another dim": (other_dim, r"embeddings.npy holds \(8, 4\)"),
    "fewer faces than rows": (short_faces, r"embeddings.npy holds \(8, 8\).*\(7, 8\)"),
    "float64 embeddings": (set_embeddings(lambda v: npy(v.astype("<f8"))), "embeddings.npy holds .*float64"),
    "big-endian embeddings": (set_embeddings(lambda v: npy(v.astype(">f4"))), "embeddings.npy holds"),
    "pickled embeddings": (set_embeddings(lambda v: npy(np.array([object()] * 8))), "embeddings.npy holds"),
    "npz instead of npy": (npz, "embeddings.npy is not a plain .npy"),
    "garbage embeddings": (set_file("embeddings.npy", b"\x93NUMPY garbage"), "embeddings.npy is not a plain .npy"),
    "no embeddings": (set_file("embeddings.npy", None), "not a facesys gallery export"),
    "NaN embedding": (set_embedding(6, lambda r: np.full_like(r, np.nan)), "face 6: embedding is not finite"),
    "inf embedding": (set_embedding(2, lambda r: np.where(np.arange(8) == 0, np.inf, r)), "face 2: embedding is not finite"),
    "zero embedding": (set_embedding(1, np.zeros_like), r"face 1: embedding is \(near\) zero"),
    "tiny embedding": (set_embedding(1, lambda r: r * 1e-30), r"face 1: embedding is \(near\) zero"),
    "not unit length": (set_embedding(7, lambda r: r * 1.01), "face 7: embedding is not unit length"),
    # face entries
    "face not an object": (lambda m, f: m["faces"].__setitem__(3, 7), "face 3: must be an object, not int"),
    "face missing box": (lambda m, f: m["faces"][4].pop("box"), "face 4: missing 'box'"),
    "face missing crop": (lambda m, f: m["faces"][4].pop("crop"), "face 4: missing 'crop'"),
    "name with newline": (set_face(7, "person", "Ann\nBob"), "face 7: name 'Ann\\\\nBob' contains control"),
    "reserved name": (set_face(2, "person", "Unknown"), "face 2: 'Unknown' is reserved"),
    "empty name": (set_face(2, "person", "  "), "face 2: a person's name must not be empty"),
    "name not text": (set_face(2, "person", ["Ann"]), "face 2: a person's name must be text"),
    "bidi override in name": (set_face(1, "person", "Ann\u202eevil"), "face 1: name .* contains control"),
    "names differ in case only": (case_conflict, "face 3: person 'zoë' is spelled 'Zoë' elsewhere"),
    "landmarks 4 numbers": (set_face(7, "landmarks", [1, 2, 3, 4]), r"face 7: landmarks must be 5 \[x, y\] points"),
    "landmarks NaN": (set_face(1, "landmarks", [[float("nan"), 1]] * 5), "face 1: landmarks must be 5"),
    "landmarks text": (set_face(1, "landmarks", [["1", "2"]] * 5), "face 1: landmarks must be 5"),
    "landmarks triples": (set_face(1, "landmarks", [[1, 2, 3]] * 5), "face 1: landmarks must be 5"),
    "box 3 numbers": (set_face(0, "box", [1, 2, 3]), "face 0: box must be 4 finite numbers"),
    "box infinite": (set_face(0, "box", [1, 2, 3, float("inf")]), "face 0: box must be 4 finite numbers"),
    "box as dict": (set_face(0, "box", {"x": 1}), "face 0: box must be 4 finite numbers"),
    "box huge int": (set_face(0, "box", [1, 2, 3, 10**400]), "face 0: box must be 4 finite numbers"),
    "score above 1": (set_face(5, "score", 1.5), r"face 5: score must be a finite number in \[0, 1\]"),
    "score as text": (set_face(5, "score", "0.9"), "face 5: score must be a finite number"),
    "score NaN": (set_face(5, "score", float("nan")), "face 5: score must be a finite number"),
    "score a bool": (set_face(5, "score", True), "face 5: score must be a finite number"),
    "crop_origin 2 numbers": (set_face(3, "crop_origin", [0, 0]), "face 3: crop_origin must be 3 finite numbers"),
    "crop_origin zero scale": (set_face(3, "crop_origin", [0, 0, 0]), "face 3: crop_origin .* scale > 0"),
    "crop_origin negative scale": (set_face(3, "crop_origin", [0, 0, -2]), "face 3: crop_origin .* scale > 0"),
    "created_at as text": (set_face(3, "created_at", "yesterday"), "face 3: created_at must be a finite number"),
    "source not text": (set_face(3, "source", 12), "face 3: source must be a text"),
    "sha not hex": (set_face(3, "image_sha256", "../" * 20 + "abcd"), "face 3: image_sha256 must be 64 lowercase hex"),
    "sha a number": (set_face(3, "image_sha256", 12), "face 3: image_sha256 must be 64"),
    "duplicate sha in export": (duplicate_sha, "face 5: image_sha256 repeats face 2's"),
    # crops
    "crop entry missing": (set_file("crops/6.jpg", None), "face 6: crop crops/6.jpg is missing from the archive"),
    "crop name with ..": (set_face(2, "crop", "crops/../manifest.json"), "face 2: crop name .* is not crops/<n>.jpg"),
    "crop name absolute": (set_face(2, "crop", "/etc/passwd"), "face 2: crop name .* is not crops/<n>.jpg"),
    "crop name other entry": (set_face(2, "crop", "embeddings.npy"), "face 2: crop name .* is not crops/<n>.jpg"),
    "crop name not text": (set_face(2, "crop", 2), "face 2: crop name 2 is not crops/<n>.jpg"),
    "crop shared by two faces": (shared_crop, "face 4: crop crops/1.jpg is face 1's too"),
    "crop not a JPEG": (set_file("crops/4.jpg", b"GIF89a not a jpeg"), "face 4: crop crops/4.jpg is not a JPEG"),
    "crop only the JPEG magic": (set_file("crops/4.jpg", b"\xff\xd8crop-bytes-" + b"x" * 64), "face 4: crop crops/4.jpg is not"),
    "crop JPEG header then junk": (
        set_file("crops/4.jpg", jpeg(4)[:200] + b"\x00" * 200 + b"\xff\xd9"),
        "face 4: crop crops/4.jpg (is not a readable JPEG|does not decode)",
    ),
    "crop truncated": (truncated_crop, "face 3: crop crops/3.jpg is truncated"),
    "crop too many pixels": (set_file("crops/0.jpg", jpeg(0, width=4100, height=8)), "face 0: crop crops/0.jpg is 4100x8 pixels"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_export_is_refused_whole_into_an_empty_gallery(case, backup, empty):
    change, message = CASES[case]
    bad = tamper(backup, change)
    with pytest.raises(GalleryError, match=f"tampered.zip: {message}") as refused:
        import_gallery(empty, bad)
    assert str(refused.value).startswith(f"{bad}: ")
    assert empty.people() == [] and empty.face_count() == 0
    assert empty.model_id is None  # the model is bound only after the whole file passed
    assert all(empty.setting(key) is None for key in SETTINGS)


@pytest.mark.parametrize("case", ["landmarks 4 numbers", "crop not a JPEG", "not unit length", "duplicate sha in export"])
def test_a_bad_face_late_in_the_file_leaves_a_filled_gallery_unchanged(case, backup, filled):
    before = snapshot(filled)
    with pytest.raises(GalleryError, match=CASES[case][1]):
        import_gallery(filled, tamper(backup, CASES[case][0]))
    assert snapshot(filled) == before


def test_embeddings_of_another_dimension_than_the_gallery_are_refused(backup, tmp_path):
    def sixteen(manifest, files):
        v = np.random.default_rng(1).normal(size=(8, 16)).astype("<f4")
        files["embeddings.npy"] = npy(v / np.linalg.norm(v, axis=1, keepdims=True))
        manifest["dim"] = 16

    bad = tamper(backup, sixteen)
    with SQLiteStore(tmp_path / "g8", create=True) as store:
        store.set_model(MODEL, "test-model", "0" * 64, 8)
        with pytest.raises(GalleryError, match="tampered.zip: export holds 16-D embeddings; this gallery holds 8-D"):
            import_gallery(store, bad)
        assert store.people() == []
    with SQLiteStore(tmp_path / "g0", create=True) as store:  # self-consistent: an empty gallery takes it
        assert import_gallery(store, bad) == (8, 0)
        assert store.dim == 16


def test_round_trip_keeps_thresholds_and_index_kind(backup, empty):
    with zipfile.ZipFile(backup) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["version"] == 2  # 2: with the photo library
    assert manifest["settings"] == {"verify_threshold": 0.91, "identify_threshold": 0.77, "index_kind": "flat"}
    assert import_gallery(empty, backup) == (8, 0)
    assert empty.model_id == MODEL and empty.dim == 8
    assert float(empty.setting("verify_threshold")) == 0.91
    assert float(empty.setting("identify_threshold")) == 0.77
    assert empty.setting("index_kind") == "flat"
    assert [name for name, _ in empty.people()] == sorted(PEOPLE)
    assert sum(count for _, count in empty.people()) == 8
    assert import_gallery(empty, backup) == (0, 8)


def test_a_filled_gallery_keeps_its_own_settings(backup, filled):
    assert import_gallery(filled, backup) == (8, 0)
    assert float(filled.setting("verify_threshold")) == 0.5
    assert filled.setting("identify_threshold") is None and filled.setting("index_kind") is None


def test_version_1_without_settings_still_imports(backup, empty):
    old = tamper(backup, drop_manifest("settings"))
    assert import_gallery(empty, old) == (8, 0)
    assert all(empty.setting(key) is None for key in SETTINGS)


def test_unknown_settings_are_ignored_and_auto_is_the_default(backup, empty):
    odd = tamper(backup, set_manifest("settings", {"index_kind": "auto", "future_setting": [1, 2]}))
    assert import_gallery(empty, odd) == (8, 0)
    assert empty.setting("index_kind") is None and empty.setting("future_setting") is None


def test_a_photo_enrolled_as_someone_else_is_skipped(backup, filled):
    filled.add_face("Someone", real_face(3), MODEL)  # face 3 of the export is "Zoë" there
    assert import_gallery(filled, backup) == (7, 1)
    assert filled.person_of_image(real_face(3).image_sha256) == "Someone"


def test_a_name_spelled_otherwise_in_the_gallery_is_refused(backup, filled):
    filled.add_face("bob", real_face(200), MODEL)
    before = snapshot(filled)
    with pytest.raises(GalleryError, match="backup.zip: face 2: person 'Bob' is named 'bob' in this gallery"):
        import_gallery(filled, backup)
    assert snapshot(filled) == before


def test_a_failed_commit_leaves_an_empty_gallery_unbound(backup, empty, monkeypatch):
    empty.set_setting("verify_threshold", 1.1)

    def broken(faces, model_id, **options):
        raise GalleryError("disk full")

    monkeypatch.setattr(empty, "add_faces", broken)
    with pytest.raises(GalleryError, match="disk full"):
        import_gallery(empty, backup)
    assert empty.model_id is None and empty.meta().get("dim") is None
    assert float(empty.setting("verify_threshold")) == 1.1 and empty.setting("index_kind") is None


def test_an_export_of_an_unbound_gallery_imports_as_nothing(tmp_path, empty):
    with SQLiteStore(tmp_path / "nothing", create=True) as store:
        assert export_gallery(store, tmp_path / "nothing.zip") == 0
    assert import_gallery(empty, tmp_path / "nothing.zip") == (0, 0)
    assert empty.model_id is None


# -- zip bombs: refused from the central directory, before any entry is read -------------------------


@pytest.fixture()
def reads(monkeypatch) -> list[str]:
    """Names of the zip entries opened for reading."""
    opened: list[str] = []
    original = zipfile.ZipFile.open

    def spy(self, name, mode="r", *args, **kwargs):
        if mode == "r":
            opened.append(name if isinstance(name, str) else name.filename)
        return original(self, name, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    return opened


def test_a_900_mb_crop_in_a_small_zip_is_refused_unread(backup, empty, reads):
    bomb = backup.with_name("bomb.zip")
    with zipfile.ZipFile(backup) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name in source.namelist():
            if name != "crops/0.jpg":
                archive.writestr(name, source.read(name))
        with archive.open("crops/0.jpg", "w", force_zip64=True) as crop:
            zeros = bytes(8 * 2**20)
            for _ in range(900 // 8):
                crop.write(zeros)
    assert bomb.stat().st_size < 8 * 2**20
    reads.clear()
    with pytest.raises(GalleryError, match=r"bomb.zip: crops/0.jpg is 939,524,096 bytes uncompressed; a crop may be at most"):
        import_gallery(empty, bomb)
    assert reads == []
    assert empty.model_id is None


def test_the_total_uncompressed_size_is_limited(backup, empty, reads, monkeypatch):
    monkeypatch.setattr(portable, "MAX_TOTAL_BYTES", 4096)
    with pytest.raises(GalleryError, match=r"backup.zip: the archive holds [\d,]+ bytes uncompressed; at most 4,096"):
        import_gallery(empty, backup)
    assert reads == [] and empty.model_id is None


def test_an_absurd_compression_ratio_is_refused(backup, empty, reads):
    def padding(manifest, files):
        files["notes.txt"] = bytes(4 * 2**20)  # not a crop, but 4 MiB of zeros deflate ~1000:1

    bad = tamper(backup, padding)
    reads.clear()
    with pytest.raises(GalleryError, match="tampered.zip: notes.txt would expand 4,194,304 bytes .* zip bomb"):
        import_gallery(empty, bad)
    assert reads == []


def test_an_oversized_embeddings_entry_is_refused_unread(backup, empty, reads):
    bad = tamper(backup, lambda m, f: f.__setitem__("embeddings.npy", f["embeddings.npy"] + bytes(2**17)))
    reads.clear()
    with pytest.raises(GalleryError, match="embeddings.npy is [\\d,]+ bytes; 8 faces need far less"):
        import_gallery(empty, bad)
    assert "embeddings.npy" not in reads


def test_a_crop_declaring_too_many_pixels_is_not_decoded(backup, empty, monkeypatch):
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *args: decoded.append(1))
    bad = tamper(backup, set_file("crops/0.jpg", jpeg(0, width=8, height=5000)))
    with pytest.raises(GalleryError, match="face 0: crop crops/0.jpg is 8x5000 pixels; at most 4096x4096"):
        import_gallery(empty, bad)
    assert decoded == []
