"""``productgan serve``: a web page and a REST API over one exported generator.

The generator is loaded once, at start-up, and every request is a pure function of its query:
the same seed, class and count give the same images as ``productgan generate`` and the Python
sampler, byte for byte. FastAPI, uvicorn and fastapi-offline come with the ``serve`` extra.

    GET /               the studio page: pick a category, a count and a seed, see the grid
    GET /info           the generator: classes, sizes, provenance, request limits (JSON)
    GET /images.png     n images as one PNG grid        ?n=16&seed=0&label=Sneaker&size=native&temperature=1
    GET /images.npy     the same images as a uint8 N x C x H x W .npy array
    GET /image.png      image ``index`` of a seed alone ?seed=0&index=3&label=Bag&temperature=1
    GET /health         {"status": "ok"}, at once however busy the server is
    GET /docs, /redoc   the API description (/openapi.json), rendered by files the server serves

The routes live in modules of their own (serve/routes/: images.py, status.py, pages.py, ...), each
a function ``routes(service) -> APIRouter`` over the shared ``Service``; a new group of routes is a
module and one ``include_router`` line in ``create_app``. serve/static/ holds the pages' files.

Bad requests get status 422 and one sentence in ``detail``; image requests beyond the work queue
get 503 and ``Retry-After`` (serve/problems.py, serve/work.py). Stopping (Ctrl-C, SIGTERM) is prompt:
before the server waits for the requests in flight, running projections are told to stop and the
jobs in line are dropped (``Service.stop``).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import re
import socket
import sys
from pathlib import Path

from productgan import __version__
from productgan.errors import ProductganError, UsageError
from productgan.generator.sampler import Sampler, load_generator
from productgan.machine import usable_cpus
from productgan.run import CONFIG_FILE as RUN_CONFIG

DEFAULT_MAX_IMAGES = 1024
# The most optimisation steps one projection request may ask for: some seconds on a CPU.
MAX_PROJECTION_STEPS = 1000
MISSING_EXTRA = "productgan serve needs FastAPI, uvicorn and fastapi-offline: pip install 'productgan[serve]'."
STATIC = Path(__file__).parent / "static"
# The packages the serve extra brings; importing the server without one of them leaves it None.
WEB_PACKAGES = {
    *("fastapi", "starlette", "pydantic", "pydantic_core", "anyio", "fastapi_offline", "uvicorn", "h11"),
    "python_multipart",
}


def _missing_extra(error: ModuleNotFoundError) -> bool:
    return (error.name or "").partition(".")[0] in WEB_PACKAGES


try:  # the serve extra; the rest of the package works without it, and create_app names it
    import fastapi
    import fastapi_offline
    from fastapi.middleware.cors import CORSMiddleware
    from fastapi.routing import APIRoute
    from fastapi.staticfiles import StaticFiles

    from productgan.serve import problems
    from productgan.serve.middleware import MAX_HEADER_BYTES, QueryLimit, SecurityHeaders
    from productgan.serve.routes import explore, images, pages, status, steering, training
    from productgan.serve.service import PROJECTION_SECONDS, Service
    from productgan.serve.work import WorkQueue
except ModuleNotFoundError as error:
    if not _missing_extra(error):
        raise
    fastapi = None
try:
    import uvicorn

    from productgan.serve.protocol import timed_protocol

    class ListeningServer(uvicorn.Server):
        """uvicorn's server, which prints ``announcement`` once its socket listens (uvicorn's own
        line is below the log level the server runs at), and calls ``stopping`` as it begins to
        stop, before it waits for the requests in flight to end (uvicorn sends the application
        its shutdown event only after them)."""

        def __init__(self, config: uvicorn.Config, announcement: str, stopping=None):
            super().__init__(config)
            self.announcement = announcement
            self.stopping = stopping

        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            if self.started:
                print(self.announcement, flush=True)

        async def shutdown(self, sockets=None) -> None:
            if self.stopping is not None:
                self.stopping()
            await super().shutdown(sockets)

except ModuleNotFoundError as error:
    if not _missing_extra(error):
        raise
    uvicorn = None

# Image requests made at a time: torch already spreads one over every core, so more at once only
# adds memory; a few keep a small request from waiting behind a large one.
MAX_DEFAULT_WORKERS = 4
DEFAULT_QUEUE = 8
# Seconds a request has to arrive whole, and an idle kept-alive connection stays open.
DEFAULT_REQUEST_TIMEOUT = 10.0
KEEP_ALIVE_SECONDS = 5
# The largest request head (request line and headers) read, in bytes, where no route takes a long
# query; create_app records its own (app.state.max_head_bytes), for the image names of its routes.
MAX_HEAD_BYTES = 16 * 1024
ORIGIN = re.compile(r"https?://[^/?#\s]+")
ROOT_PATH = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+")


def default_workers() -> int:
    return max(1, min(MAX_DEFAULT_WORKERS, usable_cpus()))


def create_app(
    source: str | os.PathLike | Sampler,
    device: str = "cpu",
    max_images: int = DEFAULT_MAX_IMAGES,
    workers: int | None = None,
    queue: int = DEFAULT_QUEUE,
    cors_origins: list[str] | tuple[str, ...] = (),
    max_projection_steps: int = MAX_PROJECTION_STEPS,
    projection_seconds: float | None = None,
):
    """A FastAPI application serving the generator of a run directory or export folder.

    ``workers`` image requests are made at a time (default: one per usable CPU, at most 4) and
    ``queue`` more wait; more get 503 (single images and projections have lanes of their own:
    serve/service.py). ``cors_origins``: the web origins whose pages may call the API from a
    browser (none by default). ``max_projection_steps``: the most optimisation steps a projection
    request may ask for (a slow machine may want fewer); ``projection_seconds``: the time its
    optimisation may run before the best fit so far is the answer (default 30). A run directory's server also
    answers nearest training images and projection; an export's answers them with 404."""
    if fastapi is None:
        raise ProductganError(MISSING_EXTRA)
    if max_images < 1:
        raise UsageError(f"--max-images must be at least 1, not {max_images}.")
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, not {workers}.")
    if queue < 0:
        raise UsageError(f"--queue must be 0 or more, not {queue}.")
    if not 1 <= max_projection_steps <= MAX_PROJECTION_STEPS:
        raise UsageError(
            f"max_projection_steps must be between 1 and {MAX_PROJECTION_STEPS}, not {max_projection_steps}."
        )
    projection_seconds = PROJECTION_SECONDS if projection_seconds is None else projection_seconds
    if not 0 < projection_seconds <= 3600:
        raise UsageError(f"projection_seconds must be above 0 and at most 3600, not {projection_seconds}.")
    for origin in cors_origins:
        if origin != "*" and not ORIGIN.fullmatch(origin):
            raise UsageError(
                f"--cors-origin {origin!r} is not a web origin; give scheme, host and port, "
                "as in https://shop.example.com or http://localhost:3000."
            )
    sampler = source if isinstance(source, Sampler) else load_generator(source, device=device)
    run_dir = None if isinstance(source, Sampler) else Path(source)
    run_dir = run_dir if run_dir is not None and (run_dir / RUN_CONFIG).is_file() else None
    service = Service(
        sampler,
        max_images,
        WorkQueue(workers, queue),
        run_dir=run_dir,
        max_projection_steps=max_projection_steps,
        projection_seconds=projection_seconds,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        service.start_warm_up()  # a run's training features, ready before the first request needs them
        yield
        service.close()  # requests still in line are dropped; an index build stops within a batch

    app = fastapi.FastAPI(
        lifespan=lifespan,
        title="productgan",
        version=__version__,
        summary="New product images from a trained DCGAN generator.",
        description=(
            "Every image is named by its seed, index, class and temperature, and that name gives the same "
            "pixels everywhere: the Python sampler, `productgan generate`, this API and its page. Image answers "
            "carry an ETag and may be cached."
        ),
        docs_url=None,
        redoc_url=None,
        responses=problems.TOO_LONG,
    )
    app.state.service = service
    # The routes that take image names read longer queries: room for their most names.
    named = {**explore.NAMES_IN_QUERY, **training.NAMES_IN_QUERY, **steering.NAMES_IN_QUERY}
    caps = {path: service.query_cap(names) for path, names in named.items()}
    app.state.max_head_bytes = MAX_HEADER_BYTES + max(caps.values()) + 1024  # and the request line's path
    problems.install(app)
    routers = (
        status.routes(service),
        images.routes(service),
        explore.routes(service),
        training.routes(service),
        steering.routes(service),
        pages.routes(service, app.openapi_url),
    )
    for router in routers:
        app.include_router(_with_head(router))
    # Our own files first; then Swagger UI's and Redoc's, as the fastapi-offline package ships them.
    app.mount("/static", StaticFiles(directory=STATIC, packages=[(fastapi_offline.__name__, "static")]), name="static")

    # The last added runs first: every answer, refusals included, gets the security headers.
    app.add_middleware(QueryLimit, caps=caps)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "HEAD", "POST"],  # POST: a selection's zip, a photo's projection
            allow_headers=["If-None-Match", "Content-Type"],
            expose_headers=["ETag", "Retry-After"],
            max_age=600,
        )
    app.add_middleware(SecurityHeaders)
    return app


def _with_head(router):
    """``router`` with HEAD as well as GET on every route, for uptime checks and ``curl -I`` (left
    out of the API description)."""
    for route in list(router.routes):
        if isinstance(route, APIRoute) and "GET" in route.methods:
            router.add_api_route(
                route.path,
                route.endpoint,
                methods=["HEAD"],
                include_in_schema=False,
                response_class=route.response_class,
            )
    return router


def check_port(host: str, port: int) -> int:
    """The port to listen on (a free one for 0), or one sentence, before start-up, when the
    address cannot be listened on."""
    if not 0 <= port < 65536:
        raise UsageError(f"--port must be between 0 (any free port) and 65535, not {port}.")
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError):
        raise UsageError(
            f"--host {host!r} is not an address or a name this machine can resolve; try 127.0.0.1 or 0.0.0.0."
        )
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
            return probe.getsockname()[1]
    except OSError as error:
        if error.errno == errno.EADDRNOTAVAIL:
            raise UsageError(
                f"--host {host} is not an address of this machine; try 127.0.0.1, or 0.0.0.0 for every interface."
            )
        raise ProductganError(
            f"Cannot listen on {host}:{port} ({error.strerror or error}); choose another --port or stop what uses it."
        )


def local_url(host: str, port: int) -> str:
    """The address to open in a browser on this machine: an address that listens on every
    interface (0.0.0.0, ::) is reached through the loopback one; an IPv6 address goes in brackets."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"http://{host}:{port}/"
    if address.is_unspecified:
        address = ipaddress.ip_address("127.0.0.1" if address.version == 4 else "::1")
    return f"http://[{address}]:{port}/" if address.version == 6 else f"http://{address}:{port}/"


def check_root_path(root_path: str) -> str:
    """The path prefix a proxy serves the API under, as '/gan' ('' for none), or a UsageError."""
    root_path = root_path.rstrip("/")
    if root_path and not ROOT_PATH.fullmatch(root_path):
        raise UsageError(f"--root-path must be a URL path such as /gan, not {root_path[:40]!r}.")
    return root_path


def serve(
    source: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "cpu",
    max_images: int = DEFAULT_MAX_IMAGES,
    workers: int | None = None,
    queue: int | None = None,
    request_timeout: float | None = None,
    cors_origins: list[str] | tuple[str, ...] = (),
    root_path: str = "",
) -> None:
    """Load the generator, then serve it until Ctrl-C (None: the default of a setting). Ctrl-C at
    any moment, start-up included, stops it cleanly: the index build at its next batch."""
    if fastapi is None or uvicorn is None:
        raise ProductganError(MISSING_EXTRA)
    queue = DEFAULT_QUEUE if queue is None else queue
    request_timeout = DEFAULT_REQUEST_TIMEOUT if request_timeout is None else request_timeout
    if not 0 < request_timeout <= 3600:
        raise UsageError(f"--request-timeout must be above 0 and at most 3600 seconds, not {request_timeout}.")
    root_path = check_root_path(root_path)
    app = None
    try:
        app = create_app(
            source, device=device, max_images=max_images, workers=workers, queue=queue, cors_origins=cors_origins
        )
        port = check_port(host, port)
        behind = f"; behind the proxy at {root_path}/" if root_path else ""
        announcement = f"Serving {source} at {local_url(host, port)} (API docs at /docs{behind}); Ctrl-C stops."
        settings = server_settings(host, port, request_timeout, root_path, app.state.max_head_bytes)
        run_server(app, announcement, **settings)
    except KeyboardInterrupt:
        pass  # Ctrl-C before uvicorn listens, or the one uvicorn raises again once it has shut down
    finally:
        if app is not None:
            _shut_down(app.state.service)


def run_server(app, announcement: str, **settings) -> None:
    """Serve ``app`` with uvicorn's ``settings`` until stopped; ``announcement`` is printed once the
    socket listens, and the service told to stop as the server begins to (tests replace this function)."""
    ListeningServer(uvicorn.Config(app, **settings), announcement, app.state.service.stop).run()


def _shut_down(service) -> None:
    """Stop the service's background work and wait for it (uvicorn does at shutdown, unless a
    second Ctrl-C hurried it). A Ctrl-C while waiting here, where the work is not one that stops
    between batches (an evaluator being trained), ends the process at once: past the interpreter's
    own exit, which a native thread still running would abort."""
    try:
        service.close()
    except KeyboardInterrupt:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def server_settings(
    host: str, port: int, request_timeout: float, root_path: str = "", max_head_bytes: int = MAX_HEAD_BYTES
) -> dict:
    """uvicorn's settings: the limits on slow and idle clients and on a request's head (a head
    that arrives in pieces is refused past ``max_head_bytes``; QueryLimit checks a whole one), and
    the root path."""
    return {
        "host": host,
        "port": port,
        "log_level": "warning",
        "http": timed_protocol(request_timeout),
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "h11_max_incomplete_event_size": max_head_bytes,
        "root_path": root_path,
    }
