"""What the session mixin must know of a Tornado ``RequestHandler`` that no public API tells.

Everything else the mixin does goes through Tornado's public API (``get_status()``,
``set_cookie()``, overriding ``flush()``/``finish()``/``send_error()``). These three facts
live only in private attributes (Tornado 6.4 to 6.6 alike); this module is the one place in
campus.session that touches them. ``tests/session/test_tornado_adapter.py`` pins what each
one means on the installed Tornado, and runs on the newest release ``pyproject.toml``
allows, so an upgrade that changes one fails there first.

- ``_finished``: whether ``finish()`` ran. Read to refuse a second ``finish()`` or a
  ``redirect()`` after it. *Set* while a finished response waits for its store write, so
  that Tornado itself treats the handler as finished: ``write()`` raises, the handler method
  does not run after a ``prepare()`` that finished, auto-finish does not finish again, and a
  later exception is only logged. Cleared just before the real ``finish()``, which sets it
  for good.
- ``_headers_written``: whether ``flush()`` has sent the headers; after that no cookie can
  follow, so a session change can no longer be committed.
- ``_write_buffer``: whether a body is waiting. ``finish()`` refuses one with a 204, 304 or
  1xx status; the mixin must know before it stores anything, not after.
"""

from __future__ import annotations

from tornado.web import RequestHandler


def is_finished(handler: RequestHandler) -> bool:
    return handler._finished


def set_finished(handler: RequestHandler, finished: bool) -> None:
    handler._finished = finished


def headers_written(handler: RequestHandler) -> bool:
    return handler._headers_written


def has_body(handler: RequestHandler) -> bool:
    return bool(handler._write_buffer)


def refuses_body(status: int) -> bool:
    """Whether ``finish()`` refuses a body with this status (HTTP allows none there)."""
    return status in (204, 304) or 100 <= status < 200
