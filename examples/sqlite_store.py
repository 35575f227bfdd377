"""A session store of your own: SQLite, passing campus.session.contract.SessionStoreContract.

The six methods every store needs. Each call is one short transaction on a local file, on the
event loop's thread: fine for a small app on one machine. Rows are keyed by the SHA-256 of
the session id (session_ref), so a copy of the file holds no id a cookie could carry.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Mapping

from campus.session.store import (
    Clock,
    SessionRecord,
    StoreUnavailable,
    decode_record,
    encode_record,
    session_ref,
)


class SQLiteStore:
    name = "sqlite"

    def __init__(self, path: str, *, clock: Clock = time.time) -> None:
        self._db, self._clock = sqlite3.connect(path, isolation_level=None), clock
        self._db.execute("CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, rec, until)")

    async def load(self, sid: str, *, touch: int | None) -> SessionRecord | None:
        with self._transaction():
            record = self._live(sid)
            if record is not None and touch is not None:
                self._put(sid, record, touch)  # the idle expiry, pushed in the same call
            return record

    async def create(
        self, sid: str, record: SessionRecord, *, ttl: int, replaces: str | None = None
    ) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM sessions WHERE until <= ?", (self._clock(),))
            self._db.execute("DELETE FROM sessions WHERE id = ?", (session_ref(replaces or ""),))
            self._put(sid, record, ttl)

    async def update(
        self,
        sid: str,
        changed: Mapping[str, str],
        deleted: list[str],
        *,
        ttl: int,
        user: str | None,
    ) -> bool:
        with self._transaction():  # read, merge, write: other writers wait their turn
            record = self._live(sid)
            if record is None:
                return False  # destroyed meanwhile: it stays destroyed
            record.data = {k: v for k, v in record.data.items() if k not in deleted} | {**changed}
            record.user = user or record.user
            self._put(sid, record, ttl)
            return True

    async def delete(self, sid: str) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM sessions WHERE id = ?", (session_ref(sid),))

    async def ping(self) -> None:
        with self._transaction():
            pass

    async def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            with self._db:  # COMMIT at the end, ROLLBACK on an exception
                self._db.execute("BEGIN IMMEDIATE")
                yield
        except sqlite3.Error as exc:  # locked, disk full, ...: a store raises only this
            raise StoreUnavailable(f"sqlite: {exc}") from None

    def _live(self, sid: str) -> SessionRecord | None:
        query = "SELECT rec FROM sessions WHERE id = ? AND until > ?"
        found = self._db.execute(query, (session_ref(sid), self._clock())).fetchone()
        return decode_record(found[0]) if found else None

    def _put(self, sid: str, record: SessionRecord, ttl: int) -> None:
        row = (session_ref(sid), encode_record(record), min(self._clock() + ttl, record.expires))
        self._db.execute("REPLACE INTO sessions VALUES (?, ?, ?)", row)
