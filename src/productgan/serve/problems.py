"""Every answer that is not the thing asked for: one sentence in ``detail``, declared as it is.

A bad request gets 422 and a sentence that names the parameter, what it must be, and (cut short)
what was sent; a request while the work queue is full gets 503 and ``Retry-After``; a query longer
than the server reads gets 414, headers longer than it reads 431, a body larger than it reads 413; a
request for what the server does not have (a tool that needs the run directory, served from an
export) 404. The dictionaries below declare these answers for the API description, with the body
they really have, in place of FastAPI's default validation-error schema. A client that goes away
before its answer is ready (half a body sent, a projection given up) gets one line in the log.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from productgan.errors import ProductganError
from productgan.serve.work import Busy, ClientGone

# The longest detail sent: a sentence, never a copy of a long input.
MAX_DETAIL = 400
LOG = logging.getLogger("productgan.serve")


class Problem(BaseModel):
    """Why the request was not answered as asked, and what to do instead."""

    detail: str = Field(description="One sentence: what is wrong and what to send instead.")


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    if len(detail) > MAX_DETAIL:
        detail = detail[: MAX_DETAIL - 3] + "..."
    return JSONResponse(status_code=status, content={"detail": detail}, headers=headers)


def _described(description: str, **extra: Any) -> dict[str, Any]:
    return {"model": Problem, "description": description, **extra}


BAD_REQUEST = {
    422: _described(
        "A parameter is out of range, of the wrong type, or names no class of this generator; "
        "`detail` says which, and what it must be."
    )
}
BUSY = {
    503: _described(
        "Every worker is making images and the line is full; `detail` says so, and `Retry-After` when to ask again.",
        headers={
            "Retry-After": {
                "description": "Seconds to wait before asking again.",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    )
}
NOT_SERVED = {
    404: _described(
        "What was asked for is not on this server: a training image that is not one, or a tool that needs the "
        "run directory while the server serves an exported generator; `detail` says which."
    )
}
TOO_LARGE = {413: _described("The request's body is larger than the server reads; `detail` gives the limit.")}
TOO_LONG = {
    414: _described("The query is longer than the server reads; `detail` gives the limit."),
    431: _described("The request's headers are longer than the server reads; `detail` gives the limit."),
}


class NotServed(Exception):
    """A request for something this server does not have (answered with 404 and the sentence)."""


class TooLarge(Exception):
    """A request body over the size the server reads (answered with 413 and the sentence)."""


def install(app) -> None:
    """Answer bad requests, a full queue and the library's one-sentence errors as declared."""

    @app.exception_handler(ProductganError)
    def bad_request(request: Request, error: ProductganError) -> JSONResponse:
        return problem(422, str(error))

    @app.exception_handler(RequestValidationError)
    def bad_query(request: Request, error: RequestValidationError) -> JSONResponse:
        expected = request.app.state.service.expected
        sentences = [_sentence(item, expected) for item in error.errors()[:3]]
        return problem(422, " ".join(sentences))

    @app.exception_handler(NotServed)
    def not_served(request: Request, error: NotServed) -> JSONResponse:
        return problem(404, str(error))

    @app.exception_handler(TooLarge)
    def too_large(request: Request, error: TooLarge) -> JSONResponse:
        return problem(413, str(error))

    @app.exception_handler(Busy)
    def busy(request: Request, error: Busy) -> JSONResponse:
        return problem(503, str(error), headers={"Retry-After": str(error.retry_after)})

    @app.exception_handler(ClientDisconnect)
    @app.exception_handler(ClientGone)
    def gone(request: Request, error: Exception) -> JSONResponse:
        # No one reads the answer: the connection is closed (with 408 when part of a request came).
        what = "with half its body sent" if isinstance(error, ClientDisconnect) else "before its answer was ready"
        LOG.warning("%s %s: the client went away %s.", request.method, request.url.path, what)
        return problem(408, "The request did not arrive whole, or its client went away.")


def _sentence(error: dict[str, Any], expected: dict[str, str]) -> str:
    """One of FastAPI's problems as a sentence: 'n must be a whole number between 1 and 64, not '0'.'"""
    # the parameter's name: the last named part of the location (a list item's position is not one)
    name = next((str(part) for part in reversed(error.get("loc") or ()) if isinstance(part, str)), "the request")
    if error.get("type") == "missing":
        return f"{name} is required."
    if name in expected:
        return f"{name} must be {expected[name]}, not {shown_input(error.get('input'))}."
    return f"{name}: {error.get('msg', 'is not valid')}."


def shown_input(value: Any, limit: int = 40) -> str:
    """A value a client sent, quoted and cut short enough to repeat in a sentence."""
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else repr(value[:limit]) + "..."
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."
