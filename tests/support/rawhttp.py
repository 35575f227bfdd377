"""Raw HTTP for the property and fuzz tests: any bytes out, whatever comes back, and a site
with a secret planted next to static/ and dist/.

http.client and Tornado's client refuse to send malformed requests; an attacker does not,
so these tests write the bytes themselves, one connection per request (``Connection: close``).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Appears in every file outside static/ and dist/, and nowhere inside them.
SECRET = b"SECRET-6f1c0e-must-never-be-served"


@dataclass(frozen=True)
class Response:
    raw: bytes  # everything the server sent (b"" if it closed without answering)

    @property
    def status(self) -> int | None:
        head = self.raw.split(b"\r\n", 1)[0].split(b" ")
        return int(head[1]) if len(head) > 1 and head[0].startswith(b"HTTP/") else None

    @property
    def headers(self) -> dict[str, str]:
        head = self.raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
        return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head)}

    def header_list(self, name: str) -> list[str]:
        """Every value of header *name* (``headers`` keeps the last): Set-Cookie, for one."""
        head = self.raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
        lines = (line.partition(":") for line in head)
        return [v.strip() for k, _, v in lines if k.strip().lower() == name.lower()]

    @property
    def body(self) -> bytes:
        return self.raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in self.raw else b""


def build(
    method: str | bytes,
    target: str | bytes,
    headers: Sequence[tuple[str | bytes, str | bytes]] = (),
    body: bytes | None = None,
    *,
    host: str = "127.0.0.1",
    close: bool = True,
) -> bytes:
    """A request; Host, Content-Length and (unless *close* is false) ``Connection: close``
    added unless given."""

    def raw(text: str | bytes) -> bytes:
        return text if isinstance(text, bytes) else text.encode("latin-1")

    names = {raw(name).lower() for name, _ in headers}
    lines = [raw(method) + b" " + raw(target) + b" HTTP/1.1"]
    lines += [raw(name) + b": " + raw(value) for name, value in headers]
    if b"host" not in names:
        lines.append(b"Host: " + host.encode())
    if body is not None and b"content-length" not in names:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def exchange(
    port: int, request: bytes, *, timeout: float = 10, source: str | None = None
) -> Response:
    """Send *request*, read until the server closes; a hang is a failure (TimeoutError).

    *source*: the client's own address (any 127.x.y.z is this machine: another client).
    """
    bind = (source, 0) if source is not None else None
    with socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=bind
    ) as sock:
        # It may answer (e.g. 413) and close before taking everything: read that answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return Response(b"".join(chunks))


def read_response(sock: socket.socket) -> Response:
    """One response from a connection that may stay open: up to the end of its body
    (Content-Length, else chunked, else the server closing); b"" if it closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return Response(data)
        data += chunk
    head = Response(data)
    length = head.headers.get("content-length")
    if length is not None:
        end = data.index(b"\r\n\r\n") + 4 + int(length)
        while len(data) < end:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return Response(data[:end])
    if head.headers.get("transfer-encoding", "").lower() == "chunked":
        while not data.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return Response(data)
    while chunk := sock.recv(65536):
        data += chunk
    return Response(data)


def plant_site(root: Path) -> set[bytes]:
    """static/ and dist/ under *root*, secrets around them; returns what may be served."""
    served = {
        "static/app.js": b"console.log('campus');\n",
        "static/robots.txt": b"User-agent: *\n",
        "static/img/logo.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>\n",
        "static/a b/c%20d.txt": b"spaces and percents\n",
        "dist/index.html": b"<!doctype html><title>campus</title><div id=app></div>\n",
        "dist/assets/main.js": b"export default 1;\n",
    }
    secrets = {
        "secret.txt": SECRET,
        "config/campus.env": b"CAMPUS_SESSION_SECRET=" + SECRET + b"\n",
        "users.json": b'[{"password_hash": "' + SECRET + b'"}]',
        "private/inner.txt": SECRET,
        "static.bak/app.js": SECRET,  # a sibling whose name starts like a root
        "distx/index.html": SECRET,
    }
    for relative, content in {**served, **secrets}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    # Links inside the roots that lead out of them must not be followed out.
    os.symlink(root / "secret.txt", root / "static" / "leak.txt")
    os.symlink(root / "private", root / "static" / "linked")
    os.symlink(root / "secret.txt", root / "dist" / "leak")
    return set(served.values())
