"""Headers every answer carries, and the caps on a request's query and headers, as plain ASGI
middleware.

Every response says not to guess its type (``X-Content-Type-Options``), not to be framed
(``X-Frame-Options`` and ``frame-ancestors``), to send no referrer, and which sources its page
may load (``Content-Security-Policy``): the server's own files and nothing inline, which the studio
page keeps by loading its script and style from serve/static/ (images may also be ``data:`` URLs, as
a projection's are, and ``blob:`` URLs, as a fetched walk's are). A route may set a looser policy of its own
(the API docs: their renderers inject styles), and the middleware leaves it. An answer the
application failed to give (a bug: an exception no handler answers) is a 500 with the same headers
and one sentence, and the exception goes on to the server's log.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from productgan.serve.problems import problem

# A query longer than this is refused with 414: no request of this API needs more, but for the
# image names of the routes that take them (QueryLimit's ``caps``: room for their most names).
MAX_QUERY_BYTES = 2048
# Header fields (names and values) longer than this in all are refused with 431.
MAX_HEADER_BYTES = 16 * 1024
FAILED = "The server failed to answer this request (a fault of the server, which its log records); try another."

PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# Swagger UI and Redoc: their scripts and styles come from the server too, but both set styles from
# script, Swagger UI shows responses and icons from blob: and data: URLs, and Redoc searches in a
# worker it starts from a blob: URL.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": PAGE_POLICY,
}


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if not started:  # Starlette's own 500 would be sent outside this middleware, bare
                await problem(500, FAILED)(scope, receive, send_with_headers)
            raise  # to the server's log (and to a test client)


class QueryLimit:
    """Refuses a query longer than its route's cap with 414, before it is parsed or quoted, and
    headers longer than MAX_HEADER_BYTES with 431. ``caps``: the longest query of each route path
    that takes more than MAX_QUERY_BYTES (image names)."""

    def __init__(self, app: ASGIApp, caps: dict[str, int] | None = None):
        self.app = app
        self.caps = caps or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = len(scope.get("query_string", b""))
        cap = self.caps.get(route_path(scope), MAX_QUERY_BYTES)
        headers = sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))  # ": ", CR LF
        if length > cap:
            detail = f"The query is {length:,} bytes long; this server reads at most {cap:,}."
            await problem(414, detail)(scope, receive, send)
        elif headers > MAX_HEADER_BYTES:
            detail = (
                f"The request's headers are {headers:,} bytes long; this server reads at most {MAX_HEADER_BYTES:,}."
            )
            await problem(431, detail)(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def route_path(scope: Scope) -> str:
    """The request's path as the routes see it: without the root path a server may have put before it."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
