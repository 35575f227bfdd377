"""Static files and the SPA shell: static/ first, then dist/, then dist/index.html.

Never touches a session, so it keeps serving while the store is down. Files come through
Tornado's StaticFileHandler (ETag, Last-Modified, 304, ranges); which root a path resolves
to is decided here, with every candidate's real path checked to lie inside its root.
"""

from __future__ import annotations

import os
import posixpath
from http import HTTPStatus

from tornado.web import HTTPError, StaticFileHandler

from campus.observability import requestid
from campus.web.handlers.base import JsonErrorsMixin
from campus.web.handlers.security import FRONTEND_HEADERS, set_headers

SHELL = "index.html"

#: What a web page loads. Anything else in static/ or dist/ (a wheel or sdist built there by
#: mistake, an editor's backup, a .env) is not the app's, and is never handed out.
WEB_FILES = frozenset(
    {
        *(".html", ".js", ".mjs", ".css", ".map", ".json", ".webmanifest", ".wasm"),
        *(".txt", ".xml", ".pdf", ".vtt"),
        *(".svg", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".avif", ".ico"),
        *(".woff", ".woff2", ".ttf", ".otf"),
        *(".mp3", ".mp4", ".webm", ".ogg"),
    }
)


def is_web_file(relative: str) -> bool:
    """Whether the file at *relative* (inside a root) is one the app may serve: a web type,
    and no hidden name on its way (``.git/``, ``.env``) but ``.well-known/``."""
    parts = relative.split(os.sep)
    if any(part.startswith(".") and part != ".well-known" for part in parts):
        return False
    return posixpath.splitext(parts[-1])[1].lower() in WEB_FILES


def resolve(roots: list[str], url_path: str) -> tuple[str, str] | None:
    """The (root, relative path) of the first web file (:func:`is_web_file`) *url_path*
    names, if any.

    Tornado has already percent-decoded the path, so ``%2e%2e`` and ``%2f`` arrive as
    ``..`` and ``/``; a backslash is an ordinary character on POSIX. The containment check
    is on the resolved real path, so neither ``..`` nor a symlink can leave a root, and the
    type check on the file that would be sent, whatever name the request used.
    """
    if "\x00" in url_path:
        return None
    relative = url_path.lstrip("/")
    for root in roots:
        candidate = os.path.realpath(os.path.join(root, relative))
        if candidate.startswith(root + os.sep) and os.path.isfile(candidate):
            found = os.path.relpath(candidate, root)
            return (root, found) if is_web_file(found) else None
    return None


def has_extension(url_path: str) -> bool:
    return "." in posixpath.basename(url_path.rstrip("/"))


class FrontendHandler(JsonErrorsMixin, StaticFileHandler):
    """GET/HEAD anything outside the API: a file if one exists, else the SPA shell."""

    # Anything else is 405 at once: before Tornado's token check, which is not ours.
    SUPPORTED_METHODS = ("GET", "HEAD")

    def initialize(self, roots: list[str]) -> None:  # type: ignore[override]
        self.roots = [os.path.realpath(root) for root in roots]
        self.dist = self.roots[-1]
        super().initialize(path=self.dist)

    def set_default_headers(self) -> None:
        # Here rather than in set_extra_headers: also on 304s, 404s and other errors.
        set_headers(self, FRONTEND_HEADERS)
        self.set_header(requestid.HEADER, requestid.request_id())

    async def get(self, path: str, include_body: bool = True) -> None:
        if path.startswith("api/"):
            # Only an encoded spelling gets here (/%61pi/me, /api%2Fme): the API's paths are
            # never the shell, however they are written.
            # Answered here, not raised: send_error() would reset the headers to the shell's.
            self.set_status(HTTPStatus.NOT_FOUND)
            self.set_header("Cache-Control", "no-store")
            self.finish_error("Not found")
            return
        found = resolve(self.roots, path)
        if found is None:
            if has_extension(path):
                raise HTTPError(404)
            found = (self.dist, SHELL)
        self.root, relative = found
        await super().get(relative, include_body)
        if self.get_status() == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE:
            # StaticFileHandler leaves a 416 empty, text/plain and unfinished: ours are JSON.
            self.finish_error("Range not satisfiable")

    def compute_etag(self) -> str | None:
        # Size and mtime, like nginx: StaticFileHandler's content hash is cached for the life of
        # the process, so a shell rebuilt in place would keep answering 304 to stale copies.
        assert self.absolute_path is not None
        stat = os.stat(self.absolute_path)
        return f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'

    def set_extra_headers(self, path: str) -> None:
        # The shell and the modules it loads change together at a deploy and their names carry
        # no version: each is revalidated (a 304 when unchanged), so a browser never runs an
        # old module under a new shell. static/ files (favicon, robots.txt) may be cached.
        if self.root == self.dist:
            self.set_header("Cache-Control", "no-cache")

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        if not os.path.isfile(absolute_path):  # e.g. dist/index.html missing
            raise HTTPError(404)
        return super().validate_absolute_path(root, absolute_path)
