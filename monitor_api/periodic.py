"""Background jobs of the API process: each runs at start and then every interval until the
lifespan ends. A failure (the database down, say) is logged and the next round retries, so a
job never takes the API down with it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import psycopg
from psycopg_pool import PoolTimeout

logger = logging.getLogger("monitor_api")

OUTAGES = (psycopg.OperationalError, PoolTimeout, OSError)
"""What a round fails with while the database is down or busy: a warning, and the next round
retries. Anything else is a defect, logged with its traceback (and retried all the same)."""


def log_failure(what: str, exc: Exception) -> None:
    """Log a failed round of ``what``: an outage in one line, a defect with its traceback."""
    if isinstance(exc, OUTAGES):
        logger.warning("%s failed: %s", what, exc)
    else:
        logger.error("%s failed", what, exc_info=exc)


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    run: Callable[[], Awaitable[str]]
    """One round; returns what it did, for the log ('' logs nothing)."""
    interval_s: float
    """Seconds between rounds; 0 turns the job off."""


async def pause(seconds: float) -> None:
    """``asyncio.sleep``, but first the ``CancelledError`` of a task asked to stop whose
    request a library swallowed: Python 3.11's ``asyncio.wait_for`` returns its result when it
    is cancelled just as that result arrives, and psycopg_pool waits for a connection with it.
    A loop of rounds would otherwise run on, and whoever awaits its end wait for ever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    await asyncio.sleep(seconds)


async def _repeat(job: Job) -> None:
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            done = await job.run()
        except Exception as exc:  # the next round retries
            log_failure(job.name, exc)
        else:
            if done:
                logger.info("%s: %s in %.1f s", job.name, done, loop.time() - started)
        await pause(job.interval_s)


@asynccontextmanager
async def running(jobs: list[Job]) -> AsyncIterator[None]:
    """Run the jobs that are on while the block runs; cancel them when it ends."""
    tasks = [asyncio.create_task(_repeat(job), name=job.name)
             for job in jobs if job.interval_s > 0]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        # their CancelledError as results: a cancel of this task itself still propagates
        await asyncio.gather(*tasks, return_exceptions=True)
