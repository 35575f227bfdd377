"""Reading the access lines a test's requests caused (pytest's caplog)."""

from __future__ import annotations

import re

import pytest

#: One access line: client, "method path", status, duration.
LINE = re.compile(r'(?P<client>\S+) "(?P<method>\S+) (?P<path>\S+)" (?P<status>\d{3}) [0-9.]+ms')


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, str]]:
    lines = []
    for record in caplog.records:
        if record.name == "campus.access":
            match = LINE.fullmatch(record.getMessage())
            assert match, record.getMessage()
            lines.append(match.groupdict())
    return lines
