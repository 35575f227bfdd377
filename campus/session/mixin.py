"""SessionMixin: ``self.session`` in any Tornado RequestHandler, saved without being asked.

Where to save is the whole difficulty (facts checked on Tornado 6.6):

- ``on_finish()`` runs after the response left: a cookie set there is dropped and the write
  races the client's next request (a redirect followed before the session is stored).
- ``flush()`` writes the headers once, and is not called on every path.
- ``finish()`` *is* the one funnel (auto-finish, ``redirect``, ``render``, ``write_error``),
  but nobody awaits it and an ``async def finish`` hangs the request.

So ``finish()`` is overridden synchronously: it returns a Future and runs the real
``finish()`` only once the store write is done — store first, cookie second, then the
response. Every path ends in the real ``finish()``, or the request would hang.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import logging
from typing import Any

from tornado.concurrent import Future, future_set_result_unless_cancelled
from tornado.web import HTTPError, RequestHandler

from campus.session.cookie import cookie_from_header
from campus.session.manager import CookieUpdate, LoadedSession, SessionManager
from campus.session.session import Session
from campus.session.store import StoreUnavailable

log = logging.getLogger("campus.session")

_EPOCH = datetime.datetime(1970, 1, 1, 0, 0, 1, tzinfo=datetime.UTC)


class _State(enum.Enum):
    UNLOADED = 0  # prepare() has not loaded a session (or failed to): nothing to save
    LOADED = 1
    SAVING = 2  # finish() was called; the store write is in flight
    DONE = 3


class SessionMixin(RequestHandler):
    """Loads ``self.session`` in ``prepare()`` and saves it, if changed, before the response.

    A subclass that overrides ``prepare`` must ``await super().prepare()`` first. Handlers
    never call save; ``await self.save_session()`` exists for the rare handler that must know
    the outcome before answering (logout).
    """

    _session_state = _State.UNLOADED
    _session_loaded: LoadedSession | None = None
    _session_finishing: Future[None] | None = None
    _session_task: asyncio.Future[None] | None = None

    @property
    def session_manager(self) -> SessionManager:
        manager = self.settings.get("session_manager")
        if not isinstance(manager, SessionManager):
            raise RuntimeError(
                "SessionMixin needs Application(..., session_manager=SessionManager(...))"
            )
        return manager

    @property
    def session(self) -> Session:
        if self._session_loaded is None:
            raise RuntimeError("no session loaded: did prepare() await super().prepare()?")
        return self._session_loaded.session

    async def prepare(self) -> None:
        try:
            await self.load_session()
        except StoreUnavailable as exc:
            raise HTTPError(503, "session store unavailable: %s", exc) from None

    async def load_session(self) -> None:
        """Load the session the cookie names (a new one if none); may raise StoreUnavailable."""
        manager = self.session_manager
        header = self.request.headers.get("Cookie")
        loaded = await manager.load(cookie_from_header(header, manager.cookie.name))
        self._session_loaded = loaded
        self._session_state = _State.LOADED

    async def save_session(self) -> None:
        """Write the session now if it changed, then set or clear the cookie accordingly."""
        loaded = self._session_loaded
        if loaded is not None:
            self._apply_cookie(await self.session_manager.commit(loaded))

    def _apply_cookie(self, update: CookieUpdate | None) -> None:
        if update is None or self._headers_written:
            return
        cookie = self.session_manager.cookie
        attributes = cookie.attributes(https=self.session_is_https())
        if update.value is None:
            # Tornado drops max_age=0; an Expires in the past deletes the cookie as well.
            self.set_cookie(cookie.name, "", expires=_EPOCH, **attributes)
        else:
            self.set_cookie(cookie.name, update.value, max_age=cookie.max_age, **attributes)

    def session_is_https(self) -> bool:
        """Whether the client came over TLS (for ``secure="auto"``); override behind a proxy."""
        return self.request.protocol == "https"

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Future[None]:
        if self._session_state is _State.SAVING:
            if chunk is not None:
                raise RuntimeError("finish() called twice")
            assert self._session_finishing is not None
            return self._session_finishing  # e.g. auto-finish after an explicit finish()
        loaded = self._session_loaded
        if (
            self._session_state is not _State.LOADED
            or loaded is None
            or self._finished
            or self.get_status() >= 500
        ):
            self._session_state = _State.DONE
            return super().finish(chunk)
        if not self.session_manager.needs_store(loaded):
            # Nothing to write (most requests): no task, no waiting, just the cookie if due.
            self._session_state = _State.DONE
            self._apply_cookie(self.session_manager.settle(loaded))
            return super().finish(chunk)
        if chunk is not None:
            self.write(chunk)
        self._session_state = _State.SAVING
        self._session_finishing = Future()
        # Keep a reference: the event loop holds tasks only weakly.
        self._session_task = asyncio.ensure_future(self._save_then_finish(self._session_finishing))
        return self._session_finishing

    async def _save_then_finish(self, done: Future[None]) -> None:
        try:
            await self.save_session()
        except StoreUnavailable as exc:
            self._session_state = _State.DONE
            self.send_error(503, exc_info=(type(exc), exc, exc.__traceback__))
        except Exception as exc:  # e.g. a value JSON cannot hold: a bug, but never a hang
            self._session_state = _State.DONE
            self.log_exception(type(exc), exc, exc.__traceback__)
            self.send_error(500, exc_info=(type(exc), exc, exc.__traceback__))
        self._session_state = _State.DONE
        try:
            if not self._finished:
                await super().finish()
        except Exception as exc:  # the client went away while we were saving
            log.debug("response not delivered: %s", exc)
        future_set_result_unless_cancelled(done, None)
