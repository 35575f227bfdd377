"""One access-log line per request, with nothing in it that could open a session.

Tornado's default line carries the full URI, query string included; query strings are where
careless clients put tokens and passwords. Ours has the method, the path alone, the status,
the duration and the client address (the proxy's X-Forwarded-For hop only when trusted).
Cookies, headers and bodies are never logged, so no session id, password or secret can be.
"""

from __future__ import annotations

import logging

from tornado.web import RequestHandler

from campus.handlers.base import client_address
from campus.services import Services

access_log = logging.getLogger("campus.access")

#: Longer paths are cut: a log line per request must stay a line, and a short one.
MAX_PATH = 200


def printable(path: str) -> str:
    """The path with anything but printable ASCII escaped, so a request cannot forge lines."""
    text = "".join(c if " " < c < "\x7f" else f"\\x{ord(c):02x}" for c in path)
    return text if len(text) <= MAX_PATH else text[: MAX_PATH - 3] + "..."


def log_request(handler: RequestHandler) -> None:
    """Application ``log_function``: ``client "METHOD /path" status duration``."""
    request, status = handler.request, handler.get_status()
    services = handler.settings.get("services")
    trust_proxy = isinstance(services, Services) and services.config.server.trust_proxy
    access_log.log(
        logging.INFO if status < 500 else logging.WARNING,
        '%s "%s %s" %d %.1fms',
        printable(client_address(request, trust_proxy=trust_proxy)),
        printable(request.method or ""),
        printable(request.path),
        status,
        1000.0 * request.request_time(),
    )
