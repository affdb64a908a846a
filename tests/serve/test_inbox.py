"""The stream's frame queue: answers in order, the oldest waiting frame dropped past the limit (pure asyncio)."""

from __future__ import annotations

import asyncio

import pytest

from serve.inbox import StreamInbox


def collect(inbox: StreamInbox) -> list[tuple[int, bytes, list[int]]]:
    async def run() -> list[tuple[int, bytes, list[int]]]:
        return [item async for item in inbox.frames()]

    return asyncio.run(run())


def test_frames_past_the_limit_drop_the_oldest_and_are_reported_before_the_next_answer():
    inbox = StreamInbox(limit=2)
    for index in range(5):
        inbox.put(f"frame {index}".encode())
    inbox.close()
    assert collect(inbox) == [(3, b"frame 3", [0, 1, 2]), (4, b"frame 4", [])]


def test_frames_waiting_at_close_are_still_answered_and_a_text_message_is_kept_in_its_turn():
    inbox = StreamInbox(limit=4)
    inbox.put(b"a")
    inbox.put(b"")
    inbox.close()
    assert collect(inbox) == [(0, b"a", []), (1, b"", [])]
    with pytest.raises(ValueError, match="at least 1"):
        StreamInbox(limit=0)


def test_the_answering_side_waits_for_frames_that_arrive_later():
    async def run() -> list[int]:
        inbox = StreamInbox(limit=2)
        answered = []

        async def answer() -> None:
            async for frame_id, _, _ in inbox.frames():
                answered.append(frame_id)

        task = asyncio.create_task(answer())
        for index in range(3):
            await asyncio.sleep(0.01)
            inbox.put(bytes([index]))
        await asyncio.sleep(0.01)
        inbox.close()
        await asyncio.wait_for(task, 2)
        return answered

    assert asyncio.run(run()) == [0, 1, 2]
