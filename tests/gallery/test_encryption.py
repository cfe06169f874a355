"""Encryption at rest on every store backend (synthetic faces): what is sealed, that it reads back
the same, keys refused, encrypt/rekey/decrypt in place, processes that opened the gallery before
it changed, and an attacker's search of every file (and of a PostgreSQL dump) for clear bytes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from facesys.errors import GalleryKeyError
from facesys.gallery import Gallery
from facesys.gallery.sealing import GalleryKey, write_new_key
from facesys.gallery.store import open_store
from facesys.gallery.store.records import NewLibraryFace, ScannedPhoto
from tests import postgres
from tests.gallery.conftest import MODEL, face

DIM = 8
# A JPEG's first bytes: start of image, then a JFIF or Exif header or a quantisation table (long
# enough that random ciphertext of a few MB does not hold one by chance, as it would FF D8 FF)
JPEG_START = re.compile(rb"\xff\xd8\xff(?:\xe0..JFIF\x00|\xe1..Exif\x00|\xdb)", re.DOTALL)


@pytest.fixture()
def key(tmp_path) -> GalleryKey:
    return write_new_key(tmp_path / "gallery.key")


@pytest.fixture()
def other_key(tmp_path) -> GalleryKey:
    return write_new_key(tmp_path / "other.key")


@pytest.fixture()
def location(backend, tmp_path) -> str | Path:
    """Where a new gallery of ``backend`` goes (nothing made yet)."""
    if backend == "sqlite":
        return tmp_path / "g"
    try:
        return postgres.shared_cluster().create_database()
    except postgres.PostgresUnavailable as exc:
        pytest.skip(str(exc).splitlines()[0])


def fill(store, seeds=range(1, 6)) -> list:
    """Enroll faces ``seeds`` (two people) and a library photo with two faces; returns the faces."""
    if store.model_id is None:
        store.set_model(MODEL, "test-model", "0123456789abcdef" * 4, DIM)
    faces = [face(seed) for seed in seeds]
    store.add_faces([("Ann" if i % 2 else "Bob", f) for i, f in enumerate(faces)], MODEL)
    library = [face(100 + seed) for seed in seeds[:2]]
    photo = ScannedPhoto(f"/library/{seeds[0]}.jpg", 10, 1, f"{1000 + seeds[0]:064x}")
    found = [NewLibraryFace(f.box, f.landmarks, f.score, f.crop_jpeg, f.crop_origin, f.embedding) for f in library]
    store.record_photo(photo, found, MODEL)
    return faces + library


def clear_bytes_found(data: bytes, faces) -> list[str]:
    """What of ``faces``' biometric data appears in clear in ``data``: an embedding (its bytes as
    stored, or its first 16), a crop, JPEG start-of-image markers, landmarks as stored (JSON)."""
    found = []
    for f in faces:
        vector = np.asarray(f.embedding, "<f4").tobytes()
        if vector in data or vector[:16] in data:
            found.append("embedding")
        if f.crop_jpeg[:64] in data:
            found.append("crop")
        landmarks = json.dumps([[round(float(x), 2), round(float(y), 2)] for x, y in f.landmarks])
        if landmarks.encode() in data or landmarks[1:20].encode() in data:
            found.append("landmarks")
    if JPEG_START.search(data):
        found.append("JPEG marker")
    return found


def every_file(folder: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file())


def database_dump(url: str) -> bytes:
    """A plain pg_dump of the gallery's database (what a stolen backup holds), with every bytea
    value (dumped as hex) decoded and appended."""
    cluster = postgres.shared_cluster()
    dump = shutil.which("pg_dump", path=str(cluster.bin)) or str(cluster.bin / "pg_dump")
    text = subprocess.run([dump, "--dbname", url], check=True, capture_output=True, timeout=60).stdout
    return text + b"".join(bytes.fromhex(value.decode()) for value in re.findall(rb"\\\\x([0-9a-f]+)", text))


def all_stored_bytes(location) -> bytes:
    return every_file(location) if isinstance(location, Path) else database_dump(location)


def test_an_encrypted_gallery_reads_back_what_was_stored(location, key):
    with open_store(location, create=True, key=key) as store:
        assert store.encrypted
        faces = fill(store)
        ids, vectors, _ = store.embeddings()
        np.testing.assert_array_equal(vectors, np.stack([f.embedding for f in faces[:5]]))
        assert store.crop(int(ids[0])) == faces[0].crop_jpeg
        record = store.faces("Bob")[0]
        np.testing.assert_allclose(record.landmarks, np.round(faces[0].landmarks, 2))
        library = store.library_faces()
        assert [store.library_crops([lf.id])[lf.id] for lf in library] == [f.crop_jpeg for f in faces[5:]]
        vectors = store.library_vectors([lf.id for lf in library])
        np.testing.assert_array_equal(vectors, np.stack([f.embedding for f in faces[5:]]))
        assert store.check() == []


def test_no_biometric_byte_is_stored_in_clear(location, key):
    """The attacker's view: every file of the folder gallery, or a dump of the database."""
    with open_store(location, create=True, key=key) as store:
        faces = fill(store)
        store.remove_person("Bob")  # a removal's freed space, too
        store.add_faces([("Cy", face(50))], MODEL)
        assert clear_bytes_found(all_stored_bytes(location), [*faces, face(50)]) == []  # open: with its WAL
    assert clear_bytes_found(all_stored_bytes(location), [*faces, face(50)]) == []


def test_the_same_gallery_in_clear_shows_them(location):
    """The search above can fail: on a gallery in clear it finds every kind of value."""
    with open_store(location, create=True) as store:
        faces = fill(store)
    found = set(clear_bytes_found(all_stored_bytes(location), faces))
    assert found == {"embedding", "crop", "landmarks", "JPEG marker"}


def test_missing_wrong_and_unwanted_keys_are_refused_and_nothing_is_written(location, key, other_key):
    with open_store(location, create=True, key=key) as store:
        fill(store)
    before = all_stored_bytes(location) if isinstance(location, Path) else None
    with pytest.raises(GalleryKeyError, match="encrypted; give its key with --key-file"):
        open_store(location)
    with pytest.raises(GalleryKeyError, match=f"{other_key.source}: not the key of the encrypted gallery"):
        open_store(location, key=other_key)
    if before is not None:
        assert all_stored_bytes(location) == before
    plain = location.with_name("plain") if isinstance(location, Path) else postgres.shared_cluster().create_database()
    with open_store(plain, create=True) as store:
        fill(store)
    with pytest.raises(GalleryKeyError, match="not encrypted, but a key was given .*gallery encrypt --key-file"):
        open_store(plain, key=key)


def test_encrypt_rekey_and_decrypt_in_place(location, key, other_key):
    with open_store(location, create=True) as store:
        faces = fill(store)
        before = store.embeddings()[1]
        assert store.reseal(key) == len(faces)
        assert store.encrypted
    assert clear_bytes_found(all_stored_bytes(location), faces) == []
    with open_store(location, key=key) as store:
        np.testing.assert_array_equal(store.embeddings()[1], before)
        store.reseal(other_key)
    with pytest.raises(GalleryKeyError):
        open_store(location, key=key)
    with open_store(location, key=other_key) as store:
        np.testing.assert_array_equal(store.embeddings()[1], before)
        store.reseal(None)
    with open_store(location) as store:
        np.testing.assert_array_equal(store.embeddings()[1], before)
        actions = [event.action for event in store.audit_log(None)]
    assert actions[:3] == ["decrypt", "rekey", "encrypt"]


def test_a_process_that_opened_the_gallery_before_it_was_encrypted_neither_reads_nor_writes(location, key):
    with open_store(location, create=True) as stale:
        faces = fill(stale)
        with open_store(location) as other:
            other.reseal(key)
        with pytest.raises(GalleryKeyError, match="encrypted, re-keyed or decrypted by another process"):
            stale.embeddings()
        with pytest.raises(GalleryKeyError, match="encrypted, re-keyed or decrypted by another process"):
            stale.add_faces([("Cy", face(60))], MODEL)
    assert clear_bytes_found(all_stored_bytes(location), [*faces, face(60)]) == []


def test_a_new_gallery_opened_with_a_key_is_encrypted_from_the_start(location, key):
    with open_store(location, create=True, key=key) as store:
        assert store.encrypted
    with pytest.raises(GalleryKeyError):
        open_store(location)


def test_index_files_and_exports_of_an_encrypted_folder_gallery_are_sealed(tmp_path, key):
    folder = tmp_path / "g"
    gallery = Gallery(folder)
    with gallery.open(create=True) as store:
        faces = fill(store)
    gallery.search(np.stack([faces[0].embedding]), 1)  # saves an index file, in clear
    assert any(p.name.startswith("index-") for p in folder.iterdir())
    assert "embedding" in clear_bytes_found(every_file(folder), faces)
    gallery.reseal(key)
    assert not any(p.name.startswith("index-") for p in folder.iterdir())  # the clear one is shredded
    found = Gallery(folder, key_file=key.source).search(np.stack([faces[0].embedding]), 1)
    assert found.distances[0][0] < 1e-5 and found.names[int(found.ids[0][0])] == "Bob"
    assert any(p.name.startswith("index-") for p in folder.iterdir())  # a sealed one
    export = tmp_path / "export.zip"
    encrypted = Gallery(folder, key_file=key.source)
    encrypted.export(export)
    assert clear_bytes_found(every_file(folder) + export.read_bytes(), faces) == []
    target = Gallery(tmp_path / "copy", key_file=key.source)
    assert target.import_(export)[0] == len(faces) - 2
    with pytest.raises(GalleryKeyError, match="the file is encrypted"):
        Gallery(tmp_path / "plain").import_(export)


def test_a_key_file_others_can_read_or_that_is_no_key_is_refused(tmp_path):
    path = tmp_path / "k"
    write_new_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(GalleryKeyError, match="readable or writable by every user"):
        GalleryKey.from_file(path)
    bad = tmp_path / "bad"
    bad.write_text("not a key\n")
    os.chmod(bad, 0o600)
    with pytest.raises(GalleryKeyError, match="not a gallery key"):
        GalleryKey.from_file(bad)
    with pytest.raises(GalleryKeyError, match="exists already"):
        write_new_key(path)


def test_repairing_a_damaged_encrypted_gallery_keeps_it_encrypted(tmp_path, key):
    from tests.gallery.test_damaged_database import faces_pages, overwrite_page

    folder = tmp_path / "g"
    faces = [face(seed) for seed in range(300)]
    with open_store(folder, create=True, key=key) as store:
        store.set_model(MODEL, "test-model", "0" * 64, DIM)
        store.add_faces([(f"Person {seed % 20}", f) for seed, f in enumerate(faces)], MODEL)
    overwrite_page(folder / "gallery.sqlite3", faces_pages(folder / "gallery.sqlite3")[2])
    gallery = Gallery(folder, key_file=key.source)
    assert gallery.check()
    gallery.repair()
    with open_store(folder, key=key) as store:
        assert store.encrypted and store.check() == []
        kept = store.face_count()
    assert 200 < kept < 300
    assert clear_bytes_found(every_file(folder), faces) == []  # the copy set aside and the salvage too


def test_a_persons_export_from_an_encrypted_gallery_is_sealed_unless_asked_in_clear(tmp_path, key):
    import io
    import zipfile

    from facesys.gallery.sealing import opened_file

    folder = tmp_path / "g"
    with open_store(folder, create=True, key=key) as store:
        faces = fill(store)
    gallery = Gallery(folder, key_file=key.source)
    sealed, clear = tmp_path / "ann.sealed", tmp_path / "ann.zip"
    assert len(gallery.export_person("Ann", sealed).faces) == 2
    gallery.export_person("Ann", clear, clear=True)
    assert clear_bytes_found(sealed.read_bytes(), faces) == []
    ann = [faces[1], faces[3]]
    assert set(clear_bytes_found(clear.read_bytes(), ann)) >= {"crop", "JPEG marker"}
    opened = opened_file(sealed, key)
    assert isinstance(opened, io.BytesIO)
    with zipfile.ZipFile(opened) as archive, zipfile.ZipFile(clear) as plain:
        assert archive.read("faces/0.jpg") == plain.read("faces/0.jpg") == ann[0].crop_jpeg
