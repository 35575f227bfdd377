"""The event loop campus runs on: uvloop when it is installed (it is a dependency), else
asyncio's own. ``[server] event_loop`` (``CAMPUS_SERVER_EVENT_LOOP``) picks:

- ``"auto"`` (the default): uvloop if it imports, asyncio's loop otherwise;
- ``"uvloop"``: uvloop, and refuse to start without it;
- ``"asyncio"``: asyncio's loop, the way back if uvloop ever misbehaves.

uvloop serves the same requests in fewer instructions (campus-redis: 11% fewer per
``GET /api/me``; bench/README.md has the measurements); nothing in campus depends on which
loop runs it.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class EventLoopError(Exception):
    """The configured loop cannot run here; str() is one line."""


def loop_factory(choice: str) -> LoopFactory | None:
    """What makes the configured loop (None: asyncio's default). Raises EventLoopError."""
    if choice == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise EventLoopError(
                "server.event_loop is uvloop, but uvloop is not installed"
                ' (pip install uvloop, or set event_loop = "auto")'
            ) from None
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """ "uvloop" or "asyncio", for the log."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def run(main: Coroutine[Any, Any, T], factory: LoopFactory | None) -> T:
    """asyncio.run() on the chosen loop."""
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
