"""Encrypted galleries from the command line and the Python API, on real faces and real processes:
the key from --key-file or $FACESYS_KEY_FILE, one line and exit 2 for a missing or wrong key
(serve refuses to start), answers unchanged by encryption, and `gallery encrypt` killed at any
moment leaving the gallery whole, in clear or encrypted."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from facesys.cli import main
from facesys.errors import GalleryKeyError, KeyMissingError
from facesys.gallery.sealing import GalleryKey, write_new_key
from facesys.gallery.store import open_store
from tests.conftest import ROOT, data_path
from tests.gallery.conftest import MODEL, face
from tests.gallery.test_encryption import JPEG_START, clear_bytes_found, every_file

PEOPLE = {"Joe Biden": "joe_biden", "Barack Obama": "barack_obama"}


def facesys(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    environment = os.environ | {"PYTHONPATH": str(ROOT), "FACESYS_THREADS": "1"} | (env or {})
    environment.pop("FACESYS_KEY_FILE", None) if not env or "FACESYS_KEY_FILE" not in env else None
    return subprocess.run(
        [sys.executable, "-m", "facesys.cli", *args], capture_output=True, text=True, env=environment, timeout=timeout
    )


def one_line_error(result, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert all(word in lines[0] for word in words), lines[0]


def test_keygen_writes_a_private_key_file_once(tmp_path):
    path = tmp_path / "g.key"
    result = CliRunner().invoke(main, ["gallery", "keygen", str(path)])
    assert result.exit_code == 0, result.output
    assert oct(path.stat().st_mode & 0o777) == "0o600" and GalleryKey.from_file(path).secret
    again = facesys("gallery", "keygen", str(path))
    one_line_error(again, str(path), "exists already")


def test_encrypted_gallery_answers_as_the_clear_one_and_refuses_without_its_key(tmp_path, embedder):
    from facesys.system import FaceSystem

    photos = data_path("face_recognition")
    key = write_new_key(tmp_path / "g.key")
    probe = photos / "barack_obama" / "obama2.jpg"
    answers = []
    for folder, key_file in ((tmp_path / "clear", None), (tmp_path / "sealed", key.source)):
        system = FaceSystem(folder, embedder=embedder, key_file=key_file)
        for name, sub in PEOPLE.items():
            system.enroll(name, sorted((photos / sub).glob("*.jpg"))[:2])
        found = system.identify(probe)[0]
        answers.append((found.name, round(found.distance, 5)))
    assert answers[0] == answers[1] and answers[0][0] == "Barack Obama"
    with open_store(tmp_path / "sealed", key=key) as store:
        _, vectors, _ = store.embeddings()
        crops = [jpeg for _, jpeg, _, _ in store.crops()]
    stored = every_file(tmp_path / "sealed")
    assert not any(v.astype("<f4").tobytes()[:16] in stored for v in vectors)
    assert not any(c[:64] in stored for c in crops) and not JPEG_START.search(stored)

    sealed = str(tmp_path / "sealed")
    one_line_error(facesys("--gallery", sealed, "gallery", "list"), "encrypted", "--key-file")
    other = write_new_key(tmp_path / "other.key")
    one_line_error(facesys("--gallery", sealed, "--key-file", other.source, "gallery", "list"), other.source, "not the key")
    one_line_error(facesys("--gallery", str(tmp_path / "clear"), "--key-file", key.source, "gallery", "list"), "not encrypted")
    listed = facesys("--gallery", sealed, "gallery", "list", env={"FACESYS_KEY_FILE": key.source})
    assert listed.returncode == 0 and "Barack Obama" in listed.stdout, listed.stderr
    listed = facesys("--gallery", sealed, "gallery", "list", "--key-file", key.source)  # after the command name too
    assert listed.returncode == 0 and "Joe Biden" in listed.stdout, listed.stderr


def test_serve_refuses_to_start_without_the_key(tmp_path):
    key = write_new_key(tmp_path / "g.key")
    with open_store(tmp_path / "g", create=True, key=key) as store:
        store.set_model(MODEL, "test-model", "0" * 64, 8)
        store.add_face("Ann", face(1), MODEL)
    result = facesys("--gallery", str(tmp_path / "g"), "serve", "--port", "9", timeout=60)
    one_line_error(result, "encrypted", "--key-file")
    other = write_new_key(tmp_path / "other.key")
    result = facesys("--gallery", str(tmp_path / "g"), "--key-file", other.source, "serve", "--port", "9", timeout=60)
    one_line_error(result, "not the key")


def _gallery_of(folder, faces: int) -> np.ndarray:
    """A clear gallery of ``faces`` synthetic 128-D faces; returns their embeddings in id order."""
    with open_store(folder, create=True) as store:
        store.set_model(MODEL, "test-model", "0" * 64, 128)
        store.add_faces([(f"P{seed % 50}", face(seed, dim=128)) for seed in range(1, faces + 1)], MODEL)
        return store.embeddings()[1]


def test_encrypt_killed_at_any_moment_leaves_the_whole_gallery_in_clear_or_encrypted(tmp_path):
    template = tmp_path / "template"
    vectors = _gallery_of(template, 3000)
    key = write_new_key(tmp_path / "g.key")
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    env.pop("FACESYS_KEY_FILE", None)

    def encrypt(folder) -> subprocess.Popen:
        command = [sys.executable, "-m", "facesys.cli", "--gallery", str(folder), "gallery", "encrypt", "--key-file", key.source]
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    shutil.copytree(template, tmp_path / "timed")
    started = time.monotonic()
    assert encrypt(tmp_path / "timed").wait(timeout=120) == 0
    whole = time.monotonic() - started  # start-up, the transaction, the erasure
    outcomes = []
    for trial, fraction in enumerate(np.linspace(0.3, 1.0, 8)):
        folder = tmp_path / f"trial{trial}"
        shutil.copytree(template, folder)
        process = encrypt(folder)
        time.sleep(fraction * whole)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        try:
            store = open_store(folder, key=key)
        except KeyMissingError:
            raise
        except GalleryKeyError:  # not encrypted: it must open without a key, whole
            store = open_store(folder)
        with store:
            outcomes.append(store.encrypted)
            np.testing.assert_array_equal(store.embeddings()[1], vectors)
            assert store.check() == []
        if not store.encrypted:  # a re-run finishes it
            assert encrypt(folder).wait(timeout=120) == 0
        with open_store(folder, key=key) as store:  # opened for writing: a killed erasure is finished
            np.testing.assert_array_equal(store.embeddings()[1], vectors)
        files = {
            p.name: clear_bytes_found(p.read_bytes(), [face(s, dim=128) for s in range(1, 3001, 97)]) for p in folder.iterdir()
        }
        assert not any(files.values()), (trial, outcomes, files)
    assert False in outcomes and True in outcomes, outcomes  # kills came before and after the commit


def test_rekey_and_decrypt_from_the_command_line(tmp_path):
    folder = tmp_path / "g"
    vectors = _gallery_of(folder, 20)
    old, new = write_new_key(tmp_path / "old.key"), write_new_key(tmp_path / "new.key")
    assert facesys("--gallery", str(folder), "gallery", "encrypt", "--key-file", old.source).returncode == 0
    result = facesys("--gallery", str(folder), "gallery", "rekey", "--key-file", old.source, "--new-key-file", new.source)
    assert result.returncode == 0 and "re-keyed" in result.stderr, result.stderr
    one_line_error(facesys("--gallery", str(folder), "--key-file", old.source, "gallery", "list"), "not the key")
    assert facesys("--gallery", str(folder), "gallery", "decrypt", "--key-file", new.source).returncode == 0
    with open_store(folder) as store:
        assert not store.encrypted
        np.testing.assert_array_equal(store.embeddings()[1], vectors)
    one_line_error(facesys("--gallery", str(folder), "gallery", "decrypt", "--key-file", new.source), "not encrypted")


@pytest.mark.parametrize("bad", ["missing", "not a key"])
def test_a_bad_key_file_is_one_line(tmp_path, bad):
    path = tmp_path / "k"
    if bad != "missing":
        path.write_text(bad)
        path.chmod(0o600)
    one_line_error(facesys("--gallery", str(tmp_path / "g"), "--key-file", str(path), "gallery", "list"), str(path))
