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

from test_serve import export  # noqa: E402

from productgan.sampling import MAX_TEMPERATURE  # noqa: E402
from productgan.serve import create_app  # noqa: E402
from productgan.serve.service import MAX_INDEX, MAX_SEED  # noqa: E402

MAX_IMAGES = 8
IMAGE_ROUTES = {"/images.png": "image/png", "/images.npy": "application/octet-stream", "/image.png": "image/png"}
# Examples per operation and generation mode: about 1,200 requests in all, some 30 s on two busy cores.
FUZZ_EXAMPLES = 200


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return create_app(export(tmp_path_factory.mktemp("contract") / "generator", conditional=True), max_images=8)


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
            elif name != "If-None-Match":  # any entity tag may be sent back
                assert "enum" in schema or "pattern" in schema, (path, name)
    assert seen == {"n", "seed", "label", "size", "temperature", "index", "If-None-Match"}
    images = {p["name"]: p["schema"] for p in description["paths"]["/images.png"]["get"]["parameters"]}
    assert images["n"]["minimum"] == 1 and images["n"]["maximum"] == MAX_IMAGES
    assert images["seed"]["minimum"] == 0 and images["seed"]["maximum"] == MAX_SEED
    assert images["temperature"] == images["temperature"] | {"exclusiveMinimum": 0, "maximum": MAX_TEMPERATURE}
    assert images["size"]["enum"] == ["native", "training"]
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
        assert responses["414"]["content"] == problem, path
        if operation.get("parameters"):
            assert responses["422"]["content"] == problem, path
        if path in IMAGE_ROUTES:
            assert set(responses) == {"200", "304", "414", "422", "503"}, path
            assert responses["200"]["content"] == {
                IMAGE_ROUTES[path]: {"schema": {"type": "string", "format": "binary"}}
            }
            assert {"ETag", "Cache-Control"} <= set(responses["200"]["headers"]) and "content" not in responses["304"]
            assert responses["503"]["content"] == problem and responses["503"]["headers"]["Retry-After"]["required"]
        else:
            assert "503" not in responses, path
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


def fuzz(app, examples: int):
    """Run every Schemathesis phase and check on every operation of ``app``; returns (operations,
    examples, failures as text)."""
    schemathesis = pytest.importorskip("schemathesis")
    from schemathesis.engine import events, from_schema

    config = schemathesis.Config.from_dict(
        {
            "seed": 20,
            "generation": {"mode": "all", "max-examples": examples, "deterministic": True, "database": "none"},
            # every check; a request the description forbids must get 422 (or 414 for a long query)
            "checks": {"enabled": True, "negative_data_rejection": {"expected-statuses": ["414", "422"]}},
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
    from productgan.serve import images

    monkeypatch.setattr(images, "NPY", "text/plain")
    monkeypatch.setattr(app.state.service, "make_one", lambda *args: 1 / 0)
    _, _, failures = fuzz(app, 5)
    assert any("GET /images.npy content_type_conformance" in failure for failure in failures), failures[:5]
    assert any("GET /image.png" in failure and "ZeroDivisionError" in failure for failure in failures)
