"""Reads that arrive together travel together: one pipeline per event-loop turn.

Under load, many requests reach their session read in the same turn of the event loop.
Sent one by one, each read pays a pooled connection, a write, a wake-up and a read of its
own. Queued until the turn ends and sent as one pipeline (not a transaction), they share
all that. Each read is still exactly one Redis command; only round trips are saved.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

Command = tuple[Any, ...]


class ReadBatcher:
    """Sends the read commands queued during one loop turn in a single round trip."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._pending: list[tuple[Command, asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()  # strong references until done

    def execute(self, *command: Any) -> asyncio.Future[Any]:
        """Queue *command*; the future resolves with its reply (or its error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((command, future))
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[Command, asyncio.Future[Any]]]) -> None:
        try:
            if len(batch) == 1:
                reply = await self._client.execute_command(*batch[0][0])  # type: ignore[no-untyped-call]
                replies: list[Any] = [reply]
            else:
                pipe = self._client.pipeline(transaction=False)
                for command, _ in batch:
                    pipe.execute_command(*command)
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection failed: every read in the batch did
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller gave up (deadline)
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
