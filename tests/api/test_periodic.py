"""The API's background rounds stop with the API, even when a library swallowed the request
to stop (Python 3.11's asyncio.wait_for, which psycopg_pool waits for a connection with,
returns its result when cancelled just as that result arrives)."""

from __future__ import annotations

import asyncio
import contextlib

from monitor_api.periodic import Job, pause, running


async def _swallow_a_cancel() -> None:
    # as asyncio.wait_for does when its result comes with the cancel
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(3600)


def test_a_round_that_swallowed_the_cancel_is_the_last() -> None:
    rounds = 0

    async def one_round() -> str:
        nonlocal rounds
        rounds += 1
        await _swallow_a_cancel()
        return ""

    async def stopping() -> None:
        async with running([Job("swallower", one_round, interval_s=3600)]):
            while not rounds:
                await asyncio.sleep(0)

    async def main() -> None:
        stopped = asyncio.create_task(stopping())
        done, _ = await asyncio.wait([stopped], timeout=10)  # not the hour to the next round
        assert done

    asyncio.run(main())
    assert rounds == 1


def test_a_pause_after_a_swallowed_cancel_stops_the_task() -> None:
    async def loop() -> None:
        while True:
            await _swallow_a_cancel()
            await pause(3600)

    async def main() -> None:
        task = asyncio.create_task(loop())
        await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=10)
        assert done and task.cancelled()

    asyncio.run(main())
