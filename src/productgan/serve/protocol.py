"""uvicorn's HTTP/1.1 protocol with a deadline for each request to arrive whole.

uvicorn closes a kept-alive connection that stays idle (``timeout_keep_alive``) and refuses a
request head larger than ``h11_max_incomplete_event_size``, but it waits for ever for a request
that is sent slowly or never finished: a connection opened and left silent, or headers sent a
byte at a time, holds a socket for as long as the client likes. Here a request, head and body,
must arrive within ``request_timeout`` seconds of the connection's start or of its first byte;
otherwise the connection is closed (with 408 when part of a request came: a head, or a head and
part of its body, before any answer began).
"""

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 36\r\n\r\nThe request did not arrive in time.\n"
)


class TimedH11Protocol(H11Protocol):
    """H11Protocol that closes a connection whose request does not arrive whole in time."""

    request_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._partial = False
        self._start_clock()  # a silent connection is a request that does not arrive

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._arriving():
            self._partial = True
            self._start_clock()  # the first byte of a request starts the clock; later ones do not reset it
        else:
            self._stop_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock()
        super().connection_lost(exc)

    def _arriving(self) -> bool:
        """Whether a request has begun (or is due on a new connection) and is not yet whole."""
        return self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing()

    def _start_clock(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.request_timeout, self._too_late)

    def _stop_clock(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
            self._partial = False

    def _too_late(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or not self._arriving():
            return
        # Part of a request came and no answer has begun (SEND_RESPONSE: the head came, a body is due).
        if self._partial and self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self.transport.write(TIMEOUT_RESPONSE)
        self.transport.close()


def timed_protocol(request_timeout: float) -> type[TimedH11Protocol]:
    """The protocol class for uvicorn's ``http`` setting, with this deadline."""
    return type("TimedH11Protocol", (TimedH11Protocol,), {"request_timeout": request_timeout})
