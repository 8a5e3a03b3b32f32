"""productgan serve's API description is true: every parameter and answer is declared as the server
has it, the docs render it from the server alone, and a property-based fuzz of every operation
(Schemathesis, every check on) finds no answer that departs from it."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from time import perf_counter

import pytest

pytest.importorskip("fastapi")
TestClient = pytest.importorskip("fastapi.testclient").TestClient

from helpers import train_tiny_run  # noqa: E402

from productgan.explore.steering import measure_directions  # noqa: E402
from productgan.generator.latents import MAX_TEMPERATURE  # noqa: E402
from productgan.serve import create_app  # noqa: E402
from productgan.serve.service import MAX_INDEX, MAX_SEED  # noqa: E402

MAX_IMAGES = 8
PNG, NPY, ZIP, JSON = "image/png", "application/octet-stream", "application/zip", "application/json"
# Routes whose answers are bytes named by an ETag, and their media type.
IMAGE_ROUTES = {
    "/images.png": PNG,
    "/images.npy": NPY,
    "/image.png": PNG,
    "/named.png": PNG,
    "/walk.gif": "image/gif",
    "/walk.webp": "image/webp",
    "/walk.png": PNG,
    "/walk.npy": NPY,
    "/variants.png": PNG,
    "/variants.npy": NPY,
    "/images.zip": ZIP,
    "/neighbours.png": PNG,
    "/training/{index}.png": PNG,
    "/colourways.png": PNG,
    "/strip.png": PNG,
}
# Work for the queue that is not cached: JSON answers and the selection's zip.
UNCACHED_WORK = {
    "/variants.json": JSON,
    "/neighbours.json": JSON,
    "/project": JSON,
    "/selection.zip": ZIP,
    "/colourways.json": JSON,
}
# What needs the run directory (404 from an export).
RUN_ONLY = {"/neighbours.json", "/neighbours.png", "/training/{index}.png", "/project"}
# Examples per operation and generation mode: 200 for the original image routes, fewer for the
# latent tools (a walk or a neighbour search costs more); about 2,000 requests, a minute or two.
FUZZ_EXAMPLES = 120
LATENT_EXAMPLES = 25
PROJECTION_EXAMPLES = 8
# A projection's step budget under the fuzz: an upload that is an image stays a second's work.
PROJECTION_STEPS = 10
# Operations that take image names: a name of the declared form may still be refused with 422, when
# its vector decodes to NaN or infinity or its seed is above 2**63 - 1 (a pattern cannot say either),
# and an upload of the declared form (any bytes) when they are no image; a colour with a hue asked of
# this grey run, or a direction it has not (no size: every pixel of the tiny run is off its background).
NAMED = "^/(named|walk|variants|neighbours|selection|project|colourways|strip)"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The server of a tiny trained run: every operation, those that need the run's data included."""
    run = train_tiny_run(tmp_path_factory.mktemp("contract"))
    measure_directions(run, samples=200, probe=16, progress=False)
    app = create_app(run, max_images=MAX_IMAGES, max_projection_steps=PROJECTION_STEPS)
    # The training features, built now rather than by the server's warm-up thread while the fuzz's
    # own thread runs: CPython 3.11 keeps the AST builder's recursion count per interpreter, not
    # per thread (cpython#106905), so two threads that parse at once (numpy reads .npy headers
    # with ast.literal_eval, Hypothesis parses its filters) can fail one parse with "AST
    # constructor recursion depth mismatch".
    app.state.service.neighbour_index()
    return app


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)


@pytest.fixture(scope="module")
def description(client):
    return client.get("/openapi.json").json()


def operations(description):
    for path, methods in description["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_every_parameter_is_declared_with_its_range_and_a_description(description):
    seen = set()
    for path, _, operation in operations(description):
        for parameter in operation.get("parameters", []):
            name, schema = parameter["name"], parameter["schema"]
            seen.add(name)
            assert parameter.get("description"), (path, name)
            if schema.get("type") in ("integer", "number"):
                assert "maximum" in schema and ("minimum" in schema or "exclusiveMinimum" in schema), (path, name)
            elif schema.get("type") == "array":  # a repeated parameter: how many, and each one's form
                assert "maxItems" in schema and "pattern" in schema["items"], (path, name)
            elif name != "If-None-Match":  # any entity tag may be sent back
                assert "enum" in schema or "pattern" in schema, (path, name)
    assert seen == {
        *("n", "seed", "label", "size", "temperature", "index", "If-None-Match"),
        *("name", "scale", "from", "to", "via", "frames", "fps", "of", "spread", "k", "steps", "restarts"),
        *("crop", "background"),
        *("colours", "along", "amounts"),
    }
    images = {p["name"]: p["schema"] for p in description["paths"]["/images.png"]["get"]["parameters"]}
    assert images["n"]["minimum"] == 1 and images["n"]["maximum"] == MAX_IMAGES
    assert images["seed"]["minimum"] == 0 and images["seed"]["maximum"] == MAX_SEED
    assert images["temperature"] == images["temperature"] | {"exclusiveMinimum": 0, "maximum": MAX_TEMPERATURE}
    assert images["size"]["enum"] == ["native", "training"]
    assert images["crop"]["enum"] == ["none", "product"]
    # The tiny run's images are noise to their edges: no plain background, so no transparency to declare.
    assert images["background"]["enum"] == ["keep"]
    one = {p["name"]: p["schema"] for p in description["paths"]["/image.png"]["get"]["parameters"]}
    assert one["index"]["minimum"] == 0 and one["index"]["maximum"] == MAX_INDEX


def test_the_label_pattern_is_what_the_server_accepts(client, description):
    (label,) = (p for p in description["paths"]["/images.png"]["get"]["parameters"] if p["name"] == "label")
    pattern = re.compile(label["schema"]["pattern"])
    for value in [
        "",
        "Bag",
        "bag",
        "ANKLE BOOT",
        "T-shirt/top",
        "0",
        "9",
        "10",
        "03",
        " Bag",
        "Bag\n",
        "Hat",
        "--5",
        "²",
    ]:
        accepted = client.get("/images.npy", params={"n": 1, "label": value}).status_code == 200
        assert accepted == bool(pattern.fullmatch(value)), value  # as ECMA-262 reads ^...$, the schema's dialect


def test_every_answer_is_declared_with_its_media_type_and_body(description, client):
    schemas = description["components"]["schemas"]
    assert (
        schemas["Problem"]["required"] == ["detail"] and schemas["Problem"]["properties"]["detail"]["type"] == "string"
    )
    assert "HTTPValidationError" not in json.dumps(description) and "ValidationError" not in schemas
    problem = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, _, operation in operations(description):
        responses = operation["responses"]
        assert all(answer.get("description") for answer in responses.values()), path
        assert responses["414"]["content"] == problem and responses["431"]["content"] == problem, path
        if operation.get("parameters") or operation.get("requestBody"):
            assert responses["422"]["content"] == problem, path
        run_only = {"404"} if path in RUN_ONLY else set()
        if path in IMAGE_ROUTES:
            assert set(responses) == {"200", "304", "414", "422", "431", "503"} | run_only, path
            assert responses["200"]["content"] == {
                IMAGE_ROUTES[path]: {"schema": {"type": "string", "format": "binary"}}
            }
            assert {"ETag", "Cache-Control"} <= set(responses["200"]["headers"]) and "content" not in responses["304"]
        elif path in UNCACHED_WORK:
            body = {"413"} if operation.get("requestBody") else set()
            assert set(responses) == {"200", "414", "422", "431", "503"} | run_only | body, path
            assert set(responses["200"]["content"]) == {UNCACHED_WORK[path]}, path
        else:
            assert "503" not in responses, path
        if "503" in responses:
            assert responses["503"]["content"] == problem and responses["503"]["headers"]["Retry-After"]["required"]
        for status in ("404", "413"):
            assert responses.get(status, {"content": problem})["content"] == problem, (path, status)
    upload = description["paths"]["/project"]["post"]["requestBody"]["content"]
    assert upload["multipart/form-data"]["schema"]["properties"]["photo"]["format"] == "binary"
    assert set(description["paths"]["/"]["get"]["responses"]["200"]["content"]) == {"text/html"}
    # the declared body is the real one
    assert client.get("/images.png", params={"n": 0}).json().keys() == {"detail"}


class Resources(HTMLParser):
    """Every address a page names: scripts, style sheets, icons, links, the description it renders."""

    def __init__(self):
        super().__init__()
        self.urls, self.inline_scripts, self._in_script = [], 0, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href", "spec-url", "data-openapi-url"):
            if attrs.get(name):
                self.urls.append(attrs[name])
        self._in_script = tag == "script" and not attrs.get("src")

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_scripts += 1


@pytest.mark.parametrize("root", ["", "/gan"])
@pytest.mark.parametrize("page", ["/docs", "/redoc", "/"])
def test_the_docs_and_the_page_load_everything_from_the_server_itself(app, page, root):
    client = TestClient(app, root_path=root)
    response = client.get(root + page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    resources = Resources()
    resources.feed(response.text)
    assert resources.inline_scripts == 0
    assert len(resources.urls) >= (3 if page != "/redoc" else 2), resources.urls
    for url in resources.urls:
        assert url.startswith(root + "/") and not url.startswith("//"), url  # on this host, under the root path
        loaded = client.get(url)
        assert loaded.status_code == 200, url
        if url.endswith(".js"):
            assert loaded.headers["content-type"].startswith("text/javascript") and len(loaded.content) > 100
    if page == "/docs":
        assert "validatorUrl: null" in client.get(root + "/static/docs.js").text  # no call to an online validator


def fuzz(app, examples: int, latent_examples: int = LATENT_EXAMPLES, projection_examples: int = PROJECTION_EXAMPLES):
    """Run every Schemathesis phase and check on every operation of ``app``; returns (operations,
    examples, failures as text)."""
    schemathesis = pytest.importorskip("schemathesis")
    from schemathesis.engine import events, from_schema

    accepted = {"positive_data_acceptance": {"expected-statuses": ["2xx", "404", "422"]}}
    config = schemathesis.Config.from_dict(
        {
            "seed": 20,
            "generation": {"mode": "all", "max-examples": examples, "deterministic": True, "database": "none"},
            # every check; a request the description forbids must get 422 (or 414 for a long query, 413
            # for a large body)
            "checks": {"enabled": True, "negative_data_rejection": {"expected-statuses": ["413", "414", "422"]}},
            "operations": [
                {"include-path-regex": NAMED, "checks": accepted, "generation": {"max-examples": latent_examples}},
                {"include-path-regex": "^/training/", "generation": {"max-examples": latent_examples}},
                {"include-path": "/project", "generation": {"max-examples": projection_examples}},
            ],
        }
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    labels, cases, failures = set(), 0, []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            labels.add(event.recorder.label)
            cases += len(event.recorder.cases)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.failure_info is not None:
                        failures.append(f"{event.recorder.label} {check.name}: {check.failure_info.code_sample}")
        elif isinstance(event, events.NonFatalError | events.FatalError):
            error = event.value if isinstance(event, events.NonFatalError) else event.exception
            failures.append(f"{getattr(event, 'label', 'the run')}: {error!r}")
    return labels, cases, failures


def test_a_fuzz_of_every_operation_finds_nothing_the_description_does_not_say(app, description):
    start = perf_counter()
    labels, cases, failures = fuzz(app, FUZZ_EXAMPLES)
    print(
        f"Schemathesis: {len(labels)} operations, {cases} examples, {len(failures)} failures "
        f"in {perf_counter() - start:.1f} s"
    )
    assert labels == {f"{method.upper()} {path}" for path, method, _ in operations(description)}
    assert cases > 100 * len(labels)
    assert not failures, "\n".join(sorted(set(failures))[:20])


def test_the_fuzz_finds_a_server_that_departs_from_its_description(app, monkeypatch):
    """The contract test can fail: an image route that answers in an undeclared type, and one
    that fails with 500, are both found."""
    from productgan.serve.routes import images

    monkeypatch.setattr(images, "NPY", "text/plain")
    monkeypatch.setattr(app.state.service, "make_one", lambda *args: 1 / 0)
    _, _, failures = fuzz(app, 5, 1, 1)
    assert any("GET /images.npy content_type_conformance" in failure for failure in failures), failures[:5]
    assert any("GET /image.png" in failure and "ZeroDivisionError" in failure for failure in failures)
