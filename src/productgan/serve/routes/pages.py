"""The pages a person opens: the studio page (``/``) and the API docs (``/docs``, ``/redoc``).

Every link a page holds starts with the request's root path, so the pages work behind a proxy
that serves the API under a prefix (``productgan serve --root-path /gan``). The pages hold no
inline script or style: theirs are files of serve/static/, and the docs' renderers (Swagger UI
and Redoc, from the ``fastapi-offline`` package) are served by the server too, so the docs need
no network beyond the server itself.

A link to the studio with a bad value (``/?n=5000``) opens the page in a browser, the API's sentence
beside the field and the default in the value's place; any other client gets the 422 of every route.
"""

import html
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from pydantic import TypeAdapter, ValidationError

from productgan.errors import ProductganError
from productgan.explore.names import ImageName
from productgan.generator.latents import MAX_TEMPERATURE
from productgan.serve.middleware import DOCS_POLICY
from productgan.serve.problems import BAD_REQUEST, shown_input
from productgan.serve.routes.images import Seed, Temperature, count_query, label_query
from productgan.serve.routes.page_parts import NO_RUN, UPLOAD, detail_view
from productgan.serve.routes.status import describe
from productgan.serve.service import Images, Service

# A category with more images than this is laid out the page's width, in dense columns.
DENSE_AFTER = 8


def routes(service: Service, openapi_url: str) -> APIRouter:
    router = APIRouter(tags=["pages"])
    Count = count_query(service)
    Label = label_query(service)
    # Two images of every category in turn by default (16 for an unconditional generator).
    sampler = service.sampler
    page_count = min(service.max_images, 2 * len(sampler.class_names)) if sampler.conditional else service.default_count
    checks = {"n": (TypeAdapter(Count), page_count), "seed": (TypeAdapter(Seed), 0)}
    checks["temperature"] = (TypeAdapter(Temperature), 1.0)

    @router.get(
        "/",
        operation_id="page",
        summary="the studio page: a gallery by category, an image's details, variants, walks, a photo's projection",
        description=(
            "A bad value gets 422 and its sentence, as on every route; a browser (`Accept: text/html`) gets the "
            "page instead, with the sentence beside the field and the default in the value's place."
        ),
        response_class=Response,
        responses={200: {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}}}
        | BAD_REQUEST,
    )
    async def page(
        request: Request,
        n: as_text(Count) = page_count,
        seed: as_text(Seed) = 0,
        label: Label = "",
        temperature: as_text(Temperature) = 1.0,
    ) -> HTMLResponse:
        # The values arrive as sent and are checked here, with the API's own bounds and sentences,
        # so that a shared link with a bad value opens the page rather than a JSON refusal.
        sent = {"n": n, "seed": seed, "temperature": temperature}
        values, errors = {}, []
        for name, (adapter, default) in checks.items():
            try:
                values[name] = adapter.validate_python(sent[name])
            except ValidationError as error:
                values[name] = default
                errors += [{**item, "loc": ("query", name)} for item in error.errors()]
        browser = "text/html" in request.headers.get("accept", "")
        if errors and not browser:
            raise RequestValidationError(errors)
        problems = {e["loc"][1]: refusal(service, e["loc"][1], e["input"]) for e in errors}
        try:
            images = service.images(values["n"], values["seed"], label, "native", values["temperature"])
        except ProductganError as error:
            if not browser:
                raise
            problems["label"] = str(error)
            images = service.images(values["n"], values["seed"], "", "native", values["temperature"])
        shown = {name: str(sent[name]) for name in problems if name in sent}
        spread = declared_default(request.app, "/variants.json", "spread")
        return HTMLResponse(studio_page(service, images, root(request), problems, shown, spread))

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


def as_text(kind: Any) -> Any:
    """The query parameter ``kind`` (a checked parameter of the API) declared as it is, bounds and
    all, but handed to the route as the text sent, for the route to check itself."""
    query = kind.__metadata__[0]
    schema = {key: value for key, value in TypeAdapter(kind).json_schema().items() if key != "description"}
    return Annotated[str, Query(description=query.description, json_schema_extra=schema)]


def refusal(service: Service, name: str, value: Any) -> str:
    """The sentence the API answers a bad ``name`` with (as serve/problems.py words it)."""
    return f"{name} must be {service.expected[name]}, not {shown_input(value)}."


def declared_default(app: Any, path: str, parameter: str) -> Any:
    """The default the API's description declares for ``parameter`` of GET ``path`` (None if none)."""
    for declared in app.openapi()["paths"].get(path, {}).get("get", {}).get("parameters", []):
        if declared["name"] == parameter:
            return declared["schema"].get("default")
    return None


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


def studio_page(
    service: Service,
    images: Images,
    prefix: str,
    problems: dict[str, str] | None = None,
    shown: dict[str, str] | None = None,
    spread: Any = None,
) -> str:
    """The studio: the form (it works without script too), the gallery grouped by category, the
    photo upload, and the detail view that studio.js and steering.js fill (page_parts.py). Every
    image is named, and shown through /named.png, so that a click, a download, a walk and an edit
    all use one name. ``problems``: a sentence per field whose value was refused, shown beside it
    with the value sent (``shown``); ``spread``: the variants' default spread, as the API declares it."""
    sampler = service.sampler
    esc = html.escape
    names = sampler.class_names if sampler.conditional else []
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
    # Many images per category: each category the page's width, in columns of about 100 px.
    dense = " dense" if max(len(members) for _, members in groups) > DENSE_AFTER else ""
    counted = f"{images.n} image{'s' if images.n != 1 else ''}"
    if images.label is None and sampler.conditional:
        counted += f" in {min(images.n, len(names))} categories"
    root = esc(prefix)
    run = "1" if service.run_dir is not None else ""
    upload = UPLOAD.replace("{expects}", esc(expectation(service))) if run else NO_RUN
    spread = spread if isinstance(spread, float) and 0 < spread <= 1 else 0.3  # the API's, when it declares one
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
{controls(service, images, prefix, problems or {}, shown or {})}
<div class="toolbar">
<p id="count" aria-live="polite">{esc(counted)}, seed {images.seed}</p>
<div class="actions">
<a class="button secondary" id="grid-zip" href="{root}/images.zip?{esc(urlencode(query))}"
 download>Download all (zip)</a>
<button type="button" class="secondary" id="selection-zip" disabled>Download selection (0)</button>
</div>
<p class="error" id="selection-error" role="alert"></p>
<p class="hint" id="gallery-status" aria-live="polite"></p>
</div>
<div id="gallery" class="gallery{dense}">
{sections}
</div>
{upload}<p class="foot">Every image has a name (seed:index:category@temperature) that gives the same pixels in the API,
the command line and Python. The API is described at <a href="{root}/docs">{root}/docs</a> and
<a href="{root}/redoc">{root}/redoc</a>.</p>
</main>
{detail_view(spread)}
<script src="{root}/static/studio.js"></script>
<script src="{root}/static/steering.js"></script>
</body></html>
"""


def controls(service: Service, images: Images, prefix: str, problems: dict[str, str], shown: dict[str, str]) -> str:
    """The form, in a disclosure that studio.js closes on a narrow screen (its summary says what
    the gallery shows); a refused value is shown as sent, with its sentence, and takes the focus."""
    esc = html.escape
    sampler = service.sampler
    names = sampler.class_names if sampler.conditional else []
    first = next((name for name in ("label", "n", "seed", "temperature") if name in problems), None)

    def marks(name: str) -> str:
        return (' aria-invalid="true"' if name in problems else "") + (" autofocus" if name == first else "")

    def error(name: str) -> str:
        return f'<p class="error" id="{name}-error" role="alert">{esc(problems.get(name, ""))}</p>'

    value = {
        "n": esc(shown.get("n", str(images.n))),
        "seed": esc(shown.get("seed", str(images.seed))),
        "temperature": esc(shown.get("temperature", f"{images.temperature:g}")),
    }
    options = ['<option value="">every category</option>'] if sampler.conditional else []
    for index, class_name in enumerate(names):
        chosen = " selected" if images.label == index else ""
        options.append(f'<option value="{esc(class_name)}"{chosen}>{esc(class_name)}</option>')
    category = (
        f"""<div class="field"><label for="label">Category</label>
<select id="label" name="label"{marks("label")}>{"".join(options)}</select>{error("label")}</div>"""
        if sampler.conditional
        else error("label")  # a label sent to an unconditional generator: its sentence all the same
    )
    chosen = names[images.label] if images.label is not None else "every category" if names else ""
    plural = "s" if images.n != 1 else ""
    temperature = f"temperature {images.temperature:g}" if images.temperature != 1.0 else ""
    summary = " · ".join(
        part for part in (chosen, f"{images.n} image{plural}", f"seed {images.seed}", temperature) if part
    )
    return f"""<details class="controls-box card" id="controls-box" open{' data-invalid="true"' if problems else ""}>
<summary><span class="summary-text">{esc(summary)}</span><span class="change" aria-hidden="true"></span></summary>
<form class="controls" id="controls" method="get" action="{esc(prefix)}/" novalidate>
{category}
<div class="field"><label for="n">Images</label>
<input id="n" name="n" type="number" inputmode="numeric" min="1" max="{service.max_images}" \
value="{value["n"]}"{marks("n")}>{error("n")}</div>
<div class="field"><label for="seed">Seed</label>
<div class="joined"><input id="seed" name="seed" type="number" inputmode="numeric" min="0"
 value="{value["seed"]}"{marks("seed")}>
<button type="button" id="new-seed" class="secondary">New seed</button></div>{error("seed")}</div>
<div class="field"><label for="temperature">Temperature</label>
<input id="temperature" name="temperature" type="number" inputmode="decimal" min="0.05" max="{MAX_TEMPERATURE:g}"
 step="0.05" value="{value["temperature"]}"{marks("temperature")}>
<p class="hint">1 makes images as trained; lower gives safer, more typical products, higher more varied ones.</p>
{error("temperature")}</div>
<div class="field submit"><button type="submit" id="generate" class="primary">Generate</button></div>
</form>
</details>"""


def expectation(service: Service) -> str:
    """What the generator expects of a photo, from what /info says: its training data's
    background, size and colour (``expected_photo``), and its categories."""
    info = describe(service)
    sentence = "Works best with photos like its training data"
    if info.expected_photo is not None:
        sentence += f": {info.expected_photo.text}"
    if not (info.conditional and info.class_names):
        return sentence + "."
    listed = ", ".join(info.class_names[:12]) + (", …" if len(info.class_names) > 12 else "")
    return sentence + f", each one of its {len(info.class_names)} categories: {listed}."


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
    # loading="lazy": of a thousand images, those near the screen are asked for first and the rest
    # as they scroll into view; studio.js asks again for any the server was too busy to make.
    cells = "".join(
        f"""<li><button type="button" class="cell" data-name="{esc(name)}" aria-label="Open {esc(name)}">
<img class="pixel" src="{esc(prefix)}/named.png?{esc(urlencode({"name": name}))}" alt="{esc(name)}"
 width="{size[0]}" height="{size[1]}" loading="lazy" decoding="async">
</button><label class="pick"><input type="checkbox" data-name="{esc(name)}" aria-label="Select {esc(name)}">\
</label></li>"""
        for name in members
    )
    heading = f'<h2>{esc(title)} <span class="tally">{len(members)}</span></h2>' if title is not None else ""
    return f'<section class="category{" several" if several else ""}">{heading}<ul class="cells">{cells}</ul></section>'
