"""Handles (campus.session.handles): stable names for a user's sessions, leading back to nothing."""

from __future__ import annotations

import hashlib
import re

from campus.session.handles import SessionHandles
from campus.session.store import new_session_id, session_ref

SECRET = "a secret of at least thirty-two characters"


def test_a_handle_is_stable_url_safe_and_192_bits() -> None:
    ref = session_ref(new_session_id())
    handle = SessionHandles(SECRET).handle(ref)
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", handle)
    assert SessionHandles(SECRET).handle(ref) == handle  # another process, the same handle


def test_each_session_and_each_secret_gives_another_handle() -> None:
    refs = [session_ref(new_session_id()) for _ in range(100)]
    handles = SessionHandles(SECRET)
    assert len({handles.handle(ref) for ref in refs}) == 100
    assert SessionHandles(SECRET + "!").handle(refs[0]) != handles.handle(refs[0])


def test_a_handle_holds_neither_the_id_nor_the_ref() -> None:
    sid = new_session_id()
    ref = session_ref(sid)
    handle = SessionHandles(SECRET).handle(ref)
    for secret in (sid, ref, hashlib.sha256(sid.encode()).hexdigest()):
        assert handle not in secret and secret not in handle


def test_matches_only_its_own_session_and_takes_any_text() -> None:
    handles = SessionHandles(SECRET)
    mine, other = session_ref(new_session_id()), session_ref(new_session_id())
    handle = handles.handle(mine)
    assert handles.matches(handle, mine)
    assert not handles.matches(handle, other)
    for junk in ("", "x", "é" * 32, "\udcff", handle + "A", handle[:-1]):
        assert not handles.matches(junk, mine)
