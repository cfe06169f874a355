"""``facesys keys`` (create, list, revoke) and ``facesys gallery log``, on synthetic faces (no model)."""

from __future__ import annotations

import json
import re
import time

import pytest
from click.testing import CliRunner

from facesys.cli import main
from facesys.cli.gallery import local_time
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


def test_create_with_a_lifetime_and_a_rate_and_list_them(gallery):
    before = time.time()
    result = run(gallery, "keys", "create", "ci", "--scope", "enroll", "--expires", "30d", "--rate", "10/s", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["rate"] == "10/second" and before + 30 * 86400 <= document["expires_at"] <= time.time() + 30 * 86400
    stored = Gallery(gallery).key_for(document["key"])
    assert (stored.expires_at, stored.rate, stored.last_used_at) == (document["expires_at"], "10/second", None)
    assert run(gallery, "keys", "create", "hourly", "--rate", "1000/h").exit_code == 0
    Gallery(gallery).create_key("old", "identify", expires_at=time.time() - 1)
    lines = run(gallery, "keys", "list").stdout.splitlines()
    assert re.fullmatch(rf"ci\tenroll\tcreated {TIME}\tactive\texpires {TIME}\tnever used\trate 10/second", lines[0]), lines
    assert lines[1].endswith("\tactive\tnever expires\tnever used\trate 1000/hour"), lines
    assert re.fullmatch(rf"old\tidentify\tcreated {TIME}\texpired\texpires {TIME}\tnever used\tno rate limit", lines[2]), lines
    Gallery(gallery).record_key_uses({hash_key(document["key"]): before})
    listed = run(gallery, "keys", "list")
    assert f"last used {local_time(before)}" in listed.stdout.splitlines()[0] and "3 keys, 2 active" in listed.stderr
    rows = json.loads(run(gallery, "keys", "list", "--json").stdout)["keys"]
    assert [(k["name"], k["rate"], k["last_used_at"]) for k in rows] == [
        ("ci", "10/second", before),
        ("hourly", "1000/hour", None),
        ("old", None, None),
    ]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--expires", "30"),
        ("--expires", "0d"),
        ("--expires", "3 months"),
        ("--rate", "10"),
        ("--rate", "0/s"),
        ("--rate", "5/week"),
    ],
)
def test_a_bad_lifetime_or_rate_is_one_line_naming_the_option(gallery, option, value):
    result = run(gallery, "keys", "create", "ci", option, value)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
    assert f"'{option}'" in result.stderr and repr(value) in result.stderr and "Traceback" not in result.output
    assert not gallery.exists()  # nothing written


def v6(store) -> None:
    """Make ``store`` what a gallery before key limits was: SQLite v6, PostgreSQL v3."""
    backend = type(store).__name__
    drop = "; ".join(f"ALTER TABLE api_keys DROP COLUMN {c}" for c in ("expires_at", "last_used_at", "rate"))
    old = {"SQLiteStore": "6", "PostgresStore": "3"}[backend]
    if backend == "SQLiteStore":
        store.db.executescript(f"{drop}; UPDATE meta SET value = '{old}' WHERE key = 'schema_version'")
        columns = [row[1] for row in store.db.execute("PRAGMA table_info(api_keys)")]
    else:
        store.conn.execute(drop)
        store.conn.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'", (old,))
        store.conn.commit()
        columns = [
            row[0]
            for row in store.conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'api_keys'")
        ]
    assert "expires_at" not in columns and "name" in columns


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_gallery_from_before_key_limits_keeps_its_keys(tmp_path, backend, request):
    from facesys.gallery.store import open_store
    from facesys.gallery.store.postgres import SCHEMA_VERSION as PG_VERSION
    from facesys.gallery.store.sqlite import SCHEMA_VERSION

    location = str(tmp_path / "g") if backend == "sqlite" else request.getfixturevalue("postgres_cluster").create_database()
    kept = Gallery(location).create_key("kept", "admin")
    gone = Gallery(location).create_key("gone", "identify")
    Gallery(location).revoke_key("gone")
    with open_store(location) as store:
        v6(store)
    with open_store(location) as store:
        assert store.stats()["gallery_schema_version"] == (SCHEMA_VERSION if backend == "sqlite" else PG_VERSION)
    found = Gallery(location).key_for(kept)
    assert (found.name, found.scope, found.expires_at, found.last_used_at, found.rate) == ("kept", "admin", None, None, None)
    assert Gallery(location).key_for(gone) is None
    listed = run(location, "keys", "list")
    assert listed.exit_code == 0 and listed.stdout.splitlines()[0].endswith("\tactive\tnever expires\tnever used\tno rate limit")
    assert run(location, "keys", "create", "new", "--expires", "1w", "--rate", "5/min").exit_code == 0
