"""Headers every answer carries, and the cap on a request's query, as plain ASGI middleware.

Every response says not to guess its type (``X-Content-Type-Options``), not to be framed
(``X-Frame-Options`` and ``frame-ancestors``), to send no referrer, and which sources its page
may load (``Content-Security-Policy``): the server's own files and nothing inline, which the studio
page keeps by loading its script and style from serve/static/ (images may also be ``data:`` URLs, as
a projection's are, and ``blob:`` URLs, as a fetched walk's are). A route may set a looser policy of its own
(the API docs: their renderers inject styles), and the middleware leaves it.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from productgan.serve.problems import problem

# A query longer than this is refused with 414: no request of this API needs more.
MAX_QUERY_BYTES = 2048

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

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class QueryLimit:
    """Refuses a query longer than MAX_QUERY_BYTES with 414, before it is parsed or quoted."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = len(scope.get("query_string", b""))
        if scope["type"] == "http" and length > MAX_QUERY_BYTES:
            detail = f"The query is {length:,} bytes long; this server reads at most {MAX_QUERY_BYTES:,}."
            await problem(414, detail)(scope, receive, send)
            return
        await self.app(scope, receive, send)
