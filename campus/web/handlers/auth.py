"""POST /login, GET|POST /logout, GET /api/me: the Express app's routes, hardened."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from functools import partial
from typing import Any

from tornado.escape import json_encode
from tornado.ioloop import IOLoop
from tornado.web import stream_request_body

from campus.accounts.emails import normalize_email
from campus.accounts.gate import AccountBusy, CheckAbandoned, ChecksBusy
from campus.accounts.signin import SIGN_IN, sign_in_record
from campus.accounts.throttle import LoginThrottle, Throttled
from campus.accounts.users import MAX_EMAIL, MAX_PASSWORD, User
from campus.http.clients import client_key
from campus.http.exchange import declared_over
from campus.observability.metrics import count_sessions_destroyed
from campus.session import SessionMixin, StoreUnavailable
from campus.session.cookie import cookie_from_headers
from campus.session.manager import CookieUpdate
from campus.web.binding import policy as device_binding
from campus.web.devices import LIFETIME, DeviceCookies
from campus.web.express import express_email
from campus.web.handlers.base import ApiError, BaseHandler
from campus.web.services import USER, session_user, signed_in_at

MAX_BODY = 64 * 1024


class SessionHandler(SessionMixin, BaseHandler):
    """An API handler with ``self.session``; ``current_user`` is the session's
    :class:`~campus.accounts.users.User` as the users file has it now, or None."""

    async def prepare(self) -> None:
        await super().prepare()
        user = await self.session_user()
        if user is None:
            user = await self._carry_over_express()
        self.current_user = user
        device_binding.enforce(self)  # a bound session needs its short-lived cookie too

    async def session_user(self) -> User | None:
        """The signed-in user, by the key the session holds: a dictionary lookup, no I/O.

        A session whose user is not in the users file ends here: it is destroyed (the
        record is deleted and the cookie expired as the response goes out), whatever else
        it held, and the request goes on without a user (401 where one is needed). Unless it
        signed in since this process last looked at the file: the file is looked at again
        first, as that sign-in may have read a newer version (another worker's, or another
        machine's copy).
        """
        if USER not in self.session:
            return None
        key = session_user(self.session)
        users = self.services.users
        user = None if key is None else users.get(key)
        if user is None and key is not None and signed_in_at(self.session) + 1 > users.checked_at:
            await users.look_again()
            user = users.get(key)
        if user is None:
            self.session.destroy()
            count_sessions_destroyed(self.settings, "removed")
        return user

    async def start_session(self, user: User, carried: Mapping[str, Any] | None = None) -> None:
        """Sign *user* in on this request's session, as /login and the Express cut-over do.

        The session moves to a new id (the old record goes: no fixation), keeps what the
        visitor had (and *carried*), and stores the user's key and the sign-in facts, which
        "Your sessions" shows; never the record itself. The facts are recorded once, here;
        the User-Agent is parsed off the event loop (the server warms the parser up).
        """
        self.session.regenerate()
        if carried:
            self.session.update(carried)
        self.session[USER] = user.key
        agent = self.request.headers.get("User-Agent")
        facts = partial(
            sign_in_record, self.client_address(), agent, at=self.session_manager.clock()
        )
        self.session[SIGN_IN] = await IOLoop.current().run_in_executor(None, facts)
        device_binding.offer(self)  # Secure-Session-Registration, for browsers that bind
        self.current_user = user

    async def _carry_over_express(self) -> User | None:
        """Nobody is logged in here: a live Express session of a user in the users file
        becomes this request's session, like a login (see start_session).

        The user is found by the Express session's ``user.email``, normalised as at login;
        the session refers to that user, so nothing of the Express copy of the record is
        ever answered. Its other fields (a cart) come along. An Express session without an
        email, or for an email not in the file, is no session: claiming it deleted it.
        """
        fields = await self.claim_express_session()
        if not fields:
            return None
        user = self.services.users.find(express_email(fields) or "")
        if user is None:
            return None
        carried = {k: v for k, v in fields.items() if k not in (USER, SIGN_IN)}
        await self.start_session(user, carried)
        return user

    async def claim_express_session(self) -> dict[str, Any] | None:
        """The fields of the Express session this request's cookie names, claimed for good.

        No ``connect.sid`` (or the cut-over off): nothing, not even a Redis command. A cookie
        that verifies is expired whatever its record holds; one that does not verify is left
        alone, so a mistyped secret can be fixed without logging anyone out.
        """
        express = self.services.express
        if express is None:
            return None
        cookies = self.request.headers.get_list("Cookie")  # one header or several (HTTP/2)
        sid = express.verify(cookie_from_headers(cookies, express.cookie_name))
        if sid is None:
            return None
        fields = await express.claim(sid)  # may raise StoreUnavailable
        # express-session's cookie: Path=/ and no Domain unless the Express app chose others.
        self.clear_cookie(express.cookie_name, path="/", httponly=True, secure=self.is_https())
        return fields

    def session_is_https(self) -> bool:
        return self.is_https()

    async def log_out(self) -> None:
        """Destroy this session, then expire its cookie (a logout, whichever route asks).

        May raise StoreUnavailable: the caller says what that means for its route.
        """
        signed_in = "user" in self.session
        self.session.destroy()
        await self.save_session()
        if signed_in:
            count_sessions_destroyed(self.settings, "logout")
        if self._carried_session_cookie():
            # Only then: otherwise any page could wipe every cookie of the site with an
            # <img src=/logout> that carries none (SameSite keeps it off cross-site requests).
            # Not "cookies": the device cookie must survive logout (campus.web.devices).
            self.set_header("Clear-Site-Data", '"cache", "storage"')

    def _carried_session_cookie(self) -> bool:
        cookies = self.request.headers.get_list("Cookie")
        return cookie_from_headers(cookies, self.session_manager.cookie.name) is not None


@stream_request_body
class LoginHandler(SessionHandler):
    """Check the password, then move the session to a new id and put the user in it."""

    also_allowed = ("GET", "HEAD")  # GET /login is the SPA's sign-in page (app.MethodPath)
    _body: bytearray
    _too_large = False
    _foreign = False  # refused as another origin's POST: no password was checked
    _outcome = ""  # what the status alone does not say: "busy", "abandoned"
    _device_cookie: tuple[str, str] | None = None  # set with the session cookie

    def check_xsrf_cookie(self) -> None:
        try:
            super().check_xsrf_cookie()
        except ApiError:
            self._foreign = True
            raise

    def on_finish(self) -> None:
        """Count this answer in ``campus_logins_total`` by its outcome."""
        metrics = self.services.metrics
        if metrics is not None and self.request.method == "POST":
            outcome = self._outcome or login_outcome(self.get_status(), foreign=self._foreign)
            metrics.logins.labels(outcome).inc()

    async def prepare(self) -> None:
        self._body = bytearray()
        if declared_over(self.request.headers.get("Content-Length", ""), MAX_BODY):
            raise ApiError(413, "Request body too large")
        await super().prepare()

    def data_received(self, chunk: bytes) -> None:
        if len(self._body) + len(chunk) > MAX_BODY:
            self._too_large = True  # chunked bodies have no Content-Length to refuse early
        else:
            self._body += chunk

    def initialize(self) -> None:
        # Before prepare(): the connection may close while the headers are still processed.
        self._gone = threading.Event()  # set on the event loop, read by the hashing worker

    def on_connection_close(self) -> None:
        """The client went away: a password check of its that has not started never will."""
        self._gone.set()
        super().on_connection_close()

    async def post(self) -> None:
        if self._too_large:
            raise ApiError(413, "Request body too large")
        email, password = _credentials(bytes(self._body))
        devices = DeviceCookies(self.session_manager)
        key = normalize_email(email)
        device = devices.device(self.request.headers.get_list("Cookie"), key)
        user = await self._authenticate(email, key, password, device)
        if user is None:
            raise ApiError(403, "Permission denied!")
        await self.start_session(user)
        self._device_cookie = (devices.name, devices.issue(user.key))
        self.write({"user": user.public})

    def _set_session_cookie(self, update: CookieUpdate | None) -> None:
        """The device cookie goes right after the session's: a client that reads only the
        first ``Set-Cookie`` (many scripts) still gets the session."""
        super()._set_session_cookie(update)
        if self._device_cookie is not None and update is not None and update.value is not None:
            name, value = self._device_cookie
            attributes = self.session_manager.cookie.attributes(https=self.is_https())
            attributes.update(httponly=True, samesite="Strict")
            self.set_cookie(name, value, max_age=LIFETIME, **attributes)
            self._device_cookie = None

    async def _authenticate(
        self, email: str, key: str, password: str, device: str | None
    ) -> User | None:
        """The password check, counted by the throttle, then admitted by the gate: 429 while
        throttled (right password or not) or while this account's logins hold their places;
        503 when every place for a check is taken (the attempt is given back either way:
        nothing was checked). *key*: the email normalised, as the gate counts it."""
        users = self.services.users
        config = self.services.config.login
        throttle = LoginThrottle(self.services.sessions.store, config)
        client = client_key(self.client_address(), config.ipv6_prefix)  # IPv6: its /64
        try:
            reservation = await throttle.reserve(email, client, device)
            try:
                with users.gate.admit(key, trusted=device is not None):
                    user = await users.authenticate(email, password, gone=self._gone.is_set)
            except AccountBusy:
                await throttle.cancel(reservation)  # not a failure: nothing was checked
                raise Throttled(AccountBusy.retry_after) from None
            except ChecksBusy as exc:
                await throttle.cancel(reservation)  # not a failure: nothing was checked
                self._outcome = "busy"
                retry_after = {"Retry-After": str(exc.retry_after)}
                raise ApiError(503, "Too many sign-ins, try again shortly", **retry_after) from None
            if user is not None:
                await throttle.succeeded(reservation)
        except CheckAbandoned:
            self._outcome = "abandoned"  # nobody is there to read the answer: logged as
            raise ApiError(499, "The client went away") from None  # nginx logs it, not a 5xx
        except Throttled as exc:
            retry_after = {"Retry-After": str(exc.retry_after)}
            raise ApiError(429, "Too many failed logins. Try again later.", **retry_after) from None
        return user


#: POST /login answers by status, for campus_logins_total.
_OUTCOMES = {
    200: "success",
    403: "denied",
    429: "throttled",
    400: "bad_request",
    413: "bad_request",
}


def login_outcome(status: int, *, foreign: bool) -> str:
    if status >= 500:
        return "error"
    if foreign:
        return "refused"  # a page on another origin posted it: not a password check
    return _OUTCOMES.get(status, "bad_request")


def _credentials(body: bytes) -> tuple[str, str]:
    """The email and password from a login body, or a 400 that says what is wrong."""
    try:
        payload: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # "[[[[..." nests too deep
        raise ApiError(400, "Body must be JSON") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "Body must be a JSON object")
    fields = {}
    for name, limit in (("email", MAX_EMAIL), ("password", MAX_PASSWORD)):
        value = payload.get(name)
        if value is None:
            raise ApiError(400, f"Missing field: {name}")
        if not isinstance(value, str):
            raise ApiError(400, f"Field must be a string: {name}")
        if len(value) > limit:
            raise ApiError(400, f"Field too long: {name} (at most {limit} characters)")
        fields[name] = value
    return fields["email"], fields["password"]


#: Sec-Fetch-Site values of a GET /logout the browser made for one of our own pages.
OWN_FETCH_SITES = {"same-origin", "none"}  # "none": typed in the address bar, a bookmark


class LogoutHandler(SessionHandler):
    """Destroy the session and expire its cookie; a store failure is a 500, not a shrug.

    GET stays for the Express app's clients. A browser says in ``Sec-Fetch-Site`` when it
    fetches it for another origin's page (an ``<img>``, a link), and that is refused before
    anything changes; clients that send no such header (curl, scripts) are unaffected.
    """

    async def prepare(self) -> None:
        site = self.request.headers.get("Sec-Fetch-Site")
        if self.request.method == "GET" and site is not None and site not in OWN_FETCH_SITES:
            raise ApiError(403, "Cross-origin request refused")
        try:
            await self.load_session()
            await self.claim_express_session()  # logging out ends the Express session too
        except StoreUnavailable:
            raise ApiError(500, "Could not log out.") from None

    async def get(self) -> None:
        try:
            await self.log_out()
        except StoreUnavailable:
            raise ApiError(500, "Could not log out.") from None
        self.write({})

    post = get
    # No HEAD: a probe must never sign anyone out (405, Allow: GET, POST).


class MeHandler(SessionHandler):
    def get(self) -> None:
        user = self.current_user
        if not isinstance(user, User):
            raise ApiError(401, "Not logged in")
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.write(me_answer(user))  # the record as the users file has it now

    head = get


#: GET /api/me's body per user, encoded once: a User is replaced whenever the users file
#: changes its record, so the body is kept with the User it was made from.
_ANSWERS: dict[str, tuple[User, bytes]] = {}
_MAX_ANSWERS = 10_000  # past it (users come and go), start over


def me_answer(user: User) -> bytes:
    """``{"user": ...}`` as ``write()`` would encode it, once per version of the record."""
    cached = _ANSWERS.get(user.key)
    if cached is not None and cached[0] is user:
        return cached[1]
    body = json_encode({"user": user.public}).encode()
    if len(_ANSWERS) >= _MAX_ANSWERS:
        _ANSWERS.clear()
    _ANSWERS[user.key] = (user, body)
    return body
