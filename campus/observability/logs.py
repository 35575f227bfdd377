"""How log lines look: text (the default) or one JSON object per line, for every logger.

Every record that reaches the root logger — ours, Tornado's, asyncio's, redis-py's — goes
through one :class:`~campus.observability.logwriter.LogWriter` with one of the formatters
below, so the rules hold whoever logs:

- A line is at most ``MAX_MESSAGE`` characters of message plus ``MAX_TRACEBACK`` of
  traceback, whatever a client sent (Tornado once logged 60,145 characters of a request).
- In text, control characters are escaped and a traceback's lines are indented, so no client
  can forge a line; JSON needs neither.
- The line names the request it belongs to (its id), when there is one.

JSON schema (one object per line, keys always in this order; absent when not applicable):
``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``message``,
``request_id``; access lines add ``method``, ``path``, ``status``, ``duration_ms``,
``client``; a record with an exception adds ``exception`` (the traceback, its tail kept);
a summary of repeated errors adds ``repeated`` (how many were left out).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from types import TracebackType
from typing import Any

from campus.observability import requestid

#: An access line's fields: method, path, status, duration_ms, client (in that order).
Access = dict[str, Any]
ACCESS_LOGGER = "campus.access"

#: Characters of a message kept; the rest is cut and counted.
MAX_MESSAGE = 2048
#: Characters of a traceback kept: the end, where the error is.
MAX_TRACEBACK = 4096

#: The longest JSON line: a message and a traceback full of escapes are cut further.
MAX_LINE = 8192

#: C0 controls and DEL, escaped in text lines (tab kept); a traceback keeps its line breaks,
#: each followed by an indent, so that only a real record starts a line.
_CONTROLS = {i: f"\\x{i:02x}" for i in [*range(32), 127] if i != 9}
_TRACEBACK_CONTROLS = _CONTROLS | {10: "\n  "}
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def cut(text: str, limit: int) -> str:
    """*text* with at most *limit* characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


def cut_tail(text: str, limit: int) -> str:
    """The last *limit* characters of a traceback, saying how much was cut before them."""
    if len(text) <= limit:
        return text
    return f"[{len(text) - limit} characters cut]...{text[-limit:]}"


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """Structured fields a record carries (access lines set ``fields``)."""
    fields: dict[str, Any] | None = getattr(record, "fields", None)
    return fields or {}


def request_id_of(record: logging.LogRecord) -> str | None:
    """The record's request: set on it (access lines), else the one in whose context it was
    logged (formatting happens synchronously in the logging call's own context)."""
    if hasattr(record, "request_id"):  # set, even to None (a summary belongs to no request)
        rid: str | None = record.request_id
        return rid
    return requestid.current.get()


class _Base(logging.Formatter):
    #: time.strftime's format for the whole seconds, and whether they are in UTC.
    stamp_format = "%Y-%m-%d %H:%M:%S"
    utc = False

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def stamp(self, record: logging.LogRecord) -> tuple[str, int]:
        """The record's time to the second, and its milliseconds."""
        return self.stamp_of(record.created)

    def stamp_of(self, created: float) -> tuple[str, int]:
        """A time to the second, and its milliseconds: strftime once a second, not once a
        line."""
        second = int(created)
        if second != self._second:
            self._second = second
            moment = time.gmtime(second) if self.utc else time.localtime(second)
            self._stamp = time.strftime(self.stamp_format, moment)
        return self._stamp, int((created - second) * 1000)

    def access(self, level: int, created: float, request_id: str | None, fields: Access) -> str:
        """The access line *format* would make of an access record, made without one.

        Its values are already short and escaped (campus.observability.accesslog): nothing to cut.
        """
        raise NotImplementedError

    def message(self, record: logging.LogRecord) -> str:
        """The whole message; formatters escape it (text) and then cut it."""
        try:
            return record.getMessage()
        except Exception as exc:  # a bad format string must not lose the line
            return f"{record.msg!r} (unformattable: {exc})"

    def traceback(self, record: logging.LogRecord) -> str:
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        text = record.exc_text or ""
        if record.stack_info:
            text = f"{text}\n{record.stack_info}" if text else record.stack_info
        return text


class TextFormatter(_Base):
    """``2026-12-01 11:21:05,123 WARNING tornado.general [a1b2c3d4e5f60718]: message``"""

    def format(self, record: logging.LogRecord) -> str:
        stamp, millis = self.stamp(record)
        rid = request_id_of(record)
        where = f"{record.name} [{rid}]" if rid else record.name
        text = self.message(record)
        if not text.isprintable():  # the usual line has no control character to escape
            text = text.translate(_CONTROLS)
        text = cut(text, MAX_MESSAGE)
        line = f"{stamp},{millis:03d} {record.levelname} {where}: {text}"
        traceback = self.traceback(record)
        if traceback:  # escaped first, then cut: escapes cannot stretch it past the cap
            tail = cut_tail(traceback.translate(_TRACEBACK_CONTROLS), MAX_TRACEBACK)
            line = f"{line}\n  {tail}"
        return line

    def access(self, level: int, created: float, request_id: str | None, fields: Access) -> str:
        stamp, millis = self.stamp_of(created)
        where = f"{ACCESS_LOGGER} [{request_id}]" if request_id else ACCESS_LOGGER
        return (
            f"{stamp},{millis:03d} {logging.getLevelName(level)} {where}: {fields['client']}"
            f' "{fields["method"]} {fields["path"]}" {fields["status"]}'
            f" {fields['duration_ms']:.1f}ms"
        )


class JsonFormatter(_Base):
    """One JSON object per record, on one line (the schema is in the module docstring)."""

    stamp_format = "%Y-%m-%dT%H:%M:%S"
    utc = True

    def format(self, record: logging.LogRecord) -> str:
        stamp, millis = self.stamp(record)
        message = self.message(record)
        entry: dict[str, Any] = {
            "time": f"{stamp}.{millis:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": cut(message, MAX_MESSAGE),
        }
        rid = request_id_of(record)
        if rid:
            entry["request_id"] = rid
        entry.update(fields_of(record))
        traceback = self.traceback(record)
        if traceback:
            entry["exception"] = cut_tail(traceback, MAX_TRACEBACK)
        line = _ENCODER.encode(entry)
        if len(line) > MAX_LINE:  # escapes (\u0001 is six characters) stretched it: cut more
            entry["message"] = cut(message, MAX_MESSAGE // 8)
            if traceback:
                entry["exception"] = cut_tail(traceback, MAX_TRACEBACK // 8)
            line = _ENCODER.encode(entry)
        return line

    def access(self, level: int, created: float, request_id: str | None, fields: Access) -> str:
        stamp, millis = self.stamp_of(created)
        message = (
            f'{fields["client"]} "{fields["method"]} {fields["path"]}" {fields["status"]}'
            f" {fields['duration_ms']:.1f}ms"
        )
        entry: dict[str, Any] = {
            "time": f"{stamp}.{millis:03d}Z",
            "level": logging.getLevelName(level),
            "logger": ACCESS_LOGGER,
            "message": message,
        }
        if request_id:
            entry["request_id"] = request_id
        entry.update(fields)
        return _ENCODER.encode(entry)


def formatter(kind: str) -> logging.Formatter:
    """The formatter for ``[log] format``: "text" or "json"."""
    if kind == "json":
        return JsonFormatter()
    if kind == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {kind!r} (expected 'text' or 'json')")


def configure(kind: str = "text", *, level: int = logging.INFO) -> logging.Handler:
    """Send every logger's records through one :class:`LogWriter` on stderr, as *kind*.

    Replaces a writer installed before (tests configure more than once), and nothing else:
    handlers others added to the root logger (pytest's, for one) stay.
    """
    from campus.observability.logwriter import LogWriter

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, LogWriter)]:
        root.removeHandler(old)
        old.close()
    writer = LogWriter()
    writer.setFormatter(formatter(kind))
    root.addHandler(writer)
    root.setLevel(level)
    # What Python itself would print on stderr goes through the same writer, in the same form.
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = lambda args: _log_uncaught(
        args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback
    )
    return writer


def _log_uncaught(
    kind: type[BaseException], value: BaseException, traceback: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, traceback)
        return
    logging.getLogger("campus").critical("uncaught exception", exc_info=(kind, value, traceback))
