"""Bounded queues for the server's heavy work: a few jobs at a time, a short line, a prompt
refusal beyond it, and an honest estimate of when to ask again.

Making images takes the CPU (or GPU) for milliseconds to seconds; everything else the server
answers (health, info, the page, the docs) takes microseconds. Heavy jobs therefore run on pools
of threads of their own, never on the event loop or in the threads that answer the rest, and at
most ``queue`` more wait for a worker. A job beyond that is refused at once with ``Busy``, which
the server turns into 503 and ``Retry-After``, so that a burst from one client cannot hold every
other request behind it for long. The server keeps one queue per kind of work (a lane: single
images, grids and searches, projections), so that a kind that takes seconds never makes one
that takes milliseconds wait.

``Retry-After`` is the time the work already admitted is likely to take: what the running jobs
have left and the waiting ones, at the mean time of the lane's recent jobs, shared among its
workers. A job whose client goes away is dropped if it has not started, and told to stop (through
the ``gone`` event it may watch) if it has.

The bookkeeping uses a thread lock and a thread pool, not asyncio primitives, so that one queue
serves any number of event loops (a test client starts one per request).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from time import perf_counter
from typing import TypeVar

Result = TypeVar("Result")

# Bounds of the Retry-After estimate, in seconds: never "now", never past any client's patience.
RETRY_AFTER_RANGE = (1, 600)
# Retry-After while the server stops: a restart takes some seconds, a model's load some more.
CLOSING_RETRY_AFTER = 60
# The recent jobs whose mean time is the estimate of the next one's.
RECENT_JOBS = 16
# How often a waiting request asks whether its client is still there, in seconds.
DISCONNECT_POLL_SECONDS = 0.25


class Busy(Exception):
    """A job refused because every worker is busy and the line is full."""

    def __init__(self, running: int, waiting: int, retry_after: int, what: str = "image requests"):
        super().__init__(
            f"The server is busy ({running} {what} being made, {waiting} waiting); try again in {retry_after} s."
        )
        self.retry_after = retry_after


class Closing(Busy):
    """Work refused because the server is shutting down (503 and Retry-After, as Busy)."""

    def __init__(self):
        Exception.__init__(self, "The server is shutting down; ask again once it is back.")
        self.retry_after = CLOSING_RETRY_AFTER


class ClientGone(Exception):
    """The client went away before its answer was ready (its job was dropped or told to stop)."""


class WorkQueue:
    """Runs jobs on ``workers`` threads with at most ``queue`` waiting; refuses more with Busy.

    ``what`` names the jobs in the sentence of a refusal ("image requests", "projections").
    """

    def __init__(self, workers: int, queue: int, what: str = "image requests"):
        if workers < 1 or queue < 0:
            raise ValueError(f"workers must be at least 1 and queue at least 0, not {workers} and {queue}")
        self.workers = workers
        self.queue = queue
        self.what = what
        self._pool: ThreadPoolExecutor | None = None  # started with the first job, again after close()
        self._lock = threading.Lock()
        self._admitted = 0  # jobs running or waiting
        self._started: dict[int, float] = {}  # the running jobs' start times
        self._recent: deque[float] = deque(maxlen=RECENT_JOBS)  # seconds the last jobs took
        self._tokens = itertools.count()

    @property
    def load(self) -> tuple[int, int]:
        """(jobs running, jobs waiting) now."""
        with self._lock:
            return len(self._started), self._admitted - len(self._started)

    def retry_after(self) -> int:
        """Seconds until the jobs admitted now are likely done, so that one more would start."""
        with self._lock:
            return self._retry_after()

    def _retry_after(self) -> int:
        now = perf_counter()
        elapsed = [now - start for start in self._started.values()]
        # The mean time of the recent jobs; a job that has run longer than that (or any, before one
        # has finished) is taken to be half done.
        typical = sum(self._recent) / len(self._recent) if self._recent else max(elapsed, default=0.1)
        left = sum(typical - spent if spent < typical else spent for spent in elapsed)
        seconds = (left + (self._admitted - len(elapsed)) * typical) / self.workers
        low, high = RETRY_AFTER_RANGE
        return min(high, max(low, math.ceil(seconds)))

    def submit(self, job: Callable[[], Result]) -> Future[Result]:
        """Start ``job`` or put it in line; Busy at once when the line is full."""
        with self._lock:
            if self._admitted >= self.workers + self.queue:
                running = len(self._started)
                raise Busy(running, self._admitted - running, self._retry_after(), self.what)
            self._admitted += 1
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="productgan-work")
            pool = self._pool
        future = pool.submit(self._timed, job)
        future.add_done_callback(self._dropped)
        return future

    async def run(
        self,
        job: Callable[[], Result],
        disconnected: Callable[[], Awaitable[bool]] | None = None,
        gone: threading.Event | None = None,
    ) -> Result:
        """``job()``'s result, made by a worker; Busy at once when the line is full, Closing when
        the queue is closed before the job starts. With ``disconnected`` (a request's
        ``is_disconnected``), asked every DISCONNECT_POLL_SECONDS while the job waits or runs: once
        it says the client went away, the job is dropped if it has not started, ``gone`` is set
        (for a running job that watches it) and ClientGone is raised."""
        future = self.submit(job)
        answer = asyncio.wrap_future(future)
        try:
            while disconnected is not None and not answer.done():
                await asyncio.wait({answer}, timeout=DISCONNECT_POLL_SECONDS)
                if not answer.done() and await disconnected():
                    if gone is not None:
                        gone.set()
                    answer.cancel()  # drops the job if no worker has taken it; its result is never read
                    raise ClientGone()
            return await answer
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if future.cancelled() and not (task is not None and task.cancelling()):
                raise Closing() from None  # dropped from the line by close(), not by this request's end
            raise

    def _timed(self, job: Callable[[], Result]) -> Result:
        token = next(self._tokens)
        start = perf_counter()
        with self._lock:
            self._started[token] = start
        finished = False
        try:
            result = job()
            finished = True
            return result
        finally:
            with self._lock:
                del self._started[token]
                self._admitted -= 1
                if finished:  # a refusal or a stop says nothing of how long a job takes
                    self._recent.append(perf_counter() - start)

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
