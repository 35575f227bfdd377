"""The one log handler: capped lines, no forged lines, no floods, batched writes, none lost."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from campus.observability.logs import MAX_MESSAGE, MAX_TRACEBACK, JsonFormatter, TextFormatter
from campus.observability.logwriter import BURST, FLUSH_DELAY, MAX_KEYS, WINDOW, LogWriter
from campus.session import CookieSigner
from campus.session.store import new_session_id
from tests.support.servers import SECRET, Campus, campus_env, free_port, wait_for

#: No line of any logger may be longer than this, whoever sent what.
LINE_LIMIT = 8 * 1024


class CountingStream(io.StringIO):
    """A stream without a file descriptor, counting the writes the handler makes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def fileno(self) -> int:
        raise io.UnsupportedOperation("no descriptor")

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stream() -> CountingStream:
    return CountingStream()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def logger(stream: CountingStream, clock: Clock) -> Iterator[logging.Logger]:
    """A logger of its own whose records go only to a LogWriter on *stream*."""
    writer = LogWriter(stream, clock=clock)
    writer.setFormatter(TextFormatter())
    log = logging.getLogger(f"test.writer.{id(stream)}")
    log.addHandler(writer)
    log.propagate = False
    log.setLevel(logging.INFO)
    yield log
    log.removeHandler(writer)


def test_a_huge_message_is_cut_and_says_so(logger: logging.Logger, stream: CountingStream) -> None:
    logger.warning("400 GET %s", "/%c0" + "a" * 60_000)
    (line,) = stream.getvalue().splitlines()
    assert len(line) < MAX_MESSAGE + 200
    assert line.endswith(f"... [{len('400 GET /%c0') + 60_000 - MAX_MESSAGE} more characters]")


def test_a_traceback_keeps_its_end_and_no_line_is_long(
    logger: logging.Logger, stream: CountingStream
) -> None:
    def deep(n: int) -> None:
        if n:
            deep(n - 1)
        raise ValueError("x" * 50_000 + " the end")

    try:
        deep(200)
    except ValueError:
        logger.exception("boom")
    text = stream.getvalue()
    assert len(text) < MAX_MESSAGE + MAX_TRACEBACK + 1000
    assert "characters cut]" in text and text.rstrip().endswith("the end")
    assert all(len(line) <= LINE_LIMIT for line in text.splitlines())


def test_text_lines_cannot_be_forged(logger: logging.Logger, stream: CountingStream) -> None:
    logger.warning("user said %s", "hi\n2026-12-01 11:00:00,000 INFO campus: forged\r\x1b[2J")
    try:
        raise KeyError("evil\n2026-12-01 11:00:00,000 INFO campus: forged too")
    except KeyError:
        logger.exception("failed")
    lines = stream.getvalue().splitlines()
    starts = [line for line in lines if line.startswith("20")]
    assert len(starts) == 2, lines  # the two records; every other line is indented
    assert "\\x0a2026" in starts[0] and "\\x1b" in starts[0]


def test_json_lines_are_one_object_each() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord("campus", logging.ERROR, __file__, 1, "bad %s", ("a\nb",), None)
    record.request_id = "r-1"
    try:
        raise RuntimeError("inner")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    line = formatter.format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert list(entry) == ["time", "level", "logger", "message", "request_id", "exception"]
    assert entry["message"] == "bad a\nb" and entry["exception"].endswith("RuntimeError: inner")
    assert entry["time"].endswith("Z") and entry["level"] == "ERROR"


def test_the_same_error_many_times_is_summarised(
    logger: logging.Logger, stream: CountingStream, clock: Clock
) -> None:
    for n in range(1000):
        logger.error("accept failed on fd %d", n)  # same template, other arguments
        clock.now += 0.001
    logger.error("another error")  # a different one is not held back
    lines = stream.getvalue().splitlines()
    assert len(lines) == BURST + 1
    clock.now += WINDOW
    logger.error("accept failed on fd %d", 1001)  # the window ended: summary, then this one
    lines = stream.getvalue().splitlines()
    assert "995 more like this" in lines[BURST + 1] and "accept failed on fd 0" in lines[BURST + 1]
    assert lines[-1].endswith("accept failed on fd 1001")


def test_summaries_count_their_whole_length_towards_a_batch(
    stream: CountingStream, clock: Clock
) -> None:
    """Past MAX_KEYS distinct errors every window closes with its summary: those lines
    weigh what they are, and the batch goes out once it passes FLUSH_BYTES."""
    writer = LogWriter(stream, clock=clock)
    writer.setFormatter(TextFormatter())
    loop = asyncio.new_event_loop()  # attached, never run: only a full batch is written
    writer.attach(loop)
    try:
        for key in range(MAX_KEYS + 1):
            message = f"error {chr(0x4E00 + key)} " + "x" * 250  # a distinct template each
            for _ in range(BURST + 1 if key < MAX_KEYS else 1):
                writer.handle(logging.LogRecord("campus", logging.ERROR, "", 0, message, (), None))
        assert stream.getvalue().count("more like this") == MAX_KEYS
    finally:
        writer.detach()
        loop.close()


def test_access_lines_are_never_summarised(stream: CountingStream, clock: Clock) -> None:
    writer = LogWriter(stream, clock=clock)
    writer.setFormatter(TextFormatter())
    for n in range(50):
        record = logging.LogRecord("campus.access", logging.WARNING, "", 0, "503 %d", (n,), None)
        writer.handle(record)
    assert len(stream.getvalue().splitlines()) == 50


def test_lines_are_batched_on_the_loop_and_out_within_the_delay(stream: CountingStream) -> None:
    writer = LogWriter(stream)
    writer.setFormatter(TextFormatter())

    def access(message: str) -> None:  # access lines: never summarised
        writer.handle(logging.LogRecord("campus.access", logging.INFO, "", 0, message, (), None))

    async def scenario() -> None:
        writer.attach(asyncio.get_running_loop())
        for n in range(200):
            access(f"request {n}")
        assert stream.writes == 0  # nothing yet: one batch later
        started = time.monotonic()
        thread = threading.Thread(target=access, args=("from a thread",))
        thread.start()
        thread.join()
        while stream.writes == 0:
            await asyncio.sleep(0.005)
        assert time.monotonic() - started < 0.1 + FLUSH_DELAY
        assert stream.writes == 1 and len(stream.getvalue().splitlines()) == 201
        access("last words")
        writer.detach()  # shutdown: out at once
        assert stream.getvalue().endswith("last words\n")

    asyncio.run(scenario())


def test_logging_shutdown_writes_what_is_buffered(stream: CountingStream) -> None:
    writer = LogWriter(stream)
    writer.setFormatter(TextFormatter())

    async def scenario() -> None:
        writer.attach(asyncio.get_running_loop())
        for n in range(BURST + 3):  # and a summary still waiting for its window's end
            writer.handle(logging.LogRecord("campus", logging.ERROR, "", 0, "e %d", (n,), None))
        writer.handle(logging.LogRecord("campus", logging.INFO, "", 0, "buffered", (), None))

    asyncio.run(scenario())  # the loop is gone with the lines still in the buffer
    assert stream.getvalue() == ""
    logging.shutdown([lambda: writer])  # what runs at exit
    lines = stream.getvalue().splitlines()
    assert len(lines) == BURST + 2 and lines[BURST].endswith("buffered")
    assert lines[-1].endswith(f"3 more like this in {WINDOW:.0f}s, not logged: e 0")


# -- a real process ------------------------------------------------------------------------


def send(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["text", "json"])
def test_no_line_of_a_real_process_is_long_whoever_sent_what(kind: str) -> None:
    server = Campus(campus_env(CAMPUS_LOG_FORMAT=kind))
    try:
        huge = b"a" * 60_000
        send(server.port, b"GET /%c0" + huge + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        send(server.port, b"GET /%c0 HTTP/1.1\r\nHost: x\r\nX-Junk: " + huge + b"\r\n\r\n")
        send(server.port, b"GET /x HTTP/1.1\r\nHost: " + huge + b"\r\n\r\n")
    finally:
        output = server.stop()
    lines = output.splitlines()
    assert len(lines) >= 4, output[:2000]
    assert max(len(line) for line in lines) <= LINE_LIMIT
    if kind == "json":
        assert all(isinstance(json.loads(line), dict) for line in lines)


@pytest.mark.slow
def test_an_outage_is_summarised_not_a_flood() -> None:
    """Redis refuses every connection: each request is a 503, its warning summarised."""
    server = Campus(
        campus_env(
            CAMPUS_STORE="redis",
            CAMPUS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
            CAMPUS_SESSION_SECRET=SECRET,
        )
    )
    requests = 300
    try:
        cookie = CookieSigner([SECRET]).sign("campus.sid", new_session_id())
        request = f"GET /api/me HTTP/1.1\r\nHost: x\r\nCookie: campus.sid={cookie}\r\n\r\n"
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            for _ in range(requests):
                sock.sendall(request.encode())
                answer = sock.recv(65536)
                assert answer.startswith(b"HTTP/1.1 503"), answer
    finally:
        output = server.stop(signal.SIGTERM)
    access = [line for line in output.splitlines() if "campus.access" in line]
    others = [line for line in output.splitlines() if "tornado.general" in line]
    assert len([line for line in access if '"GET /api/me" 503' in line]) == requests
    assert 1 <= len(others) <= 2 * BURST + 2, others  # the rest summed up
    assert any("more like this" in line for line in others), others


@pytest.mark.slow
def test_junk_requests_never_hide_a_different_error() -> None:
    """Summaries are per kind of line: a flood of one error sums up only that one."""
    server = Campus(
        campus_env(
            CAMPUS_STORE="redis",
            CAMPUS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
            CAMPUS_REDIS_TIMEOUT="0.2",
        )
    )
    login = b'{"email": "a@example.edu", "password": "x"}'
    try:
        for n in range(30):  # a different path each time: one template all the same
            assert server.request(f"/%ff{n}")[0] == 400
        for _ in range(3):
            assert server.request("/login", json.loads(login))[0] == 503
        wait_for(lambda: server.log().count("session store unavailable") >= 3, "the outage lines")
    finally:
        output = server.stop(signal.SIGTERM)
    junk = [line for line in output.splitlines() if "Invalid unicode" in line]
    outage = [line for line in output.splitlines() if "session store unavailable" in line]
    assert len(junk) == BURST + 1 and "25 more like this" in junk[-1], junk
    assert len(outage) == 3, output[-3000:]


@pytest.mark.slow
def test_none_lost_on_sigterm(tmp_path: Path) -> None:
    """A burst of requests right before SIGTERM: every one of them has its access line."""
    server = Campus(campus_env())
    requests = 500
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        request = b"GET /api/me HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(request * requests)
        received = b""
        while received.count(b"HTTP/1.1 401") < requests:
            received += sock.recv(65536)
        output = server.stop(signal.SIGTERM)
    assert output.count('"GET /api/me" 401') == requests
    assert output.rstrip().endswith("campus: stopped")


@pytest.mark.slow
def test_access_lines_can_be_turned_off() -> None:
    server = Campus(campus_env(CAMPUS_LOG_ACCESS="false"))
    server.request("/api/me")
    output = server.stop()
    assert "campus.access" not in output and "listening on" in output


def test_both_units_let_journald_keep_every_access_line() -> None:
    """journald's default limit (10,000 lines per 30 s) would drop lines at ~330 requests/s."""
    from tests.support.servers import REPO

    for unit in ("campus.service", "campus@.service"):
        settings = dict(
            line.split("=", 1)
            for line in (REPO / "config" / unit).read_text().splitlines()
            if line.startswith("LogRateLimit")
        )
        interval = float(settings["LogRateLimitIntervalSec"].removesuffix("s"))
        assert int(settings["LogRateLimitBurst"]) / interval >= 5000, unit  # lines per second


def test_asyncio_accept_errors_are_summarised_whatever_socket_they_name(
    stream: CountingStream,
) -> None:
    """asyncio builds each message with the socket in it: still the same error."""
    writer = LogWriter(stream)
    writer.setFormatter(TextFormatter())
    log = logging.getLogger("asyncio")
    log.addHandler(writer)
    try:

        async def scenario() -> None:
            loop = asyncio.get_running_loop()
            for fd in range(100):
                try:
                    raise OSError(24, "Too many open files")
                except OSError as exc:
                    loop.call_exception_handler(
                        {
                            "message": "socket.accept() out of system resource",
                            "exception": exc,
                            "socket": f"<socket fd={fd} laddr=('127.0.0.1', {40000 + fd})>",
                        }
                    )

        asyncio.run(scenario())
    finally:
        log.removeHandler(writer)
    records = [line for line in stream.getvalue().splitlines() if line.startswith("20")]
    assert len(records) == BURST, records


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()], ids=["text", "json"])
@pytest.mark.parametrize("char", ["a", "\x01", "ü", "\U0001f600", "\n", '"'])
def test_no_character_makes_a_line_long(formatter: logging.Formatter, char: str) -> None:
    """Escapes grow text (\\x01 is 4 characters in text, 6 in JSON): the cap holds after them."""
    record = logging.LogRecord("campus", logging.ERROR, "", 0, "%s", (char * 100_000,), None)
    try:
        raise ValueError(char * 100_000)
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    text = formatter.format(record)
    assert all(len(line) <= LINE_LIMIT for line in text.splitlines())
    assert len(text) <= 2 * LINE_LIMIT


@pytest.mark.slow
def test_warnings_and_uncaught_errors_are_json_lines_too() -> None:
    """What Python itself prints on stderr goes through the writer, in the chosen format."""
    import subprocess
    import sys

    from tests.support.servers import REPO

    script = (
        "import threading, warnings\n"
        "from campus.observability.logs import configure\n"
        "configure('json')\n"
        "warnings.warn('careful', RuntimeWarning)\n"
        "thread = threading.Thread(target=lambda: 1 / 0)\n"
        "thread.start(); thread.join()\n"
        "raise SystemError('the end')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    entries = [json.loads(line) for line in done.stderr.splitlines()]
    assert [e["logger"] for e in entries] == ["py.warnings", "campus", "campus"]
    assert "careful" in entries[0]["message"]
    assert entries[1]["exception"].endswith("ZeroDivisionError: division by zero")
    assert entries[2]["level"] == "CRITICAL" and entries[2]["exception"].endswith("the end")


@pytest.mark.slow
def test_malformed_requests_do_not_flood_the_log() -> None:
    """Tornado logs each malformed request at INFO: 200 of them are a few lines, not 200."""
    server = Campus(campus_env())
    try:
        for _ in range(200):
            send(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
    finally:
        output = server.stop()
    malformed = [line for line in output.splitlines() if "Malformed HTTP message" in line]
    assert 1 <= len(malformed) <= BURST + 1, malformed
    assert any("more like this" in line for line in malformed)
