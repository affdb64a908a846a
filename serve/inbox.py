"""The frames waiting on one WebSocket stream (pure asyncio, no Ray): at most `limit` wait, and a frame arriving
when `limit` already wait drops the oldest, so a slow service answers the newest frames instead of falling behind."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator


class StreamInbox:
    """Frames are numbered from 0 in arrival order. The receiving side calls `put` and `close`; the answering side
    iterates `frames()`, which yields (frame id, bytes, ids dropped before it) in order and ends once closed."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self.waiting: deque[tuple[int, bytes]] = deque()
        self.dropped: deque[int] = deque()
        self.received = 0
        self.closed = False
        self._arrived = asyncio.Event()

    def put(self, data: bytes) -> None:
        """One frame arrived (b"" for a message that is not a frame: it is answered with an error in its turn)."""
        if len(self.waiting) >= self.limit:
            self.dropped.append(self.waiting.popleft()[0])
        self.waiting.append((self.received, data))
        self.received += 1
        self._arrived.set()

    def close(self) -> None:
        """No more frames will arrive; the ones waiting are still yielded."""
        self.closed = True
        self._arrived.set()

    async def frames(self) -> AsyncIterator[tuple[int, bytes, list[int]]]:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            while self.waiting:
                frame_id, data = self.waiting.popleft()
                dropped_before = []
                while self.dropped and self.dropped[0] < frame_id:
                    dropped_before.append(self.dropped.popleft())
                yield frame_id, data, dropped_before
            if self.closed:
                return
