"""A bounded queue for the server's heavy work: a few jobs at a time, a short line, and a prompt
refusal beyond it.

Making images takes the CPU (or GPU) for milliseconds to seconds; everything else the server
answers (health, info, the page, the docs) takes microseconds. Image jobs therefore run on a pool
of ``workers`` threads of their own, never on the event loop or in the threads that answer the
rest, and at most ``queue`` more wait for a worker. A job beyond that is refused at once with
``Busy``, which the server turns into 503 and ``Retry-After``, so that a burst from one client
cannot hold every other request behind it for long.

The bookkeeping uses a thread lock and a thread pool, not asyncio primitives, so that one queue
serves any number of event loops (a test client starts one per request).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from time import perf_counter
from typing import TypeVar

Result = TypeVar("Result")

# Bounds of the Retry-After estimate, in seconds: never "now", never so long a client gives up.
RETRY_AFTER_RANGE = (1, 60)


class Busy(Exception):
    """A job refused because every worker is busy and the line is full."""

    def __init__(self, running: int, waiting: int, retry_after: int):
        super().__init__(
            f"The server is busy ({running} image requests being made, {waiting} waiting); "
            f"try again in {retry_after} s."
        )
        self.retry_after = retry_after


class Closing(Busy):
    """Work refused because the server is shutting down (503 and Retry-After, as Busy)."""

    def __init__(self):
        Exception.__init__(self, "The server is shutting down; ask again once it is back.")
        self.retry_after = RETRY_AFTER_RANGE[1]


class WorkQueue:
    """Runs jobs on ``workers`` threads with at most ``queue`` waiting; refuses more with Busy.

    A job whose caller goes away before a worker takes it is dropped, not run.
    """

    def __init__(self, workers: int, queue: int):
        if workers < 1 or queue < 0:
            raise ValueError(f"workers must be at least 1 and queue at least 0, not {workers} and {queue}")
        self.workers = workers
        self.queue = queue
        self._pool: ThreadPoolExecutor | None = None  # started with the first job, again after close()
        self._lock = threading.Lock()
        self._admitted = 0  # jobs running or waiting
        self._running = 0
        self._seconds_per_job = 0.1  # a running mean, for Retry-After

    @property
    def load(self) -> tuple[int, int]:
        """(jobs running, jobs waiting) now."""
        with self._lock:
            return self._running, self._admitted - self._running

    def retry_after(self) -> int:
        """Seconds until the line has likely moved on by one full turn of the workers."""
        with self._lock:
            seconds = self._seconds_per_job * max(1, self._admitted) / self.workers
        low, high = RETRY_AFTER_RANGE
        return min(high, max(low, math.ceil(seconds)))

    def submit(self, job: Callable[[], Result]) -> Future[Result]:
        """Start ``job`` or put it in line; Busy at once when the line is full."""
        with self._lock:
            if self._admitted >= self.workers + self.queue:
                running, waiting = self._running, self._admitted - self._running
                refused = True
            else:
                self._admitted += 1
                refused = False
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="productgan-images")
                pool = self._pool
        if refused:
            raise Busy(running, waiting, self.retry_after())
        future = pool.submit(self._timed, job)
        future.add_done_callback(self._dropped)
        return future

    async def run(self, job: Callable[[], Result]) -> Result:
        """``job()``'s result, made by a worker; Busy at once when the line is full."""
        return await asyncio.wrap_future(self.submit(job))

    def _timed(self, job: Callable[[], Result]) -> Result:
        with self._lock:
            self._running += 1
        start = perf_counter()
        try:
            return job()
        finally:
            elapsed = perf_counter() - start
            with self._lock:
                self._running -= 1
                self._admitted -= 1
                self._seconds_per_job += 0.2 * (elapsed - self._seconds_per_job)

    def _dropped(self, future: Future) -> None:
        """Frees the place of a job cancelled before a worker took it (its caller went away)."""
        if future.cancelled():
            with self._lock:
                self._admitted -= 1

    def close(self) -> None:
        """Drop the jobs in line and let the workers go once the running ones finish (at the
        server's shutdown); a later job starts new workers."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
