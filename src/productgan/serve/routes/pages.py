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

from productgan.explore.latent import ImageName
from productgan.generator.latents import MAX_TEMPERATURE
from productgan.serve.middleware import DOCS_POLICY
from productgan.serve.problems import BAD_REQUEST
from productgan.serve.routes.images import Seed, Temperature, count_query, label_query
from productgan.serve.service import Images, Service


def routes(service: Service, openapi_url: str) -> APIRouter:
    router = APIRouter(tags=["pages"])
    Count = count_query(service)
    Label = label_query(service)
    # Two images of every category in turn by default (16 for an unconditional generator).
    sampler = service.sampler
    page_count = min(service.max_images, 2 * len(sampler.class_names)) if sampler.conditional else service.default_count

    @router.get(
        "/",
        operation_id="page",
        summary="the studio page: a gallery by category, an image's details, variants, walks, a photo's projection",
        response_class=Response,
        responses={200: {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}}}
        | BAD_REQUEST,
    )
    async def page(
        request: Request,
        n: Count = page_count,
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
    """The studio: the form (it works without script too), the gallery grouped by category, the
    photo upload, and the detail view that studio.js fills. Every image is named, and shown through
    /named.png, so that a click, a download and a walk all use one name."""
    sampler = service.sampler
    esc = html.escape
    conditional = sampler.conditional
    names = sampler.class_names if conditional else []
    options = ['<option value="">every category</option>'] if conditional else []
    for index, class_name in enumerate(names):
        chosen = " selected" if images.label == index else ""
        options.append(f'<option value="{esc(class_name)}"{chosen}>{esc(class_name)}</option>')
    category = (
        f"""<div class="field"><label for="label">Category</label>
<select id="label" name="label">{"".join(options)}</select><p class="error" id="label-error" role="alert"></p></div>"""
        if conditional
        else ""
    )
    info = sampler.info
    source = esc(str(info.get("dataset") or "a trained generator"))
    trained = f", step {info['step']:,}" if isinstance(info.get("step"), int) and info.get("step") else ""
    query = {
        "n": images.n,
        "seed": images.seed,
        **({"label": names[images.label]} if images.label is not None else {}),
        **({"temperature": f"{images.temperature:g}"} if images.temperature != 1.0 else {}),
    }
    groups = gallery_groups(service, images)
    height, width = sampler.native_size
    sections = "\n".join(
        gallery_section(prefix, title, members, images.label is None, (width, height)) for title, members in groups
    )
    if images.label is not None or not conditional:
        counted = f"{images.n} image{'s' if images.n != 1 else ''}"
    else:
        counted = f"{images.n} image{'s' if images.n != 1 else ''} in {min(images.n, len(names))} categories"
    root = esc(prefix)
    run = "1" if service.run_dir is not None else ""
    upload = UPLOAD if run else NO_RUN
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>productgan studio</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<link rel="stylesheet" href="{root}/static/page.css">
<link rel="icon" href="{root}/static/favicon.svg" type="image/svg+xml">
</head>
<body data-root="{root}" data-run="{run}">
<header class="top">
<h1>productgan <span>studio</span></h1>
<p class="about">New product images from a generator trained on {source}{esc(trained)}.
<a href="{root}/docs">API</a></p>
</header>
<main>
<form class="controls card" id="controls" method="get" action="{root}/" novalidate>
{category}
<div class="field"><label for="n">Images</label>
<input id="n" name="n" type="number" inputmode="numeric" min="1" max="{service.max_images}" value="{images.n}">
<p class="error" id="n-error" role="alert"></p></div>
<div class="field"><label for="seed">Seed</label>
<div class="joined"><input id="seed" name="seed" type="number" inputmode="numeric" min="0" value="{images.seed}">
<button type="button" id="new-seed" class="secondary">New seed</button></div>
<p class="error" id="seed-error" role="alert"></p></div>
<div class="field"><label for="temperature">Temperature</label>
<input id="temperature" name="temperature" type="number" inputmode="decimal" min="0.05" max="{MAX_TEMPERATURE:g}"
 step="0.05" value="{images.temperature:g}">
<p class="hint">1 makes images as trained; lower gives safer, more typical products, higher more varied ones.</p>
<p class="error" id="temperature-error" role="alert"></p></div>
<div class="field submit"><button type="submit" id="generate" class="primary">Generate</button></div>
</form>
<div class="toolbar">
<p id="count" aria-live="polite">{esc(counted)}, seed {images.seed}</p>
<div class="actions">
<a class="button secondary" id="grid-zip" href="{root}/images.zip?{esc(urlencode(query))}"
 download>Download all (zip)</a>
<button type="button" class="secondary" id="selection-zip" disabled>Download selection (0)</button>
</div>
<p class="error" id="selection-error" role="alert"></p>
</div>
<div id="gallery" class="gallery">
{sections}
</div>
{upload}<p class="foot">Every image has a name (seed:index:category@temperature) that gives the same pixels in the API,
the command line and Python. The API is described at <a href="{root}/docs">{root}/docs</a> and
<a href="{root}/redoc">{root}/redoc</a>.</p>
</main>
<dialog id="detail" aria-labelledby="detail-title">
<div class="detail-head"><h2 id="detail-title">Image</h2>
<button type="button" class="icon" id="close" aria-label="Close">&#x2715;</button></div>
<div class="detail-body">
<div class="detail-main">
<img id="detail-image" class="pixel big" alt="">
<div>
<p class="name"><code id="detail-name"></code></p>
<p id="detail-category" class="hint"></p>
<div class="actions">
<a class="button secondary" id="download-native" download>Download PNG</a>
<a class="button secondary" id="download-large" download>Download enlarged</a>
<button type="button" class="primary" id="more">More like this</button>
</div>
</div>
</div>
<section id="variants-section" hidden><h3>More like this</h3>
<p class="hint">Close variations; open one to vary it again or walk from it.</p>
<div class="strip" id="variants" aria-live="polite"></div>
<p class="error" id="variants-error" role="alert"></p></section>
<section id="neighbours-section" hidden><h3>Nearest training images</h3>
<p id="copy-flag"></p><div class="strip" id="neighbours"></div><p class="error" id="neighbours-error" role="alert"></p>
</section>
<section><h3>Walk to another image</h3>
<form id="walk" novalidate>
<div class="field"><label for="walk-to">Image to walk to</label>
<input id="walk-to" name="to" type="text" autocomplete="off" spellcheck="false">
<p class="error" id="walk-to-error" role="alert"></p></div>
<div class="field"><label for="frames">Frames</label>
<input id="frames" name="frames" type="number" inputmode="numeric" min="2" max="120" value="24">
<p class="error" id="frames-error" role="alert"></p></div>
<div class="field submit"><button type="submit" class="primary" id="walk-go">Walk</button></div>
</form>
<div id="walk-result" hidden><img id="walk-image" class="pixel walk" alt="the walk, playing">
<a class="button secondary" id="walk-download" download="walk.gif">Download the walk (GIF)</a></div>
</section>
</div>
</dialog>
<script src="{root}/static/studio.js"></script>
</body></html>
"""


UPLOAD = """<section class="card upload" aria-labelledby="upload-title">
<h2 id="upload-title">Start from a product photo</h2>
<p class="hint">The generator searches for the image of its own closest to your photo; from there, ask for
more like it or walk to another image. The photo stays in memory and is not stored.</p>
<form id="upload" novalidate>
<div class="field"><label for="photo">Photo</label>
<input id="photo" name="photo" type="file" accept="image/*">
<p class="error" id="photo-error" role="alert"></p></div>
<div class="field"><label for="effort">Effort</label>
<select id="effort" name="steps"><option value="100" selected>quick (100 steps)</option>
<option value="300">thorough (300 steps, three times as long)</option></select></div>
<div class="field submit"><button type="submit" class="primary" id="project">Find it</button></div>
</form>
<div id="projection" class="projection" hidden>
<figure><img id="target" class="pixel" alt="your photo, fitted">
<figcaption>your photo, as the generator sees it</figcaption></figure>
<figure><img id="reconstruction" class="pixel" alt="the generator's closest image">
<figcaption>the generator's closest image</figcaption></figure>
<div><p id="verdict" class="verdict"></p><p id="distance" class="hint"></p>
<button type="button" class="primary" id="open-projection">Open: more like this, walk</button></div>
</div>
</section>
"""
NO_RUN = """<p class="card hint">Projecting a photo and finding an image's nearest training images
need the run directory; this server serves an exported generator.</p>
"""


def gallery_groups(service: Service, images: Images) -> list[tuple[str | None, list[str]]]:
    """The gallery's sections: (category or None, the names of its images), in the order of
    /images.png. With every category in turn, image i is of category i mod K: a section per category."""
    sampler = service.sampler
    temperature = images.temperature
    if not sampler.conditional:
        return [(None, [str(ImageName(images.seed, i, None, temperature)) for i in range(images.n)])]
    names = sampler.class_names
    if images.label is not None:
        title = names[images.label]
        return [(title, [str(ImageName(images.seed, i, title, temperature)) for i in range(images.n)])]
    count = len(names)
    return [
        (title, [str(ImageName(images.seed, i, title, temperature)) for i in range(c, images.n, count)])
        for c, title in enumerate(names[: images.n])
    ]


def gallery_section(prefix: str, title: str | None, members: list[str], several: bool, size: tuple[int, int]) -> str:
    esc = html.escape
    cells = "".join(
        f"""<li><button type="button" class="cell" data-name="{esc(name)}" aria-label="Open {esc(name)}">
<img class="pixel" src="{esc(prefix)}/named.png?{esc(urlencode({"name": name}))}" alt="{esc(name)}"
 width="{size[0]}" height="{size[1]}">
</button><label class="pick"><input type="checkbox" data-name="{esc(name)}"><span>select</span></label></li>"""
        for name in members
    )
    heading = f'<h2>{esc(title)} <span class="tally">{len(members)}</span></h2>' if title is not None else ""
    return f'<section class="category{" several" if several else ""}">{heading}<ul class="cells">{cells}</ul></section>'
