"""Debian's nginx running config/nginx/campus.conf for the tests, and curl as its client.

The file is used as shipped, changed only where it says so itself (its lines marked ``EDIT``:
server name, certificate paths, listen ports, upstream servers); :func:`render` fails when
one of those is no longer where the test expects it, or a change would touch another line.
nginx runs in a prefix of its own (pid, logs, temporary files) around that file, with what
Debian's ``/etc/nginx/nginx.conf`` sets in ``http {}``, plus an access log that names the
upstream each request went to.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.servers import REPO

NGINX = Path("/usr/sbin/nginx")
CONF = REPO / "config" / "nginx" / "campus.conf"
#: The shipped file's placeholders, replaced by the test's values.
SHIPPED_NAME = "campus.example.edu"


@dataclass(frozen=True)
class Site:
    """What the operator fills in: the file's EDIT lines."""

    server_name: str
    certificate: Path
    key: Path
    https_port: int
    http_port: int
    upstreams: tuple[int, ...]  # ports of the campus processes on 127.0.0.1

    @property
    def origin(self) -> str:
        return f"https://{self.server_name}:{self.https_port}"


_UPSTREAM = re.compile(r"(\s*server )127\.0\.0\.1:\d+(\D.*)")


def http2_directive() -> bool:
    """Whether this nginx wants `http2 on;` rather than `listen ... http2` (1.25.1 and later,
    e.g. Debian 13's 1.26: the old form still works, with a warning from `nginx -t`)."""
    printed = subprocess.run([str(NGINX), "-v"], capture_output=True, text=True).stderr
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", printed)
    assert found is not None, printed
    return tuple(int(part) for part in found.groups()) >= (1, 25, 1)


def render(text: str, site: Site, *, http2_on: bool = False) -> str:
    """The shipped file with its EDIT lines filled in for *site*, and nothing else changed.
    With *http2_on*, the listen lines are edited as the file's head says for nginx 1.25.1+."""
    rules = [  # (shipped text, replacement, how many EDIT lines hold it)
        (f"server_name {SHIPPED_NAME};", f"server_name {site.server_name};", 2),
        (f"/etc/ssl/{SHIPPED_NAME}/fullchain.pem;", f"{site.certificate};", 1),
        (f"/etc/ssl/{SHIPPED_NAME}/privkey.pem;", f"{site.key};", 1),
        ("listen 443 ", f"listen 127.0.0.1:{site.https_port} ", 2),
        ("listen 80;", f"listen 127.0.0.1:{site.http_port};", 1),
        ("https://$host$request_uri;", f"https://$host:{site.https_port}$request_uri;", 1),
    ]
    hits = [0] * len(rules)
    upstream_lines = 0
    lines: list[str] = []
    for line in text.splitlines():
        if "# EDIT" not in line:
            lines.append(line)
            continue
        upstream = _UPSTREAM.fullmatch(line)
        if upstream:
            if not upstream_lines:  # the first server line becomes one per process
                lines += [f"{upstream[1]}127.0.0.1:{port}{upstream[2]}" for port in site.upstreams]
            upstream_lines += 1
            continue
        for number, (old, new, _) in enumerate(rules):
            if old in line:
                line = line.replace(old, new)
                hits[number] += 1
        if http2_on and " ssl http2" in line and not line.lstrip().startswith("#"):
            lines.append(line.replace(" ssl http2", " ssl"))
            line = line[: len(line) - len(line.lstrip())] + "http2 on;"
        lines.append(line)
    expected = [count for _, _, count in rules]
    assert hits == expected and upstream_lines >= 1, (
        f"{CONF.name} changed: the EDIT lines the test fills in are not where it expects them"
        f" (found {hits} of {expected}, {upstream_lines} upstream server lines)"
    )
    rendered = "\n".join(lines) + "\n"
    left = [old for old in [SHIPPED_NAME, *(rule[0] for rule in rules)] if old in rendered]
    assert not left, f"{CONF.name}: {left} outside the lines marked EDIT"
    return rendered


def make_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for *name* (its own CA for curl's --cacert) and its key."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "2", "-subj", f"/CN={name}"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


#: The http {} settings of Debian's /etc/nginx/nginx.conf around the sites it includes.
_MAIN = """\
{user}daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 512;
}}
http {{
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    gzip on;

    # The test's own: which upstream(s) each request went to; temporary files in the prefix.
    log_format upstreams '$remote_addr "$request" $status $server_protocol '
                         '[$upstream_addr] [$upstream_status]';
    access_log {prefix}/access.log upstreams;
    client_body_temp_path {prefix}/temp/body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;

    include {prefix}/campus.conf;
}}
"""


class Nginx:
    """``nginx`` in the foreground, in a prefix directory of its own."""

    def __init__(self, prefix: Path, site_conf: str) -> None:
        self.prefix = prefix
        (prefix / "temp").mkdir(parents=True, exist_ok=True)
        (prefix / "campus.conf").write_text(site_conf)
        # As root, nginx's workers would switch to "nobody", who cannot enter pytest's
        # private temporary directories; the files here are the test's own.
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(_MAIN.format(user=user, prefix=prefix))
        self.process: subprocess.Popen[bytes] | None = None

    def command(self, *extra: str) -> list[str]:
        return [str(NGINX), "-p", str(self.prefix), "-c", str(self.conf), "-e", "stderr", *extra]

    def check(self) -> str:
        """``nginx -t``, as an operator runs it after editing: its output (it must pass)."""
        result = subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stderr

    def start(self, port: int) -> None:
        self.process = subprocess.Popen(self.command(), stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {self.stop()}") from None
                time.sleep(0.02)

    def stop(self) -> str:
        """Stop (fast shutdown) and return nginx's error log."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            _, stderr = self.process.communicate(timeout=15)
            self.process = None
            return stderr.decode() + self.error_log()
        return self.error_log()

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text() if path.exists() else ""

    def access_log(self) -> list[str]:
        path = self.prefix / "access.log"
        return path.read_text().splitlines() if path.exists() else []


@dataclass
class Reply:
    status: int
    version: str  # as curl names it: "1.1", "2"
    headers: dict[str, list[str]] = field(default_factory=dict)  # lower-case names
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[-1] if values else None

    def json(self) -> Any:
        return json.loads(self.body)

    def cookie(self, name: str = "campus.sid") -> str | None:
        """The Set-Cookie line for *name*, whole (attributes included), or None."""
        for line in self.headers.get("set-cookie", []):
            if line.startswith(f"{name}="):
                return line
        return None


def _parse_headers(dump: str) -> tuple[int, dict[str, list[str]]]:
    """The last response head of a ``curl -D`` dump (after any 1xx): status, headers."""
    head = [block for block in re.split(r"\r?\n\r?\n", dump) if block.strip()][-1]
    status_line, *lines = head.splitlines()
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(status_line.split()[1]), headers


class Curl:
    """curl to the proxy over one HTTP version, from one loopback address of our choosing.

    Every 127.0.0.0/8 address is this machine: a client bound to 127.0.0.5 reaches nginx
    from 127.0.0.5, while nginx reaches campus from 127.0.0.1, so the address campus logs
    tells whether it came from X-Forwarded-For.
    """

    def __init__(self, site: Site, directory: Path, *, http2: bool, source: str) -> None:
        self.site, self.directory, self.http2, self.source = site, directory, http2, source

    def __call__(
        self,
        method: str,
        path: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: Any = None,
        host: str | None = None,
        url: str | None = None,
    ) -> Reply:
        site = self.site
        name = host or site.server_name
        head, content = self.directory / "head.txt", self.directory / "body.bin"
        args = ["curl", "-sS", "--max-time", "10", "--cacert", str(site.certificate)]
        args += ["--resolve", f"{name}:{site.https_port}:127.0.0.1"]
        args += ["--resolve", f"{name}:{site.http_port}:127.0.0.1"]
        args += ["--interface", self.source, "--http2" if self.http2 else "--http1.1"]
        args += ["-X", method, "-D", str(head), "-o", str(content), "-w", "%{http_version}"]
        for header, value in headers or []:
            args += ["-H", f"{header}: {value}"]
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            args += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
        args.append(url or f"https://{name}:{site.https_port}{path}")
        result = subprocess.run(args, input=data, capture_output=True, timeout=20)
        if result.returncode != 0:
            raise CurlError(result.returncode, result.stderr.decode().strip())
        status, parsed = _parse_headers(head.read_text(errors="replace"))
        return Reply(status, result.stdout.decode(), parsed, content.read_bytes())


class CurlError(Exception):
    """curl could not get a response: exit code and curl's message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"curl exit {code}: {message}")
        self.code = code
