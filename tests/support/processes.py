"""Which test is running, so that starting a process can check the test says it is slow.

tests/conftest.py sets :data:`running` before each test's fixtures; :class:`servers.Campus`,
:func:`servers.run_campus` and the Redis topologies call :func:`require_slow` first.
"""

from __future__ import annotations

import pytest

from tests.support.needs import NOT_QUICK

#: The test being set up or run (None outside pytest, e.g. in bench scripts).
running: pytest.Item | None = None


def require_slow(what: str) -> None:
    """Fail the running test if it starts *what* yet ``scripts/test --quick`` would run it:
    it needs the ``slow`` marker, unless another keeps it out (browser, nginx, ...)."""
    item = running
    if item is not None and not any(item.get_closest_marker(name) for name in NOT_QUICK):
        pytest.fail(
            f"{item.nodeid} starts {what}: mark it slow (@pytest.mark.slow, or its file or"
            " fixture in tests/support/needs.py)",
            pytrace=False,
        )
