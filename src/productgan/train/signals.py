"""Stop signals: SIGINT / SIGTERM become a flag the loop checks between steps."""

from __future__ import annotations

import signal
from typing import Any


class StopSignal:
    """Turns SIGINT / SIGTERM into a flag checked between steps, so the step in flight finishes
    and the checkpoint is written before the process exits."""

    def __init__(self):
        self.received = 0  # the signal's number once one arrives
        self.early = False  # set by the loop: validation stopped improving
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        if self.received:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self):
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: signals stay with the caller
            self._previous.clear()
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False
