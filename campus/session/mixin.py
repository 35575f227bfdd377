"""SessionMixin: ``self.session`` in any Tornado RequestHandler, saved without being asked.

Where to save is the whole difficulty (facts checked on Tornado 6.6):

- ``on_finish()`` runs after the response left: a cookie set there is dropped and the write
  races the client's next request (a redirect followed before the session is stored).
- ``finish()`` is the one funnel (auto-finish, ``redirect``, ``render``, ``write_error``), but
  nobody awaits it and an ``async def finish`` hangs the request.
- ``flush()`` sends the headers, cookies included, the first time it is called; ``finish()``
  calls it too.

So the session is committed the first time output is about to leave — ``flush()`` or
``finish()``, whichever comes first — and never again: the request's
:class:`~campus.session.manager.PendingSession` says, once, what to write and which cookie
follows. With nothing to write (most requests) the cookie, if due, is set and the response
goes on at once. Otherwise the output waits: store first, cookie second, response last. While
a finished response waits for the store, the handler is finished as far as it can tell
(``write()`` raises, a later exception is only logged), as in plain Tornado.

What Tornado keeps only in private state (whether the handler finished, whether the headers
left, whether a body waits) is read and set through :mod:`campus.session.tornado_adapter`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Coroutine
from typing import Any

from tornado.concurrent import Future, future_set_result_unless_cancelled
from tornado.log import gen_log
from tornado.web import HTTPError, RequestHandler

from campus.session.cookie import cookie_values
from campus.session.manager import Commit, CookieUpdate, PendingSession, SessionManager
from campus.session.session import Session
from campus.session.store import StoreUnavailable
from campus.session.tornado_adapter import (
    has_body,
    headers_written,
    is_finished,
    refuses_body,
    set_finished,
)

log = logging.getLogger("campus.session")

_EPOCH = datetime.datetime(1970, 1, 1, 0, 0, 1, tzinfo=datetime.UTC)


class SessionMixin(RequestHandler):
    """Loads ``self.session`` in ``prepare()``; stores it, if changed, before the response.

    A subclass that overrides ``prepare`` must ``await super().prepare()`` first. Handlers
    never call save; ``await self.save_session()`` exists for the rare handler that must know
    the outcome before answering (logout).
    """

    _session_pending: PendingSession | None = None
    # The store write of a commit, while in flight: output (flush, finish) waits for it.
    _session_gate: asyncio.Task[bool] | None = None
    _session_deferred = False  # finish() was called and waits for the gate
    _session_failed = 0  # the status sent instead, when the store write failed
    # The cookie save_session() earned: set when output leaves, unless the status is >= 500.
    _session_saved_cookie: CookieUpdate | None = None
    _session_tasks: set[asyncio.Future[Any]] | None = None

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
        if self._session_pending is None:
            raise RuntimeError("no session loaded: did prepare() await super().prepare()?")
        return self._session_pending.session

    async def prepare(self) -> None:
        try:
            await self.load_session()
        except StoreUnavailable as exc:
            raise HTTPError(503, "session store unavailable: %s", exc) from None

    async def load_session(self) -> None:
        """Load the session the cookie names (a new one if none); may raise StoreUnavailable."""
        manager = self.session_manager
        headers = self.request.headers.get_list("Cookie")
        self._session_pending = await manager.load(cookie_values(headers, manager.cookie.name))

    async def save_session(self) -> None:
        """Commit the session now: store it if it changed; the cookie follows with the headers.

        Raises StoreUnavailable (and no cookie follows) when the store fails. Afterwards the
        session is read-only: a change raises RuntimeError. What this stored stays stored even
        if the response then fails, but a response with status >= 500 never carries the cookie.
        """
        pending = self._session_pending
        if pending is None or pending.committed:
            return
        commit = pending.commit("save_session()")
        if commit.write is None or await commit.write():
            # Not set yet: the status may still become a 5xx, which never carries it.
            self._session_saved_cookie = commit.cookie

    def session_is_https(self) -> bool:
        """Whether the client came over TLS (for ``secure=None``); override behind a proxy."""
        return self.request.protocol == "https"

    # -- the output funnel -------------------------------------------------------------------

    def flush(self, include_footers: bool = False) -> Future[None]:
        if self._session_gate is None:
            pending = self._session_pending
            if (
                pending is None
                or pending.committed  # e.g. finish() calling flush(): nothing left to do
                or headers_written(self)
                or not self._commit("flush()")
            ):
                self._release_saved_cookie()
                return super().flush(include_footers)
        assert self._session_gate is not None
        return self._spawn(self._flush_after_store(self._session_gate, include_footers))

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Future[None]:
        if is_finished(self):
            raise RuntimeError("finish() called twice")
        pending = self._session_pending
        if self.get_status() < 500 and pending is not None and pending.committed:
            pending.check_unchanged()  # committed early (flush, save_session): nested edits
        if chunk is not None:
            self.write(chunk)
        status = self.get_status()
        if has_body(self) and refuses_body(status):
            # Tornado's own check, made before anything is stored (it would be a 500).
            raise RuntimeError(f"Cannot send body with status code HTTP{status}")
        if self._session_gate is None and not self._commit("finish()"):
            return super().finish()  # nothing to store (most requests): no task, no waiting
        # Finished, as far as the handler can tell: write() raises and a later exception is
        # only logged, as in plain Tornado. The real finish() runs after the store write.
        set_finished(self, True)
        self._session_deferred = True
        done: Future[None] = Future()
        assert self._session_gate is not None
        self._spawn(self._finish_after_store(self._session_gate, done))
        return done

    def redirect(self, url: str, permanent: bool = False, status: int | None = None) -> None:
        if is_finished(self):
            raise RuntimeError("Cannot redirect() after finish()")
        super().redirect(url, permanent, status)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        if self._session_deferred:  # finished; the response waits for the store
            gen_log.error("Cannot send error response after finish()")
            return
        super().send_error(status_code, **kwargs)

    # -- committing --------------------------------------------------------------------------

    def _commit(self, when: str) -> bool:
        """Commit the session if not done yet; True when a store write now holds the output."""
        pending = self._session_pending
        if pending is None or pending.committed:
            return False
        if self.get_status() >= 500:
            pending.abandon(f"{when} of a failed response")  # nothing stored, no cookie
            return False
        commit = pending.commit(when)
        if headers_written(self) and (commit.write is not None or commit.cookie is not None):
            raise RuntimeError(
                "session changed after the headers were sent (flush()): its cookie cannot"
                " follow, so nothing was stored"
            )
        if commit.write is None:
            self._set_session_cookie(commit.cookie)
            return False
        self._session_gate = gate = asyncio.ensure_future(self._store(commit))
        self._keep(gate)
        return True

    async def _store(self, commit: Commit) -> bool:
        """Store first, cookie second; if the store fails, the error response instead.

        Returns whether the response may go on.
        """
        assert commit.write is not None
        try:
            landed = await commit.write()
        except StoreUnavailable as exc:
            self._fail(503, exc)
            return False
        except Exception as exc:  # a bug, but never a hang
            self.log_exception(type(exc), exc, exc.__traceback__)
            self._fail(500, exc)
            return False
        self._session_gate = None
        if landed:  # else: destroyed meanwhile; it stays destroyed, no cookie brings it back
            self._set_session_cookie(commit.cookie)
        return True

    def _fail(self, status: int, exc: Exception) -> None:
        self._session_gate = None
        self._session_failed = status
        set_finished(self, False)
        self._session_deferred = False
        self.send_error(status, exc_info=(type(exc), exc, exc.__traceback__))

    async def _finish_after_store(self, gate: asyncio.Task[bool], done: Future[None]) -> None:
        if await gate:
            set_finished(self, False)
            self._session_deferred = False
            try:
                sent = super().finish()
            except Exception as exc:  # e.g. a body with a 204: Tornado's own checks, a bug
                self.log_exception(type(exc), exc, exc.__traceback__)
                self.send_error(500, exc_info=(type(exc), exc, exc.__traceback__))
            else:
                try:
                    await sent
                except Exception as exc:  # the client went away while we were storing
                    log.debug("response not delivered: %s", exc)
        future_set_result_unless_cancelled(done, None)

    async def _flush_after_store(self, gate: asyncio.Task[bool], include_footers: bool) -> None:
        if not await gate:
            raise HTTPError(self._session_failed, "the session was not stored")
        await super().flush(include_footers)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> Future[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        # An unawaited flush() must not leave "exception was never retrieved" behind.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self._keep(task)
        return task

    def _keep(self, task: asyncio.Future[Any]) -> None:
        # The event loop holds tasks only weakly.
        if self._session_tasks is None:
            self._session_tasks = set()
        self._session_tasks.add(task)
        task.add_done_callback(self._session_tasks.discard)

    # -- the cookie --------------------------------------------------------------------------

    def _set_session_cookie(self, update: CookieUpdate | None) -> None:
        if update is None:
            return
        manager = self.session_manager
        cookie = manager.cookie
        attributes = cookie.attributes(https=self.session_is_https())
        if update.value is None:
            # Tornado drops max_age=0; an Expires in the past deletes the cookie as well.
            self.set_cookie(cookie.name, "", expires=_EPOCH, **attributes)
        else:
            self.set_cookie(cookie.name, update.value, max_age=manager.cookie_max_age, **attributes)

    def _release_saved_cookie(self) -> None:
        """The headers are about to leave: the cookie save_session() earned goes with them,
        unless the response is a failure (status >= 500), which never carries it."""
        update, self._session_saved_cookie = self._session_saved_cookie, None
        if update is not None and self.get_status() < 500:
            self._set_session_cookie(update)
