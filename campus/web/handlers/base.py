"""What every campus handler shares: JSON errors, never an HTML traceback; proxy awareness.

:class:`JsonErrorsMixin` is the one place where errors become answers: an :class:`ApiError`
says its own message, Tornado's own errors (404, 405, ...) get ours, and a
:class:`~campus.session.StoreUnavailable` that any handler lets propagate is the 503
``Session store unavailable`` with ``Retry-After``, logged as one line without a traceback.
"""

from __future__ import annotations

from http import HTTPStatus
from types import TracebackType
from typing import Any

from tornado.log import app_log, gen_log
from tornado.web import HTTPError, RequestHandler

from campus.http.clients import client_address
from campus.http.errors import RETRY_AFTER, error_body
from campus.observability import requestid
from campus.session import StoreUnavailable
from campus.web.handlers.origin import is_cross_origin, origin_of
from campus.web.handlers.security import COMMON_HEADERS, set_headers
from campus.web.services import Services

#: Messages for statuses raised without one of our own (Tornado's 404/405, our 503s, ...).
_DEFAULT_MESSAGES = {
    HTTPStatus.SERVICE_UNAVAILABLE: "Session store unavailable",
    HTTPStatus.INTERNAL_SERVER_ERROR: "Internal server error",
}


def _default_message(status_code: int) -> str:
    """Our wording for a status: sentence case, like our own messages ("Not found")."""
    try:
        status = HTTPStatus(status_code)
    except ValueError:
        return "Error"
    phrase = status.phrase
    return _DEFAULT_MESSAGES.get(status, phrase[:1] + phrase[1:].lower())


def allowed_methods(handler: type[RequestHandler]) -> list[str]:
    """The methods a handler class answers (for ``Allow`` on a 405): those it defines, plus
    any its route also sends elsewhere (``also_allowed``, e.g. GET /login to the SPA)."""
    methods = [
        method
        for method in handler.SUPPORTED_METHODS
        if getattr(handler, method.lower(), None) is not getattr(RequestHandler, method.lower())
    ]
    also: tuple[str, ...] = getattr(handler, "also_allowed", ())
    return sorted({*methods, *also})


class ApiError(HTTPError):
    """An error whose ``errorMessage`` the client is meant to read."""

    def __init__(self, status: int, message: str, **headers: str) -> None:
        super().__init__(status, message.replace("%", "%%"))
        self.error_message = message
        self.headers = headers


class JsonErrorsMixin(RequestHandler):
    """Every error body is ``{"errorMessage": ...}`` — including Tornado's own 404/405/500."""

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, StoreUnavailable):
            status_code = HTTPStatus.SERVICE_UNAVAILABLE  # the store, not us: try again soon
        super().send_error(status_code, **kwargs)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "error_message", None) or _default_message(status_code)
        for name, value in getattr(exc, "headers", {}).items():
            self.set_header(name, value)
        if status_code == HTTPStatus.SERVICE_UNAVAILABLE:
            self.set_header("Retry-After", str(RETRY_AFTER))
        if status_code == HTTPStatus.METHOD_NOT_ALLOWED:
            self.set_header("Allow", ", ".join(allowed_methods(type(self))))
        self.finish_error(message)

    def finish_error(self, message: str) -> None:
        """End the response with the error body, at the status already set."""
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(error_body(message))

    def request_summary(self) -> str:
        """The request in a log line: never its query string, where clients put secrets."""
        return f"{self.request.method} {self.request.path} ({self.request.remote_ip})"

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """One line per error; a traceback only for a bug.

        An HTTPError's message template stays the template: the log writer, which sums up
        repeats of one template, would otherwise take a junk request's "Invalid unicode in
        url" and a store outage for the same line.
        """
        if isinstance(value, StoreUnavailable):
            gen_log.warning("503 %s: session store unavailable: %s", self.request_summary(), value)
        elif isinstance(value, HTTPError):
            message = value.log_message
            if message:
                template = message if value.args else message.replace("%", "%%")
                args = (value.status_code, self.request_summary(), *value.args)
                gen_log.warning("%d %s: " + template, *args)
        else:
            app_log.error("Uncaught exception %s", self.request_summary(), exc_info=value)


class BaseHandler(JsonErrorsMixin, RequestHandler):
    """Base for the API handlers: JSON in and out, never cached."""

    @property
    def services(self) -> Services:
        services = self.settings.get("services")
        if not isinstance(services, Services):
            raise RuntimeError("campus handlers need Application(..., services=Services(...))")
        return services

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        set_headers(self, COMMON_HEADERS)
        self.set_header(requestid.HEADER, requestid.request_id())

    def compute_etag(self) -> None:
        return None  # per-user answers, never cached: an ETag would only invite 304s

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(value, ApiError) and value.status_code < 500:
            return  # the client's mistake, already in the access log
        super().log_exception(typ, value, tb)

    def is_https(self) -> bool:
        """TLS to us, or to the proxy in front when we trust its X-Forwarded-Proto."""
        if self.request.protocol == "https":
            return True
        if not self.services.config.server.trust_proxy:
            return False
        forwarded = self.request.headers.get("X-Forwarded-Proto", "")
        return forwarded.rsplit(",", 1)[-1].strip().lower() == "https"

    def client_address(self) -> str:
        """The client's address; behind a trusted proxy, the one it appended last."""
        return client_address(self.request, trust_proxy=self.services.config.server.trust_proxy)

    def check_xsrf_cookie(self) -> None:
        """Refuse a request whose page is from a foreign origin (CSRF defence beside SameSite).

        Tornado calls this before ``prepare()`` for every method but GET, HEAD and OPTIONS
        (the app sets ``xsrf_cookies``); instead of a token cookie it checks ``Origin``, or
        ``Referer`` without one, against our own origin (from ``Host`` and the scheme, so
        behind a trusted proxy its ``X-Forwarded-Proto``) and ``server.allowed_origins``.
        """
        headers = self.request.headers
        own = origin_of(f"{'https' if self.is_https() else 'http'}://{self.request.host}")
        allowed = self.services.config.server.allowed_origins
        if is_cross_origin(headers.get("Origin"), headers.get("Referer"), own, allowed):
            raise ApiError(403, "Cross-origin request refused")


class NotFoundHandler(BaseHandler):
    """Any /api/ path nobody serves, or a target no route matches: a JSON 404."""

    def prepare(self) -> None:
        raise ApiError(404, "Not found")
