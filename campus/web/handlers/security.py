"""Security headers for what a browser renders: the SPA shell and the files it loads.

One policy in one place, so the shell, its scripts and the API cannot drift apart. The
shell is plain HTML with ``<script type="module" src=...>`` only: the policy allows no inline
script, no inline style, no eval and no framing, and connects only to this origin.
"""

from __future__ import annotations

from tornado.web import RequestHandler

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",  # the SPA builds its DOM without HTML strings
    ]
)

#: Every response: no MIME sniffing (a JSON body is never a script), no framing (clickjacking).
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}

#: The shell and its files; Referrer-Policy keeps paths and queries from leaving the site.
FRONTEND_HEADERS = {
    **COMMON_HEADERS,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "same-origin",
}


def set_headers(handler: RequestHandler, headers: dict[str, str]) -> None:
    for name, value in headers.items():
        handler.set_header(name, value)
