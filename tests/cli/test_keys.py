"""``facesys keys`` (create, list, revoke) and ``facesys gallery log``, on synthetic faces (no model)."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from facesys.cli import main
from facesys.gallery import Gallery
from facesys.gallery.audit import acting_as, local_user
from facesys.keys import hash_key
from facesys.models import ModelInfo
from tests.gallery.conftest import MODEL, face

TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def run(gallery, *args: str):
    return CliRunner().invoke(main, ["--gallery", str(gallery), *args])


@pytest.fixture()
def gallery(tmp_path):
    return tmp_path / "g"


def test_create_prints_the_key_alone_and_the_gallery_accepts_it(gallery):
    result = run(gallery, "keys", "create", "ci", "--scope", "enroll")
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert re.fullmatch(r"fsk_[A-Za-z0-9_-]{43}", key), result.stdout
    assert "shown only once" in result.stderr and key not in result.stderr
    found = Gallery(gallery).key_for(key)
    assert (found.name, found.scope) == ("ci", "enroll")
    default = run(gallery, "keys", "create", "laptop").stdout.strip()
    assert Gallery(gallery).key_for(default).scope == "identify"


def test_create_json(gallery):
    result = run(gallery, "keys", "create", " ci ", "--scope", "admin", "--json")
    document = json.loads(result.stdout)
    assert document["schema_version"] == 1 and (document["name"], document["scope"]) == ("ci", "admin")
    assert Gallery(gallery).key_for(document["key"]).name == "ci"


def test_list_shows_no_key_material(gallery):
    keys = [run(gallery, "keys", "create", name).stdout.strip() for name in ("ci", "laptop")]
    assert run(gallery, "keys", "revoke", "ci").exit_code == 0
    listed = run(gallery, "keys", "list")
    lines = listed.stdout.splitlines()
    unlimited = r"never expires\tnever used\tno rate limit"
    assert re.fullmatch(rf"ci\tidentify\tcreated {TIME}\trevoked {TIME}\t{unlimited}", lines[0]), lines
    assert re.fullmatch(rf"laptop\tidentify\tcreated {TIME}\tactive\t{unlimited}", lines[1]), lines
    assert "2 keys, 1 active" in listed.stderr
    document = json.loads(run(gallery, "keys", "list", "--json").stdout)
    assert [(k["name"], k["revoked_at"] is None) for k in document["keys"]] == [("ci", False), ("laptop", True)]
    shown = listed.output + json.dumps(document)
    for key in keys:
        assert key not in shown and key[4:] not in shown and hash_key(key) not in shown


def test_revoke(gallery):
    key = run(gallery, "keys", "create", "ci").stdout.strip()
    result = run(gallery, "keys", "revoke", "ci")
    assert result.exit_code == 0 and result.stdout == "revoked key ci\n"
    assert Gallery(gallery).key_for(key) is None and not Gallery(gallery).has_keys()
    again = run(gallery, "keys", "revoke", "ci")
    assert again.exit_code == 2 and again.stderr.strip() == f"facesys: error: no active key named 'ci' in {gallery}"


def test_bad_arguments_are_one_line(gallery):
    scope = run(gallery, "keys", "create", "ci", "--scope", "root")
    assert scope.exit_code == 2 and "'root' is not one of" in scope.output and "Traceback" not in scope.output
    twice = [run(gallery, "keys", "create", "ci") for _ in range(2)]
    assert twice[1].exit_code == 2 and "active key named 'ci' exists already" in twice[1].stderr
    empty = run(gallery, "keys", "list")
    assert empty.exit_code == 0 and empty.stdout.count("\n") == 1


def test_gallery_log_names_the_actors_and_hides_removed_people(gallery):
    store = Gallery(gallery)
    store.add_faces([("Ann", face(1)), ("Bob", face(2))], ModelInfo(MODEL, "test-model", "0" * 64, 8))
    with acting_as("key ci"):
        store.rename("Bob", "Robert")
        store.remove("Robert")
    assert run(gallery, "keys", "create", "ops", "--scope", "admin").exit_code == 0
    result = run(gallery, "gallery", "log")
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert all(re.fullmatch(TIME, row[0]) for row in rows)
    me = local_user()
    robert = next(row for row in rows if row[3].startswith("removed person #"))[3]
    assert [row[1:] for row in rows] == [
        [me, "key_create", "-", "key=ops scope=admin"],
        ["key ci", "remove_person", robert, "faces=1"],
        ["key ci", "rename", robert, "-"],
        [me, "enroll", robert, "face_ids=[2]"],
        [me, "enroll", "Ann", "face_ids=[1]"],
        [me, "set_model", "-", f"model_id={MODEL} dim=8"],
    ]
    assert "Bob" not in result.output and "Robert" not in result.output
    assert run(gallery, "gallery", "log", "--limit", "2").stdout.count("\n") == 2
    document = json.loads(run(gallery, "gallery", "log", "--json", "--limit", "3").stdout)
    assert [e["action"] for e in document["events"]] == ["key_create", "remove_person", "rename"]
    assert document["events"][1] == document["events"][1] | {"actor": "key ci", "person": None, "detail": {"faces": 1}}
    assert f"removed person #{document['events'][1]['person_id']}" == robert


def test_log_of_a_missing_gallery_is_empty(gallery):
    result = run(gallery, "gallery", "log", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["events"] == [] and not gallery.exists()
