"""The CLI on a PostgreSQL gallery: the same commands as on a folder, and one line (exit 2) when
the database cannot be reached — by every command, ``serve`` included — never the password."""

from __future__ import annotations

import json

import pytest

from tests.conftest import data_path
from tests.service.conftest import facesys, free_port

pytestmark = pytest.mark.slow


def test_gallery_commands_on_postgresql(postgres_cluster, tmp_path):
    url = postgres_cluster.create_database()
    photos = data_path("face_recognition", "joe_biden")
    assert facesys("enroll", "--name", "Joe Biden", str(photos), gallery=url, check=False).returncode == 0
    stats = json.loads(facesys("gallery", "stats", "--json", gallery=url, check=False).stdout)
    assert stats["people"] == 1 and stats["faces"] == 2
    assert facesys("gallery", "check", gallery=url, check=False).stdout.strip() == "gallery is healthy"
    exported = tmp_path / "g.zip"
    assert facesys("gallery", "export", str(exported), gallery=url, check=False).returncode == 0
    folder = tmp_path / "folder"
    assert facesys("gallery", "import", str(exported), gallery=str(folder), check=False).returncode == 0
    group = data_path("face_recognition", "_multi_face", "two_people.jpg")
    identified = facesys("identify", str(group), gallery=url, check=False)
    assert "Joe Biden" in identified.stdout
    assert "Joe Biden" in facesys("gallery", "list", gallery=str(folder), check=False).stdout
    assert facesys("enroll", "--sync", gallery=url, check=False).returncode == 2  # a database has no people/ folder


@pytest.mark.parametrize("command", [["gallery", "list"], ["identify", "x.jpg"], ["serve", "--port", "0"]])
def test_an_unreachable_database_is_one_line_and_exit_2(command):
    secret = "s3cret-Pass"
    url = f"postgresql://someone:{secret}@127.0.0.1:{free_port()}/faces"
    result = facesys(*command, gallery=url, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0] and "127.0.0.1" in lines[0], result.stderr
    assert secret not in result.stderr + result.stdout
