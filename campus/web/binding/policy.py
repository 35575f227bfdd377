"""What ``[session] device_binding`` means for a login and for every API request.

- ``off``: nothing is offered, nothing is enforced (a binding already in a record is ignored).
- ``optional`` (the default): every login offers registration; a browser that never
  registers keeps working as before. A bound session's requests must carry a live bound
  cookie.
- ``required``: as optional, and a signed-in session that is not bound once its login's
  registration window has passed is ended at its next request. A browser without DBSC can
  sign in, and is signed out at its first request after that window.

Enforcement covers exactly the scope the session instructions give the browser (``/api``
without the binding endpoints): those are the requests a browser holds back until it has
renewed the bound cookie, so a request there without one comes from a browser that could not
renew it (it says so in ``Secure-Session-Skipped``) or from someone who has the session
cookie and not the key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tornado.web import Finish

from campus.session.cookie import cookie_values
from campus.web.binding import fields, state
from campus.web.binding.cookie import LIFETIME, BoundCookie
from campus.web.binding.proof import ALGORITHMS
from campus.web.handlers.base import ApiError

if TYPE_CHECKING:
    from campus.web.handlers.auth import SessionHandler

REGISTER_PATH = "/api/device-binding/register"
REFRESH_PATH = "/api/device-binding/refresh"
#: The requests a bound cookie covers: the API (the SPA's files and shell need no session).
SCOPE = "/api"
#: The binding endpoints themselves: the scope minus this.
ENDPOINTS = "/api/device-binding"
#: Seconds after a login within which its browser may register (key generation included).
REGISTRATION_WINDOW = 60
#: Seconds a refresh challenge stays valid: one is handed out with each bound cookie, for
#: the browser's next refresh, so it must outlive the cookie.
CHALLENGE_LIFETIME = LIFETIME + 60
NOT_CONFIRMED = "Session not confirmed by this device; sign in again"
NOT_BOUND = "This browser did not bind the session to the device; sign in again"


def in_scope(path: str) -> bool:
    """The draft's (and Chrome's) path rule: the prefix itself, or below it."""
    return _under(path, SCOPE) and not _under(path, ENDPOINTS)


def offer(handler: SessionHandler) -> None:
    """After a successful login: a fresh registration challenge, in the session and the header.

    Any binding the session carried over from before the login is dropped: the new session
    is bound by the browser that logged in, or not at all.
    """
    if handler.services.config.session.device_binding == "off":
        return
    session = handler.session
    state.forget(session)
    now = handler.session_manager.clock()
    challenge = state.issue(session, "register", now=now, lifetime=REGISTRATION_WINDOW)
    header = fields.registration(ALGORITHMS, REGISTER_PATH, challenge)
    handler.set_header(fields.REGISTRATION, header)


def enforce(handler: SessionHandler) -> None:
    """Refuse an API request of a bound session without a live bound cookie (and, when
    binding is required, of a signed-in session that did not bind in time)."""
    mode = handler.services.config.session.device_binding
    request = handler.request
    if mode == "off" or not in_scope(request.path):
        return
    metrics = handler.services.metrics
    headers = request.headers  # `in` first: get() of an absent header raises and catches
    sent = headers[fields.SKIPPED] if fields.SKIPPED in headers else None  # noqa: SIM401
    skipped = fields.skipped(sent)
    if metrics is not None:
        for reason in skipped:
            metrics.binding_skipped.labels(reason).inc()
    session = handler.session
    binding = state.binding_of(session)
    if binding is None:
        now = handler.session_manager.clock()
        if (
            mode == "required"
            and handler.current_user is not None
            and not state.awaiting_registration(session, now=now)
        ):
            session.destroy()
            _refused(handler, "unbound")
            raise ApiError(401, NOT_BOUND)
        return
    cookie = BoundCookie(handler.session_manager)
    values = cookie_values(request.headers.get_list("Cookie"), cookie.name)
    if cookie.proves(values, session.id):
        return
    if not values:
        _refused(handler, "missing")
        raise ApiError(401, NOT_CONFIRMED)
    # A bound cookie this server cannot accept (from before a secret was retired, say):
    # expire it and send the browser back to the same URL, which it requests only after
    # a refresh. A browser that could not refresh says so; it gets the refusal instead.
    _refused(handler, "invalid")
    handler.clear_cookie(cookie.name, **cookie.attributes(https=handler.session_is_https()))
    if skipped:
        raise ApiError(401, NOT_CONFIRMED)
    handler.redirect(request.uri or "/", status=307)
    raise Finish()


def _refused(handler: SessionHandler, cause: str) -> None:
    metrics = handler.services.metrics
    if metrics is not None:
        metrics.binding_refused.labels(cause).inc()


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")
