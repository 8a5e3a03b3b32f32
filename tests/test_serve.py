"""productgan serve: the REST API and page give the sampler's images, bad requests one sentence,
answers their caching and security headers, and the command its settings."""

from __future__ import annotations

import io
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import productgan.generator.latents as latents_module
from productgan.cli import main
from productgan.config import ModelConfig
from productgan.errors import ProductganError, UsageError
from productgan.explore.photos import expected_photo
from productgan.generator.export import write_export
from productgan.generator.grid import make_grid
from productgan.generator.latents import MAX_TEMPERATURE
from productgan.generator.sampler import load_generator
from productgan.models import Generator, init_weights

pytest.importorskip("fastapi")
TestClient = pytest.importorskip("fastapi.testclient").TestClient  # needs httpx2 (the dev extra)

from productgan.serve import app as serve_app  # noqa: E402
from productgan.serve import create_app  # noqa: E402
from productgan.serve.app import check_port, local_url  # noqa: E402
from productgan.serve.service import MAX_INDEX  # noqa: E402

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
INFO = {
    "class_names": CLASS_NAMES,
    "native_size": [28, 28],
    "fit": "pad",
    "padded_size": [32, 32],
    "pad": [2, 2, 2, 2],
    "background": 0,
    "dataset": "fashion-mnist",
    "step": 40,
    "images_seen": 2560,
    "ema": True,
}


def export(folder, conditional: bool, seed: int = 0):
    torch.manual_seed(seed)
    generator = Generator(ModelConfig(nz=8, ngf=4, conditional=conditional), 32, 1, num_classes=10)
    init_weights(generator)
    with torch.no_grad():  # weights large enough that the latent's scale shows in the rounded images
        for module in generator.modules():
            if isinstance(module, torch.nn.ConvTranspose2d):
                module.weight.mul_(5)
    if conditional:  # class tables start at zero; give each class its own look
        for module in generator.modules():
            if hasattr(module, "table"):
                torch.nn.init.normal_(module.table.weight, 0.0, 0.5)
    return write_export(generator.eval(), folder, INFO)


@pytest.fixture(scope="module")
def conditional_export(tmp_path_factory):
    return export(tmp_path_factory.mktemp("serve") / "generator", conditional=True)


@pytest.fixture(scope="module")
def client(conditional_export):
    return TestClient(create_app(conditional_export, max_images=64))


def png(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_info_describes_the_generator_and_the_limits(client):
    info = client.get("/info").json()
    assert info["class_names"] == CLASS_NAMES and info["conditional"] is True
    assert info["native_size"] == [28, 28] and info["training_size"] == [32, 32]
    assert info["nz"] == 8 and info["step"] == 40 and info["max_images"] == 64
    assert info["max_index"] == MAX_INDEX and info["max_temperature"] == MAX_TEMPERATURE
    assert client.get("/health").json() == {"status": "ok"}


def test_info_says_what_a_photo_should_look_like_for_an_export_too(client, conditional_export, tmp_path):
    expected = client.get("/info").json()["expected_photo"]
    assert expected == expected_photo(load_generator(conditional_export))
    assert expected["text"] == "light products on a black background, 28x28 grey"
    assert expected["opposite_background"] == "inverted" and expected["light_background"] is False
    # a background the export's checks let through but no photo can be fitted on: null, not a 500
    odd = TestClient(create_app(write_export(load_generator(conditional_export).generator, tmp_path, BAD_BACKGROUND)))
    assert odd.get("/info").json()["expected_photo"] is None


BAD_BACKGROUND = {**INFO, "background": "white"}


def test_head_requests_answer_like_get(client):
    for path in ("/health", "/", "/images.png?n=2"):
        head, get = client.head(path), client.get(path)
        assert head.status_code == 200 and head.content == b"", path
        assert head.headers["content-type"] == get.headers["content-type"], path


def test_npy_and_png_are_the_samplers_images(client, conditional_export):
    sampler = load_generator(conditional_export)
    expected = sampler(n=12, seed=5, label="Bag").numpy()
    response = client.get("/images.npy", params={"n": 12, "seed": 5, "label": "bag"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
    array = np.load(io.BytesIO(response.content))
    assert array.dtype == np.uint8 and array.shape == (12, 1, 28, 28)
    assert np.array_equal(array, expected)
    grid = png(client.get("/images.png", params={"n": 12, "seed": 5, "label": "Bag"}))
    assert np.array_equal(grid, make_grid(expected)[..., 0])
    # another seed or class gives other images
    assert not np.array_equal(
        np.load(io.BytesIO(client.get("/images.npy", params={"n": 12, "seed": 6, "label": "Bag"}).content)), expected
    )
    assert not np.array_equal(
        np.load(io.BytesIO(client.get("/images.npy", params={"n": 12, "seed": 5, "label": "Coat"}).content)), expected
    )


def test_every_class_in_turn_is_one_column_per_class(client, conditional_export):
    expected = load_generator(conditional_export)(n=20, seed=0).numpy()
    grid = png(client.get("/images.png", params={"n": 20}))
    assert np.array_equal(grid, make_grid(expected, nrow=10)[..., 0])
    training = np.load(io.BytesIO(client.get("/images.npy", params={"n": 2, "size": "training"}).content))
    assert training.shape == (2, 1, 32, 32)


def test_temperature_is_the_samplers(client, conditional_export):
    expected = load_generator(conditional_export)(n=5, seed=2, temperature=1.7).numpy()
    plain = load_generator(conditional_export)(n=5, seed=2).numpy()
    assert all(not np.array_equal(a, b) for a, b in zip(expected, plain))
    response = client.get("/images.npy", params={"n": 5, "seed": 2, "temperature": 1.7})
    assert np.array_equal(np.load(io.BytesIO(response.content)), expected)
    single = png(client.get("/image.png", params={"seed": 2, "index": 4, "temperature": 1.7}))
    assert np.array_equal(single, expected[4, 0])
    page = client.get("/", params={"n": 5, "seed": 2, "temperature": 1.7}).text
    assert 'href="/images.zip?n=5&amp;seed=2&amp;temperature=1.7"' in page
    assert 'data-name="2:4:Coat@1.7"' in page and 'src="/named.png?name=2%3A4%3ACoat%401.7"' in page
    assert np.array_equal(png(client.get("/named.png", params={"name": "2:4:Coat@1.7"})), expected[4, 0])


def test_one_image_is_that_row_of_its_seed(client, conditional_export):
    batch = load_generator(conditional_export)(n=7, seed=3, label="Sneaker").numpy()
    single = png(client.get("/image.png", params={"seed": 3, "index": 6, "label": "Sneaker"}))
    assert np.array_equal(single, batch[6, 0])
    mixed = load_generator(conditional_export)(n=7, seed=3).numpy()  # image i of class i mod 10
    assert np.array_equal(png(client.get("/image.png", params={"seed": 3, "index": 4})), mixed[4, 0])


def test_an_index_far_down_a_seed_is_its_row_whatever_max_images(conditional_export, monkeypatch):
    """index has a bound of its own, not --max-images; its vector is drawn a chunk at a time."""
    sampler = load_generator(conditional_export)
    client = TestClient(create_app(sampler, max_images=2))
    monkeypatch.setattr(latents_module, "NOISE_CHUNK", 3)  # several chunks, the last one short
    z = sampler.latents(11, 7, 0.8)[10:]
    expected = sampler.from_noise(z, labels=sampler.labels(1, "Dress")).numpy()[0, 0]
    assert np.array_equal(
        png(client.get("/image.png", params={"seed": 7, "index": 10, "label": 3, "temperature": 0.8})), expected
    )
    monkeypatch.undo()
    assert png(client.get("/image.png", params={"index": MAX_INDEX})).shape == (28, 28)
    response = client.get("/image.png", params={"index": MAX_INDEX + 1})
    assert response.status_code == 422
    assert (
        response.json()["detail"] == f"index must be a whole number between 0 and {MAX_INDEX}, not '{MAX_INDEX + 1}'."
    )


@pytest.mark.parametrize(
    "path, params, sentence",
    [
        ("/images.png", {"n": 0}, "n must be a whole number between 1 and 64, not '0'."),
        ("/images.npy", {"n": 65}, "n must be a whole number between 1 and 64, not '65'."),
        ("/images.png", {"n": "many"}, "n must be a whole number between 1 and 64, not 'many'."),
        ("/images.png", {"label": "Hat"}, "Unknown class 'Hat'"),
        ("/images.png", {"label": "10"}, "out of range"),
        ("/images.png", {"label": "03"}, "label '03' is neither a class name nor a class index"),
        ("/images.png", {"label": " Bag"}, "label ' Bag' is neither a class name nor a class index"),
        ("/images.npy", {"size": "huge"}, "size must be 'native' or 'training', not 'huge'."),
        ("/", {"n": 1000}, "n must be a whole number between 1 and 64"),
        ("/images.png", {"temperature": 0}, "temperature must be a number above 0 and at most 4 (1: as trained)"),
        ("/image.png", {"temperature": "nan"}, "temperature must be a number above 0 and at most 4"),
        ("/images.png", {"temperature": 4.5}, "temperature must be a number above 0 and at most 4"),
        ("/images.npy", {"seed": -1}, "seed must be a whole number between 0 and 9223372036854775807, not '-1'."),
        ("/image.png", {"seed": 2**63}, "seed must be a whole number between 0 and 9223372036854775807"),
        # label oddities: none is an index (Python's int() would read the last three)
        ("/images.png", {"label": "--5"}, "Unknown class '--5'"),
        ("/images.png", {"label": "²"}, "Unknown class '²'"),
        ("/images.png", {"label": "¹⁰"}, "Unknown class '¹⁰'"),
        ("/images.png", {"label": "1" * 1000}, "Unknown class '1111"),
    ],
)
def test_bad_requests_get_422_and_one_sentence(client, path, params, sentence):
    response = client.get(path, params=params)
    assert response.status_code == 422 and response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert sentence in detail
    assert len(detail) <= 400 and detail.endswith((".", "...")), detail  # one sentence, never a copy of the input


def test_a_long_query_is_refused_short_and_never_echoed(client):
    label = "x" * 60_000  # (the test client refuses a URL over 64 KiB)
    for path in ("/images.png", "/", "/health"):
        response = client.get(path, params={"label": label})
        assert response.status_code == 414
        assert response.json() == {"detail": "The query is 60,006 bytes long; this server reads at most 2,048."}
    digits = client.get("/images.png", params={"label": "1" * 4300})  # past the cap before it is read as a number
    assert digits.status_code == 414 and "4,306 bytes long" in digits.json()["detail"]
    response = client.get("/images.png", params={"label": "y" * 2000})  # under the cap: 422, quoting 40 characters
    assert response.status_code == 422 and len(response.content) < 300 and "y" * 41 not in response.text


def test_max_images_below_the_pages_default_count(conditional_export):
    client = TestClient(create_app(conditional_export, max_images=4))
    page = client.get("/")
    assert page.status_code == 200, page.text
    assert 'href="/images.zip?n=4&amp;seed=0"' in page.text and 'max="4" value="4"' in page.text
    assert png(client.get("/images.png")).shape == (62, 62)  # the API's default count is 4 too


def test_deterministic_answers_carry_an_etag_and_answer_304(client, conditional_export, tmp_path):
    first = client.get("/images.png", params={"n": 3, "seed": 1, "label": "Bag"})
    etag = first.headers["etag"]
    assert etag.startswith('"') and first.headers["cache-control"] == "public, max-age=3600"
    # the same images, named another way, are the same bytes under the same tag
    for label in ("bag", "8"):
        again = client.get("/images.png", params={"n": 3, "seed": 1, "label": label})
        assert again.headers["etag"] == etag and again.content == first.content
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        cached = client.get(
            "/images.png", params={"n": 3, "seed": 1, "label": "Bag"}, headers={"If-None-Match": header}
        )
        assert cached.status_code == 304 and cached.content == b"", header
        assert cached.headers["etag"] == etag and "cache-control" in cached.headers
    stale = client.get("/images.png", params={"n": 3, "seed": 1, "label": "Bag"}, headers={"If-None-Match": '"other"'})
    assert stale.status_code == 200 and stale.content == first.content
    # another query, another format, or other weights: another tag
    others = [
        client.get("/images.png", params={"n": 3, "seed": 2, "label": "Bag"}),
        client.get("/images.npy", params={"n": 3, "seed": 1, "label": "Bag"}),
        client.get("/images.png", params={"n": 3, "seed": 1, "label": "Bag", "temperature": 0.9}),
        TestClient(create_app(export(tmp_path / "other", conditional=True, seed=1))).get(
            "/images.png", params={"n": 3, "seed": 1, "label": "Bag"}
        ),
    ]
    assert len({etag, *(response.headers["etag"] for response in others)}) == 5
    one = client.get("/image.png", params={"seed": 1, "index": 2})
    assert one.headers["etag"] != client.get("/image.png", params={"seed": 1, "index": 3}).headers["etag"]


@pytest.mark.parametrize(
    "path", ["/", "/info", "/health", "/images.png?n=1", "/images.png?n=0", "/nowhere", "/static/page.css", "/docs"]
)
def test_every_answer_carries_the_security_headers(client, path):
    response = client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "script-src 'self';" in policy


def test_the_page_keeps_its_own_content_security_policy(client):
    """No inline script or style: the policy forbids them, and the page's style is a file."""
    page = client.get("/", params={"n": 4})
    assert "style-src 'self';" in page.headers["content-security-policy"]
    text = page.text.lower()
    scripts = ['<script src="/static/studio.js">', '<script src="/static/steering.js">']
    assert re.findall(r"<script[^>]*>", text) == scripts and "<style" not in text
    assert re.findall(r"<script[^>]*>(.*?)</script>", text, re.S) == ["", ""]
    assert not re.search(r"<[^>]*\s(style|on[a-z]+)\s*=", text)  # no style attribute, no event handler
    assert '<link rel="stylesheet" href="/static/page.css">' in page.text
    assert client.get("/static/page.css").status_code == 200


def test_the_page_offers_every_category_and_shows_the_grid(client):
    page = client.get("/", params={"n": 8, "seed": 2, "label": "Ankle boot"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    for name in ["T-shirt/top", "Ankle boot", "every category"]:
        assert name in text
    assert '<option value="Ankle boot" selected>' in text
    assert 'href="/images.zip?n=8&amp;seed=2&amp;label=Ankle+boot"' in text
    assert text.count('class="cell"') == 8 and text.count("<h2>Ankle boot") == 1
    # a class named in another case or by index is shown and linked by its name
    for label in ("ankle BOOT", "9"):
        assert (
            'href="/images.zip?n=8&amp;seed=2&amp;label=Ankle+boot"'
            in client.get("/", params={"n": 8, "seed": 2, "label": label}).text
        )
    # the form's "every category in turn" sends an empty label, which every request reads so
    every = client.get("/", params={"label": ""}).text  # two of each category by default, a section each
    assert 'href="/images.zip?n=20&amp;seed=0"' in every and every.count('<section class="category several">') == 10
    assert (
        client.get("/images.png", params={"n": 3, "label": ""}).content
        == client.get("/images.png", params={"n": 3}).content
    )
    assert (
        client.get("/image.png", params={"index": 2, "label": ""}).content
        == client.get("/image.png", params={"index": 2}).content
    )


def test_behind_a_proxy_every_link_carries_the_root_path(conditional_export):
    client = TestClient(create_app(conditional_export), root_path="/gan")
    page = client.get("/gan/", params={"n": 2}).text
    for link in (
        'href="/gan/static/page.css"',
        'action="/gan/"',
        'href="/gan/images.zip?n=2&amp;seed=0"',
        'src="/gan/named.png?name=0%3A0%3AT-shirt%2Ftop"',
        'src="/gan/static/studio.js"',
        'data-root="/gan"',
        'href="/gan/docs"',
    ):
        assert link in page, link
    assert client.get("/gan/images.png", params={"n": 2}).status_code == 200
    assert client.get("/gan/openapi.json").json()["servers"] == [{"url": "/gan"}]
    for docs in ("/gan/docs", "/gan/redoc"):
        text = client.get(docs).text
        assert 'src="/gan/static/' in text and '"/gan/openapi.json"' in text, docs


def test_cors_is_off_unless_an_origin_is_named(conditional_export, client):
    shop = "https://shop.example.com"
    assert "access-control-allow-origin" not in client.get("/info", headers={"Origin": shop}).headers
    assert (
        client.options("/images.png", headers={"Origin": shop, "Access-Control-Request-Method": "GET"}).status_code
        == 405
    )
    allowed = TestClient(create_app(conditional_export, cors_origins=[shop, "http://localhost:3000"]))
    response = allowed.get("/images.png", params={"n": 1}, headers={"Origin": shop})
    assert response.headers["access-control-allow-origin"] == shop
    assert "ETag" in response.headers["access-control-expose-headers"]
    assert "access-control-allow-origin" not in allowed.get("/info", headers={"Origin": "https://evil.example"}).headers
    preflight = allowed.options(
        "/images.png", headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    with pytest.raises(UsageError, match="--cors-origin 'shop.example.com' is not a web origin"):
        create_app(conditional_export, cors_origins=["shop.example.com"])


def test_an_unconditional_generator_refuses_a_category(tmp_path):
    client = TestClient(create_app(export(tmp_path / "generator", conditional=False)))
    assert client.get("/info").json()["conditional"] is False
    page = client.get("/").text
    assert '<select id="label"' not in page and 'data-name="0:0"' in page
    assert 'id="photo"' not in page and "need the run directory" in page  # served from an export
    response = client.get("/images.png", params={"label": "Bag"})
    assert response.status_code == 422 and "not class-conditional" in response.json()["detail"]
    assert png(client.get("/images.png", params={"n": 4})).shape == (62, 62)
    assert (
        client.get("/openapi.json").json()["paths"]["/images.png"]["get"]["parameters"][2]["schema"]["pattern"] == "^$"
    )


def recorded_server(monkeypatch) -> list:
    """Replace the server's run by a record of (app, announcement, uvicorn's settings)."""
    calls = []
    monkeypatch.setattr(
        serve_app, "run_server", lambda app, announcement, **kwargs: calls.append((app, announcement, kwargs))
    )
    return calls


def test_serve_command_loads_then_runs_uvicorn(conditional_export, monkeypatch):
    calls = recorded_server(monkeypatch)
    assert main(["serve", str(conditional_export), "--port", "0", "--max-images", "8"]) == 0
    ((app, announcement, kwargs),) = calls
    assert kwargs["host"] == "127.0.0.1" and 0 < kwargs["port"] < 65536  # port 0: a free one, chosen and named
    assert TestClient(app).get("/info").json()["max_images"] == 8
    assert f"at http://127.0.0.1:{kwargs['port']}/" in announcement
    assert kwargs["http"].request_timeout == 10 and kwargs["timeout_keep_alive"] == 5 and kwargs["root_path"] == ""


def test_serve_command_passes_its_limits(conditional_export, monkeypatch):
    calls = recorded_server(monkeypatch)
    flags = ["--port", "0", "--workers", "3", "--queue", "5", "--request-timeout", "2.5", "--root-path", "/gan/"]
    origins = ["--cors-origin", "https://a.example", "--cors-origin", "http://b.example:8080"]
    assert main(["serve", str(conditional_export), *flags, *origins]) == 0
    ((app, announcement, kwargs),) = calls
    assert kwargs["http"].request_timeout == 2.5 and kwargs["root_path"] == "/gan"
    work = app.state.service.work
    assert (work.workers, work.queue) == (3, 5)
    client = TestClient(app)
    for origin in ("https://a.example", "http://b.example:8080"):
        assert client.get("/health", headers={"Origin": origin}).headers["access-control-allow-origin"] == origin
    assert "behind the proxy at /gan/" in announcement


@pytest.mark.parametrize(
    "host, url",
    [
        ("127.0.0.1", "http://127.0.0.1:8000/"),
        ("0.0.0.0", "http://127.0.0.1:8000/"),
        ("::", "http://[::1]:8000/"),
        ("::1", "http://[::1]:8000/"),
        ("fe80::1", "http://[fe80::1]:8000/"),
        ("localhost", "http://localhost:8000/"),
    ],
)
def test_the_start_up_line_names_a_url_that_opens(host, url):
    assert local_url(host, 8000) == url


def test_serve_command_errors_are_one_sentence(tmp_path, conditional_export, monkeypatch, capsys):
    monkeypatch.setattr(serve_app, "run_server", lambda *args, **kwargs: pytest.fail("must not start"))
    assert main(["serve", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(conditional_export), "--port", str(port)]) == 1
        err = capsys.readouterr().err
        assert f"Cannot listen on 127.0.0.1:{port}" in err and "choose another --port" in err
    for flags, sentence in [
        (["--max-images", "0"], "--max-images must be at least 1"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--queue", "-1"], "--queue must be 0 or more"),
        (["--request-timeout", "0"], "--request-timeout must be above 0"),
        (["--root-path", "gan"], "--root-path must be a URL path such as /gan"),
        (["--cors-origin", "*.example"], "--cors-origin '*.example' is not a web origin"),
    ]:
        assert main(["serve", str(conditional_export), *flags]) == 2, flags
        assert sentence in capsys.readouterr().err, flags


def test_check_port_accepts_a_free_port():
    assert 0 < check_port("127.0.0.1", 0) < 65536  # 0: a free port, named
    with pytest.raises(UsageError, match="--host 203.0.113.1 is not an address of this machine"):
        check_port("203.0.113.1", 80)
    with pytest.raises(UsageError, match="--host '999.1.1.1' is not an address or a name"):
        check_port("999.1.1.1", 8000)  # not the port's fault, so the port goes unmentioned
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ProductganError, match="Cannot listen on 127.0.0.1:.*choose another --port"):
            check_port("127.0.0.1", taken.getsockname()[1])
    with pytest.raises(UsageError, match="--port must be between 0"):
        check_port("127.0.0.1", 99999)


def test_a_missing_fastapi_is_named_with_the_extra(conditional_export):
    """Without the serve extra the package and its other commands work, and serve says what to install."""
    script = (
        "import sys\n"
        "for name in ('fastapi', 'uvicorn', 'fastapi_offline'):\n"
        "    sys.modules[name] = None\n"
        "from productgan.cli import main\n"
        "from productgan.serve import create_app\n"
        f"sys.exit(main(['serve', {str(conditional_export)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert (
        "productgan serve needs FastAPI, uvicorn and fastapi-offline: pip install 'productgan[serve]'." in done.stderr
    )


def damaged_run(folder, config_text: str):
    """A run folder that serves images (the export of ``export``) and whose config.yaml holds
    ``config_text``."""
    export(folder / "generator", conditional=True)
    (folder / "config.yaml").write_text(config_text)
    return folder


def assert_index_problem(client, reason: str) -> None:
    """Every route over the training data answers 404 and the one sentence that names ``reason``."""
    photo = io.BytesIO()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(photo, format="PNG")
    answers = [
        client.get("/neighbours.json", params={"of": "0:1"}),
        client.get("/neighbours.png", params={"of": "0:1"}),
        client.get("/training/0.png"),
        client.post("/project", files={"photo": ("photo.png", photo.getvalue(), "image/png")}),
    ]
    for answer in answers:
        assert answer.status_code == 404, answer.text
        detail = answer.json()["detail"]
        assert detail.startswith("The run's training images cannot be compared with (") and reason in detail, detail
        assert detail.endswith("nearest training images and projection are off.")


def test_a_damaged_run_folder_gets_one_sentence_not_a_500(tmp_path):
    run = damaged_run(tmp_path / "run", "data: " + "[" * 20_000 + "]" * 20_000 + "\n")
    with TestClient(create_app(run)) as client:  # the start-up warm-up meets the problem first
        assert client.get("/images.png", params={"n": 2}).status_code == 200  # the generator still serves
        assert_index_problem(client, "config.yaml")


@pytest.mark.parametrize(
    "error, reason",
    [
        (RuntimeError("boom\nmore"), "the run folder seems damaged: RuntimeError: boom"),
        (RecursionError("maximum recursion depth exceeded"), "RecursionError: maximum recursion depth exceeded"),
        (ValueError(""), "the run folder seems damaged: ValueError)"),
        (MemoryError(), "there is not enough free memory to build it"),
    ],
)
def test_any_error_building_the_index_is_one_sentence(tmp_path, monkeypatch, error, reason):
    from productgan.serve.service import NeighbourIndex

    calls = []

    def fail(*args, **kwargs):
        calls.append(args)
        raise error

    monkeypatch.setattr(NeighbourIndex, "from_run", fail)
    client = TestClient(create_app(damaged_run(tmp_path / "run", "a: 1\n")))
    assert_index_problem(client, reason)
    assert len(calls) == 1  # the sentence is kept: the folder is not read again per request


def test_a_server_fault_is_a_500_with_the_security_headers(conditional_export, monkeypatch):
    app = create_app(conditional_export)
    monkeypatch.setattr(app.state.service, "make", lambda images: 1 / 0)
    response = TestClient(app, raise_server_exceptions=False).get("/images.png", params={"n": 1})
    assert response.status_code == 500 and response.json()["detail"].startswith("The server failed")
    assert response.headers["x-content-type-options"] == "nosniff" and "content-security-policy" in response.headers


def test_headers_past_16_kib_are_refused_with_431(client):
    assert client.get("/health", headers={"X-Note": "a" * 15_000}).status_code == 200
    refused = client.get("/health", headers={"X-Note": "a" * 17_000})
    assert refused.status_code == 431 and "this server reads at most 16,384" in refused.json()["detail"]
    assert refused.headers["x-frame-options"] == "DENY"
