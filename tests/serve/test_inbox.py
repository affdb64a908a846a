"""The stream's frame queue and its answering loop (pure asyncio): answers in order, the oldest waiting frame dropped
past the limit, a frame past its deadline answered "dropped" at its deadline while the stream goes on."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from faceray.serve.inbox import Frame, StreamInbox, answer_in_order


def collect(inbox: StreamInbox) -> list[tuple[int, bytes, list[int]]]:
    async def run() -> list[tuple[int, bytes, list[int]]]:
        return [(frame.number, frame.data, frame.dropped_before) async for frame in inbox.frames()]

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
            async for frame in inbox.frames():
                answered.append(frame.number)

        task = asyncio.create_task(answer())
        for index in range(3):
            await asyncio.sleep(0.01)
            inbox.put(bytes([index]))
        await asyncio.sleep(0.01)
        inbox.close()
        await asyncio.wait_for(task, 2)
        return answered

    assert asyncio.run(run()) == [0, 1, 2]


def run_stream(durations: dict[int, float], count: int, gap_s: float, deadline_s: float, limit: int = 8):
    """Feed `count` frames `gap_s` apart through answer_in_order, where analysing frame n takes durations.get(n, 0)
    seconds on a thread; returns the answers with the seconds from each frame's arrival to its answer."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1)
    answers: list[tuple[dict[str, Any], float]] = []
    arrivals: dict[int, float] = {}

    def analyse(frame: Frame) -> dict[str, Any]:
        time.sleep(durations.get(frame.number, 0.0))
        return {"frame": frame.number, "faces": []}

    async def run() -> None:
        inbox = StreamInbox(limit)

        async def send(answer: dict[str, Any]) -> None:
            answers.append((answer, time.monotonic() - arrivals[answer["frame"]]))

        async def feed() -> None:
            for number in range(count):
                arrivals[number] = time.monotonic()
                inbox.put(b"x", arrivals[number])
                await asyncio.sleep(gap_s)
            inbox.close()

        feeder = asyncio.create_task(feed())
        await answer_in_order(inbox, lambda frame: asyncio.wrap_future(pool.submit(analyse, frame)), send, deadline_s)
        await feeder

    asyncio.run(run())
    pool.shutdown(wait=True)
    return answers


def test_a_stalled_analysis_is_answered_dropped_at_its_deadline_and_the_stream_goes_on():
    """Frame 2's analysis hangs for 0.8 s with a 0.2 s deadline: frame 2 is answered "deadline" at its deadline (not
    after 0.8 s), the frames that arrive while it still runs are answered "deadline" at theirs (never stalled behind
    it), and the frames after it are analysed again; every frame is answered once, in order."""
    answers = run_stream({2: 0.8}, count=24, gap_s=0.05, deadline_s=0.2)
    assert [answer["frame"] for answer, _ in answers] == list(range(24))
    assert all(waited < 0.2 + 0.15 for _, waited in answers), max(waited for _, waited in answers)
    late = [answer["frame"] for answer, _ in answers if answer.get("reason") == "deadline"]
    assert late[0] == 2 and all(number < 2 + 18 for number in late)  # the stall ends within 0.8 s = 16 frames
    assert "faces" in answers[-1][0] and "faces" in answers[1][0]
    assert all(answer.get("dropped") is True for answer, _ in answers if "faces" not in answer)


def test_frames_pushed_out_of_the_queue_are_answered_queue_before_the_next_frame():
    answers = run_stream({0: 0.2}, count=6, gap_s=0.0, deadline_s=5.0, limit=2)
    assert [(answer["frame"], answer.get("reason")) for answer, _ in answers] == [
        (0, None),
        (1, "queue"),
        (2, "queue"),
        (3, "queue"),
        (4, None),
        (5, None),
    ]
