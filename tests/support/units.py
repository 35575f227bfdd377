"""The systemd units in config/, read as systemd reads them (one section at a time)."""

from __future__ import annotations

import configparser

from tests.support.servers import REPO


def service_section(name: str) -> dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(REPO / "config" / name)
    return dict(parser["Service"])
