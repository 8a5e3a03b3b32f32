"""The pages a person opens: the studio page (``/``) and the API docs (``/docs``, ``/redoc``).

Every link a page holds starts with the request's root path, so the pages work behind a proxy
that serves the API under a prefix (``productgan serve --root-path /gan``). The pages hold no
inline script or style: theirs are files of serve/static/, and the docs' renderers (Swagger UI
and Redoc, from the ``fastapi-offline`` package) are served by the server too, so the docs need
no network beyond the server itself.
"""

import html
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from productgan.sampling import MAX_TEMPERATURE
from productgan.serve.images import Seed, Temperature, count_query, label_query
from productgan.serve.middleware import DOCS_POLICY
from productgan.serve.problems import BAD_REQUEST
from productgan.serve.service import Images, Service


def routes(service: Service, openapi_url: str) -> APIRouter:
    router = APIRouter(tags=["pages"])
    Count = count_query(service)
    Label = label_query(service)

    @router.get(
        "/",
        operation_id="page",
        summary="the studio page: choose a category, a count and a seed, see the grid",
        response_class=Response,
        responses={200: {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}}}
        | BAD_REQUEST,
    )
    async def page(
        request: Request,
        n: Count = service.default_count,
        seed: Seed = 0,
        label: Label = "",
        temperature: Temperature = 1.0,
    ) -> HTMLResponse:
        # The grid's checks, so that a bad form gets its sentence at once.
        images = service.images(n, seed, label, "native", temperature)
        return HTMLResponse(studio_page(service, images, root(request)))

    @router.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        return docs_page(
            "productgan API",
            root(request),
            f'<div id="swagger-ui" data-openapi-url="{html.escape(root(request) + openapi_url)}"></div>',
            ["swagger-ui-bundle.js", "docs.js"],
            ["swagger-ui.css"],
        )

    @router.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return docs_page(
            "productgan API",
            root(request),
            f'<redoc spec-url="{html.escape(root(request) + openapi_url)}"></redoc>',
            ["redoc.standalone.js"],
            [],
        )

    return router


def root(request: Request) -> str:
    """The path prefix the server is reached under ('' when none)."""
    return request.scope.get("root_path", "").rstrip("/")


def docs_page(title: str, prefix: str, body: str, scripts: list[str], styles: list[str]) -> HTMLResponse:
    links = "".join(f'<link rel="stylesheet" href="{html.escape(prefix)}/static/{name}">' for name in styles)
    tags = "".join(f'<script src="{html.escape(prefix)}/static/{name}"></script>' for name in scripts)
    text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="{html.escape(prefix)}/static/favicon.png">{links}</head>
<body>{body}{tags}</body></html>
"""
    return HTMLResponse(text, headers={"Content-Security-Policy": DOCS_POLICY})


def studio_page(service: Service, images: Images, prefix: str) -> str:
    sampler = service.sampler
    name = None if images.label is None else sampler.class_names[images.label]
    query = {
        "n": images.n,
        "seed": images.seed,
        **({"label": name} if name is not None else {}),
        **({"temperature": f"{images.temperature:g}"} if images.temperature != 1.0 else {}),
    }
    options = ['<option value="">every category in turn</option>'] if sampler.conditional else []
    for index, class_name in enumerate(sampler.class_names if sampler.conditional else []):
        chosen = " selected" if images.label == index else ""
        options.append(f'<option value="{html.escape(class_name)}"{chosen}>{html.escape(class_name)}</option>')
    category = (
        f'<label>category <select name="label">{"".join(options)}</select></label>' if sampler.conditional else ""
    )
    info = sampler.info
    source = html.escape(str(info.get("dataset") or "a trained generator"))
    trained = f"step {info['step']}, {info.get('images_seen') or 0:,} images seen" if info.get("step") else ""
    link = html.escape(urlencode(query))
    prefix = html.escape(prefix)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>productgan</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{prefix}/static/page.css">
</head>
<body>
<h1>productgan</h1>
<p><small>generator trained on {source}; {html.escape(trained)}</small></p>
<form method="get" action="{prefix}/">
{category}
<label>images <input name="n" type="number" min="1" max="{service.max_images}" value="{images.n}"></label>
<label>seed <input name="seed" type="number" min="0" value="{images.seed}"></label>
<label>temperature <input name="temperature" type="number" min="0.05" max="{MAX_TEMPERATURE:g}" step="0.05"
  value="{images.temperature:g}"></label>
<button type="submit">generate</button>
</form>
<img src="{prefix}/images.png?{link}" alt="generated product images">
<p><small>The same images: <code>GET {prefix}/images.npy?{link}</code>; the API is described at
<a href="{prefix}/docs">{prefix}/docs</a> and <a href="{prefix}/redoc">{prefix}/redoc</a>.</small></p>
</body></html>
"""
