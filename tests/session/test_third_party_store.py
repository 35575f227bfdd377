"""A store campus does not ship, held to the contract the way its author would hold it.

examples/sqlite_store.py implements only the six methods of SessionStore; the few lines
below are all its author needs to run the contract against it (docs/session-library.md
shows them).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from campus.session.contract import ContractClock, SessionStoreContract
from campus.session.store import SessionStore
from tests.support.servers import REPO


def example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SQLiteStore = example("sqlite_store").SQLiteStore


class TestSQLiteStore(SessionStoreContract):
    async def make_store(self, clock: ContractClock) -> SessionStore:
        store: SessionStore = SQLiteStore(":memory:", clock=clock)
        return store
