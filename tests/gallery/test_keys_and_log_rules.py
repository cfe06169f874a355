"""Issue 23 on every store backend: a gallery that ever had a key keeps requiring one, key names
are unique ignoring case, the audit log is in the order written (not by clock), names that were
not UTF-8 are refused, and a gallery of a newer schema is refused with its own error."""

from __future__ import annotations

import time

import pytest

from facesys.errors import ConflictError, GalleryVersionError, InvalidValueError
from facesys.gallery.audit import MAX_ACTOR_LENGTH, acting_as
from facesys.gallery.store import open_store
from facesys.gallery.store.records import KEYS_REQUIRED
from facesys.gallery.store.rules import key_name, normalize_name
from facesys.keys import hash_key, new_key


def add_key(store, name: str, scope: str = "admin") -> None:
    store.add_api_key(name, scope, hash_key(new_key()))


def test_revoking_the_last_key_keeps_keys_required(store):
    assert not store.keys_required()
    add_key(store, "only", "identify")
    assert store.keys_required() and store.setting(KEYS_REQUIRED) is not None
    store.revoke_api_key("only")
    assert not store.has_api_keys() and store.keys_required()


def test_a_gallery_from_before_the_marker_counts_its_revoked_keys(store):
    add_key(store, "old")
    store.revoke_api_key("old")
    store.set_setting(KEYS_REQUIRED, None)  # as a gallery written before the marker existed
    assert store.setting(KEYS_REQUIRED) is None and store.keys_required()


def test_key_names_are_unique_ignoring_case(store):
    add_key(store, "K_ADMIN")
    with pytest.raises(ConflictError, match="'K_ADMIN' exists already .* unique ignoring case"):
        add_key(store, "k_admin")
    store.revoke_api_key("K_ADMIN")
    with pytest.raises(ConflictError, match="'K_ADMIN'"):  # a revoked key's name too: the log names it
        add_key(store, "k_Admin")
    add_key(store, "K_ADMIN")  # the same spelling replaces a revoked key, as before
    assert [(k.name, k.active) for k in store.api_keys()] == [("K_ADMIN", False), ("K_ADMIN", True)]
    assert [e.detail["key"] for e in store.audit_log() if e.action == "key_create"] == ["K_ADMIN", "K_ADMIN"]


def test_the_audit_log_is_in_the_order_written_not_by_clock(store, monkeypatch):
    store.set_setting("first", 1)
    behind = time.time() - 3600.0
    with monkeypatch.context() as clock:
        clock.setattr(time, "time", lambda: behind)  # a writer whose clock is an hour behind
        store.set_setting("newest", 1)
    events = store.audit_log(2)
    assert [e.detail["key"] for e in events] == ["newest", "first"]
    assert events[0].at < events[1].at
    assert store.audit_log(1)[0].detail["key"] == "newest"


def test_names_that_were_not_utf8_are_refused():
    garbled = b"Ren\xe9e".decode("utf-8", "replace")  # what a lenient decoder makes of Latin-1 bytes
    for check in (normalize_name, key_name):
        with pytest.raises(InvalidValueError, match="U\\+FFFD"):
            check(garbled)


def test_an_actor_no_log_can_name_is_a_typed_error():
    """acting_as was the one ValueError of the audit module (no shell passes such an actor: key
    names are checked when made); a library caller gets InvalidValueError (a service's 400)."""
    for actor in ("", "  ", "a\x00b", "x" * (MAX_ACTOR_LENGTH + 1), None):
        with pytest.raises(InvalidValueError, match="actor"), acting_as(actor):
            pass


def test_a_newer_schema_is_refused_with_its_own_error(store):
    store.set_setting("schema_version", 99)
    with pytest.raises(GalleryVersionError, match="schema version 99 is newer"):
        open_store(store.location)


def test_a_repair_lists_the_history_carried_over_before_its_own_events(store, second_store):
    store.set_setting("old", 1)
    carried = store.salvage_keys_and_log()
    second_store.set_setting("rebuilt", 1)  # what the rebuild itself wrote (its import)
    second_store.restore_keys_and_log(carried, {"faces": 0, "lost": 0})
    order = [e.action if e.action != "set_setting" else e.detail["key"] for e in second_store.audit_log(None)]
    assert order[:2] == ["repair", "rebuilt"] and order.index("rebuilt") < order.index("old")
