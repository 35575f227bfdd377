"""The one handler every log line goes through: buffered, bounded, never a flood.

Writing each access line with its own ``write()`` cost a system call per request. Lines are
formatted at once (in the logging call's own context, so they name its request) and kept in a
buffer that goes out in one write:

- at most ``FLUSH_DELAY`` seconds later (a timer on the event loop), or at once when the buffer
  passes ``FLUSH_BYTES``;
- at once when no event loop is attached (start-up, shutdown, the command line);
- from any thread: a line logged by another thread arms the timer through
  ``call_soon_threadsafe``; one lock orders every append and write;
- on shutdown, :meth:`LogWriter.detach` writes what is left, and ``logging.shutdown`` (run
  at exit) calls :meth:`flush` too, so nothing buffered is lost on SIGTERM or at exit. Only a
  SIGKILL can lose the last ``FLUSH_DELAY`` seconds.

The same line repeated (same logger, level, message template and exception site) is written
``BURST`` times in a ``WINDOW``; the rest are counted and summed up in one line when the
window ends. That covers errors and Tornado's info lines alike ("Malformed HTTP message from
...", "Timeout reading body from ...": one per bad connection). Access lines are never
summarised: each request keeps its line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

FLUSH_DELAY = 0.05
FLUSH_BYTES = 64 * 1024
WINDOW = 10.0
BURST = 5
#: Distinct errors tracked at once; past it the oldest windows are closed early.
MAX_KEYS = 1024

_Key = tuple[str, int, str, str]
_NUMBERS = re.compile(r"\d+")


def _key(record: logging.LogRecord) -> _Key:
    """What makes two records "the same error": not their arguments (paths, addresses).

    An exception is known by its type and the line that raised it, whatever the message
    says (asyncio builds its message with the socket in it); otherwise the message template
    counts, with its numbers blanked (a descriptor, a port, a count).
    """
    site = ""
    if record.exc_info and record.exc_info[1] is not None:
        exc, tb = record.exc_info[1], record.exc_info[2]
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else ""
        return record.name, record.levelno, "", f"{type(exc).__name__}@{where}"
    template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
    return record.name, record.levelno, _NUMBERS.sub("#", template[:200]), site


class _Window:
    __slots__ = ("count", "level", "message", "name", "start")

    def __init__(self, start: float, first: logging.LogRecord) -> None:
        self.start = start
        self.count = 1
        # What the summary repeats; not the record itself, whose traceback holds frames.
        self.name, self.level = first.name, first.levelno
        self.message = _message(first)[:300]


class LogWriter(logging.Handler):
    """Formats every record, buffers the lines, writes them in batches (see module doc)."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        exempt: frozenset[str] = frozenset({"campus.access"}),
        clock: Any = time.monotonic,
    ) -> None:
        super().__init__()
        stream = sys.stderr if stream is None else stream
        self._fd: int | None = None
        try:
            stream.flush()
            self._fd = stream.fileno()  # os.write: no second buffer in between
        except (AttributeError, OSError, ValueError):
            pass
        self._stream = stream
        self._lines: list[str] = []
        self._size = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._armed = False
        self._exempt = exempt
        self._clock = clock
        self._windows: dict[_Key, _Window] = {}

    # -- the event loop ------------------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Buffer from now on, flushing on *loop* (call from the loop's own thread)."""
        with self.lock:  # type: ignore[union-attr]
            self._loop = loop
            self._loop_thread = threading.get_ident()

    def detach(self) -> None:
        """Write everything now and from now on (before the loop stops)."""
        with self.lock:  # type: ignore[union-attr]
            self._loop = None
            self._armed = False
            self._summarise(final=True)
            self._write()

    # -- logging.Handler -----------------------------------------------------------------
    def emit(self, record: logging.LogRecord) -> None:  # called under self.lock
        try:
            summed = record.levelno >= logging.INFO and record.name not in self._exempt
            if summed and not self._admit(record):
                self._arm()
                return
            self._add(self.format(record))
        except Exception:
            self.handleError(record)

    def access(self, level: int, request_id: str | None, fields: dict[str, Any]) -> None:
        """An access line without a LogRecord (campus.observability.accesslog's fast path, see
        :func:`sole_writer`): the same line ``emit`` would write, never summarised."""
        line = self.formatter.access(level, time.time(), request_id, fields)  # type: ignore[union-attr]
        with self.lock:  # type: ignore[union-attr]
            self._add(line)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write()

    def close(self) -> None:
        """At exit (``logging.shutdown``): pending summaries and lines go out too."""
        with self.lock:  # type: ignore[union-attr]
            self._summarise(final=True)
            self._write()
        super().close()

    # -- internals (under self.lock) -----------------------------------------------------
    def _add(self, line: str) -> None:
        self._lines.append(line)
        self._size += len(line) + 1
        loop = self._loop
        if loop is None or loop.is_closed() or self._size >= FLUSH_BYTES:
            self._write()
        else:
            self._arm()

    def _arm(self, delay: float = FLUSH_DELAY) -> None:
        loop = self._loop
        if self._armed or loop is None or loop.is_closed():
            return
        self._armed = True
        if threading.get_ident() == self._loop_thread:
            loop.call_later(delay, self._on_timer)
        else:
            loop.call_soon_threadsafe(loop.call_later, delay, self._on_timer)

    def _on_timer(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._armed = False
            self._summarise(final=False)
            self._write()
            if any(w.count > BURST for w in self._windows.values()):
                self._arm(1.0)  # a window with suppressed lines must close with its summary

    def _write(self) -> None:
        if not self._lines:
            return
        data = ("\n".join(self._lines) + "\n").encode("utf-8", "backslashreplace")
        self._lines.clear()
        self._size = 0
        try:
            if self._fd is not None:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
            else:
                self._stream.write(data.decode("utf-8"))
                self._stream.flush()
        except (OSError, ValueError):
            pass  # stderr is gone (closed pipe): nothing sensible left to tell anyone

    def _admit(self, record: logging.LogRecord) -> bool:
        """Whether this line is written, or only counted for a summary."""
        now = self._clock()
        key = _key(record)
        window = self._windows.get(key)
        if window is not None and now - window.start >= WINDOW:
            self._close(key, window)
            window = None
        if window is None:
            if len(self._windows) >= MAX_KEYS:
                self._summarise(final=True)
            self._windows[key] = _Window(now, record)
            return True
        window.count += 1
        return window.count <= BURST

    def _summarise(self, *, final: bool) -> None:
        now = self._clock()
        for key, window in list(self._windows.items()):
            if final or now - window.start >= WINDOW:
                self._close(key, window)

    def _close(self, key: _Key, window: _Window) -> None:
        del self._windows[key]
        left_out = window.count - BURST
        if left_out <= 0:
            return
        summary = logging.LogRecord(
            window.name,
            window.level,
            __file__,
            0,
            "%d more like this in %.0fs, not logged: %s",
            (left_out, WINDOW, window.message),
            None,
        )
        summary.request_id = None
        summary.fields = {"repeated": left_out}
        line = self.format(summary)
        self._lines.append(line)
        self._size += len(line) + 1


def sole_writer(logger: logging.Logger) -> LogWriter | None:
    """The LogWriter that alone receives *logger*'s lines, if so: then a line may be handed
    to it directly, skipping the LogRecord. Anything else listening (a handler or filter
    added by a test or an embedding application) gets records as usual."""
    if logger.handlers or logger.filters or not logger.propagate:
        return None
    handlers = logging.getLogger().handlers
    if len(handlers) != 1:
        return None
    writer = handlers[0]
    if type(writer) is not LogWriter or writer.filters or not hasattr(writer.formatter, "access"):
        return None
    return writer


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:
        return str(record.msg)


@contextlib.contextmanager
def batched_logs(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Batch the root logger's :class:`LogWriter` lines on *loop* for the block's duration;
    whatever is buffered is written when it ends, however it ends."""
    writers = [h for h in logging.getLogger().handlers if isinstance(h, LogWriter)]
    for writer in writers:
        writer.attach(loop)
    try:
        yield
    finally:
        for writer in writers:
            writer.detach()
