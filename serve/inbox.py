"""The frames waiting on one WebSocket stream (pure asyncio, no Ray): at most `limit` wait, and a frame arriving
when `limit` already wait drops the oldest, so a slow service answers the newest frames instead of falling behind.
Each frame keeps its arrival time, from which the stream's per-frame deadline counts."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Frame:
    """One frame of a stream: its number (from 0, in arrival order), its bytes, when it arrived (time.monotonic) and
    the numbers of the frames dropped from the queue before it (to be answered "dropped" first)."""

    number: int
    data: bytes
    arrived: float
    dropped_before: list[int] = field(default_factory=list)


class StreamInbox:
    """The receiving side calls `put` and `close`; the answering side iterates `frames()`, which yields Frames in
    order and ends once closed and empty."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self.waiting: deque[tuple[int, bytes, float]] = deque()
        self.dropped: deque[int] = deque()
        self.received = 0
        self.closed = False
        self._arrived = asyncio.Event()

    def put(self, data: bytes, arrived: float | None = None) -> None:
        """One frame arrived (b"" for a message that is not a frame: it is answered with an error in its turn)."""
        if len(self.waiting) >= self.limit:
            self.dropped.append(self.waiting.popleft()[0])
        self.waiting.append((self.received, data, time.monotonic() if arrived is None else arrived))
        self.received += 1
        self._arrived.set()

    def close(self) -> None:
        """No more frames will arrive; the ones waiting are still yielded."""
        self.closed = True
        self._arrived.set()

    async def frames(self) -> AsyncIterator[Frame]:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            while self.waiting:
                number, data, arrived = self.waiting.popleft()
                dropped_before = []
                while self.dropped and self.dropped[0] < number:
                    dropped_before.append(self.dropped.popleft())
                yield Frame(number, data, arrived, dropped_before)
            if self.closed:
                return


def dropped(number: int, reason: str) -> dict[str, Any]:
    """The answer for a frame that was not analysed: reason "queue" (newer frames pushed it out of the queue) or
    "deadline" (not answered within the stream's frame deadline)."""
    return {"frame": number, "dropped": True, "reason": reason}


async def answer_in_order(
    inbox: StreamInbox,
    start: Callable[[Frame], asyncio.Future[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
    deadline_s: float,
) -> None:
    """Answer every frame of `inbox`, in order: its analysis (`start(frame)` begins it and returns its future) or a
    `dropped` answer. One analysis runs at a time, since a stream's face tracks are state. A frame not analysed within
    `deadline_s` of its arrival is answered "deadline" at that moment and the stream goes on: the next frame waits
    for a late analysis only as long as its own deadline allows, so a stalled analysis never stalls the stream."""
    running: asyncio.Future[dict[str, Any]] | None = None
    async for frame in inbox.frames():
        for number in frame.dropped_before:
            await send(dropped(number, "queue"))
        due = frame.arrived + deadline_s
        if running is not None and not running.done():
            await asyncio.wait({running}, timeout=max(0.0, due - time.monotonic()))
        if (running is not None and not running.done()) or time.monotonic() >= due:
            await send(dropped(frame.number, "deadline"))
            continue
        running = start(frame)
        running.add_done_callback(_collect_outcome)
        await asyncio.wait({running}, timeout=max(0.0, due - time.monotonic()))
        await send(running.result() if running.done() else dropped(frame.number, "deadline"))


def _collect_outcome(future: asyncio.Future[Any]) -> None:
    """Retrieve a finished analysis' exception, so one abandoned at its deadline is not reported as never retrieved
    (the stream already answered its frame as dropped)."""
    if not future.cancelled():
        future.exception()
