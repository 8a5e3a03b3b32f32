"""``productgan serve``: a web page and a REST API over one exported generator.

The generator is loaded once, at start-up, and every request is a pure function of its query:
the same seed, class and count give the same images as ``productgan generate`` and the Python
sampler, byte for byte. FastAPI and uvicorn come with the ``serve`` extra.

    GET /               a page: pick a category, a count and a seed, see the grid
    GET /info           the generator: classes, sizes, provenance, request limits (JSON)
    GET /images.png     n images as one PNG grid        ?n=16&seed=0&label=Sneaker&size=native&temperature=1
    GET /images.npy     the same images as a uint8 N x C x H x W .npy array
    GET /image.png      image ``index`` of a seed alone ?seed=0&index=3&label=Bag&temperature=1
    GET /health         {"status": "ok"}

Bad requests (a count out of range, an unknown category) get status 422 and one sentence in
``detail``.
"""

from __future__ import annotations

import errno
import html
import io
import os
import socket
from typing import Any
from urllib.parse import urlencode

import numpy as np

from productgan.errors import ProductganError, UsageError
from productgan.images import make_grid, to_pil
from productgan.sampling import Sampler, chosen_label, load_generator

DEFAULT_MAX_IMAGES = 1024
MISSING_EXTRA = "productgan serve needs FastAPI and uvicorn: pip install 'productgan[serve]'."


def _require_fastapi():
    try:
        import fastapi
    except ImportError:
        raise ProductganError(MISSING_EXTRA)
    return fastapi


def _png(picture: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    to_pil(picture).save(buffer, format="PNG")
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def describe(sampler: Sampler, max_images: int) -> dict[str, Any]:
    """What a client needs to know before asking: the classes, the sizes and the limits."""
    info = sampler.info
    return {
        "conditional": sampler.conditional,
        "class_names": sampler.class_names,
        "channels": sampler.generator.channels,
        "native_size": sampler.native_size,
        "training_size": [sampler.generator.image_size] * 2,
        "nz": sampler.generator.config.nz,
        "dataset": info.get("dataset"),
        "step": info.get("step"),
        "images_seen": info.get("images_seen"),
        "ema": info.get("ema"),
        "max_images": max_images,
    }


def create_app(source: str | os.PathLike | Sampler, device: str = "cpu", max_images: int = DEFAULT_MAX_IMAGES):
    """A FastAPI application serving the generator of a run directory or export folder."""
    fastapi = _require_fastapi()
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from fastapi.routing import APIRoute

    if max_images < 1:
        raise UsageError(f"--max-images must be at least 1, not {max_images}.")
    sampler = source if isinstance(source, Sampler) else load_generator(source, device=device)
    app = fastapi.FastAPI(title="productgan", summary="New product images from a trained DCGAN generator.")
    app.state.sampler = sampler

    def check(n: int, seed: int, label: str | None, temperature: float) -> str | None:
        """The request's label (an empty one, as the page's form sends, is every class in turn),
        or a UsageError before any image is made; the sampler checks the size itself."""
        if not 1 <= n <= max_images:
            raise UsageError(f"n must be between 1 and {max_images}, not {n}.")
        label = chosen_label(label)
        sampler.labels(1, label)  # an unknown class, or a class for an unconditional generator
        sampler.latents(1, seed, temperature)  # a negative seed, a temperature that is no positive number
        return label

    def images(n: int, seed: int, label: str | None, size: str, temperature: float) -> tuple[np.ndarray, int | None]:
        """The images of a request, and the columns of their grid."""
        label = check(n, seed, label, temperature)
        batch = sampler(n=n, seed=seed, size=size, label=label, temperature=temperature).numpy()
        return batch, sampler.grid_columns(n, label)

    @app.exception_handler(ProductganError)
    def bad_request(request, error: ProductganError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(error)})

    @app.exception_handler(RequestValidationError)
    def bad_query(request, error: RequestValidationError) -> JSONResponse:
        """FastAPI's list of problems as one sentence: 'n: Input should be a valid integer, ...'."""
        problems = [
            f"{'.'.join(str(part) for part in problem['loc'][1:])}: {problem['msg']}" for problem in error.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": "; ".join(problems) + "."})

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    def info() -> dict[str, Any]:
        return describe(sampler, max_images)

    @app.get("/images.png", response_class=Response)
    def images_png(
        n: int = 16, seed: int = 0, label: str | None = None, size: str = "native", temperature: float = 1.0
    ):
        return Response(_png(make_grid(*images(n, seed, label, size, temperature))), media_type="image/png")

    @app.get("/images.npy", response_class=Response)
    def images_npy(
        n: int = 16, seed: int = 0, label: str | None = None, size: str = "native", temperature: float = 1.0
    ):
        return Response(_npy(images(n, seed, label, size, temperature)[0]), media_type="application/octet-stream")

    @app.get("/image.png", response_class=Response)
    def image_png(
        seed: int = 0, index: int = 0, label: str | None = None, size: str = "native", temperature: float = 1.0
    ):
        if not 0 <= index < max_images:
            raise UsageError(f"index must be between 0 and {max_images - 1}, not {index}.")
        label = check(1, seed, label, temperature)
        # Noise rows are drawn in order, so row `index` of a seed is the same in any count.
        z = sampler.latents(index + 1, seed, temperature)[index:]
        labels = sampler.labels(index + 1, label)
        picture = sampler.from_noise(z, size, labels=None if labels is None else labels[index:]).numpy()[0]
        return Response(_png(picture), media_type="image/png")

    @app.get("/", response_class=HTMLResponse)
    def page(n: int = 16, seed: int = 0, label: str | None = None, temperature: float = 1.0) -> str:
        label = check(n, seed, label, temperature)  # the grid's checks, so a bad form gets its sentence at once
        return _page(sampler, n, seed, label, temperature, max_images)

    # HEAD as well as GET on every page, for uptime checks and `curl -I` (left out of /docs).
    for route in list(app.routes):
        if isinstance(route, APIRoute) and "GET" in route.methods:
            app.add_api_route(
                route.path,
                route.endpoint,
                methods=["HEAD"],
                include_in_schema=False,
                response_class=route.response_class,
            )
    return app


def _page(sampler: Sampler, n: int, seed: int, label: str | None, temperature: float, max_images: int) -> str:
    query = {
        "n": n,
        "seed": seed,
        **({"label": label} if label is not None else {}),
        **({"temperature": f"{temperature:g}"} if temperature != 1.0 else {}),
    }
    options = ['<option value="">every category in turn</option>'] if sampler.conditional else []
    for index, name in enumerate(sampler.class_names if sampler.conditional else []):
        chosen = " selected" if label is not None and sampler.class_index(label) == index else ""
        options.append(f'<option value="{html.escape(name)}"{chosen}>{html.escape(name)}</option>')
    category = (
        f'<label>category <select name="label">{"".join(options)}</select></label>' if sampler.conditional else ""
    )
    info = sampler.info
    source = html.escape(str(info.get("dataset") or "a trained generator"))
    trained = f"step {info['step']}, {info.get('images_seen') or 0:,} images seen" if info.get("step") else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>productgan</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
form {{ display: flex; gap: 1rem; align-items: end; flex-wrap: wrap; }}
img {{ image-rendering: pixelated; width: min(90vw, 640px); margin-top: 1rem; border: 1px solid #ccc; }}
small {{ color: #555; }}
</style></head>
<body>
<h1>productgan</h1>
<p><small>generator trained on {source}; {html.escape(trained)}</small></p>
<form method="get" action="/">
{category}
<label>images <input name="n" type="number" min="1" max="{max_images}" value="{n}"></label>
<label>seed <input name="seed" type="number" min="0" value="{seed}"></label>
<label>temperature <input name="temperature" type="number" min="0.05" max="3" step="0.05"
  value="{temperature:g}"></label>
<button type="submit">generate</button>
</form>
<img src="/images.png?{html.escape(urlencode(query))}" alt="generated product images">
<p><small>The same images: <code>GET /images.npy?{html.escape(urlencode(query))}</code>; the API is described at
<a href="/docs">/docs</a>.</small></p>
</body></html>
"""


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


def serve(
    source: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "cpu",
    max_images: int = DEFAULT_MAX_IMAGES,
) -> None:
    """Load the generator, then serve it until interrupted."""
    _require_fastapi()
    try:
        import uvicorn
    except ImportError:
        raise ProductganError(MISSING_EXTRA)
    app = create_app(source, device=device, max_images=max_images)
    port = check_port(host, port)
    print(f"Serving {source} at http://{host}:{port}/ (API docs at /docs); Ctrl-C stops.", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
