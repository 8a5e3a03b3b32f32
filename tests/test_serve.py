"""productgan serve: the REST API and page give the sampler's images, and bad requests one sentence."""

from __future__ import annotations

import io
import socket
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from productgan.cli import main
from productgan.config import ModelConfig
from productgan.errors import ProductganError, UsageError
from productgan.images import make_grid
from productgan.models import Generator, init_weights
from productgan.sampling import export_generator, load_generator

pytest.importorskip("fastapi")
TestClient = pytest.importorskip("fastapi.testclient").TestClient  # needs httpx2 (the dev extra)

from productgan.serve import create_app  # noqa: E402
from productgan.serve.app import check_port  # noqa: E402

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


def export(folder, conditional: bool):
    torch.manual_seed(0)
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
    return export_generator(generator.eval(), folder, INFO)


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
    assert client.get("/health").json() == {"status": "ok"}


def test_api_description_and_head_requests(client):
    schema = client.get("/openapi.json")  # what /docs renders
    assert schema.status_code == 200
    assert {"/", "/health", "/info", "/images.png", "/images.npy", "/image.png"} <= set(schema.json()["paths"])
    for path in ("/health", "/", "/images.png?n=2"):
        assert client.head(path).status_code == 200, path


def test_npy_and_png_are_the_samplers_images(client, conditional_export):
    sampler = load_generator(conditional_export)
    expected = sampler(n=12, seed=5, label="Bag").numpy()
    response = client.get("/images.npy", params={"n": 12, "seed": 5, "label": "bag"})
    assert response.status_code == 200
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
    assert (
        'src="/images.png?n=5&amp;seed=2&amp;temperature=1.7"'
        in client.get("/", params={"n": 5, "seed": 2, "temperature": 1.7}).text
    )


def test_one_image_is_that_row_of_its_seed(client, conditional_export):
    batch = load_generator(conditional_export)(n=7, seed=3, label="Sneaker").numpy()
    single = png(client.get("/image.png", params={"seed": 3, "index": 6, "label": "Sneaker"}))
    assert np.array_equal(single, batch[6, 0])
    mixed = load_generator(conditional_export)(n=7, seed=3).numpy()  # image i of class i mod 10
    assert np.array_equal(png(client.get("/image.png", params={"seed": 3, "index": 4})), mixed[4, 0])


@pytest.mark.parametrize(
    "path, params, sentence",
    [
        ("/images.png", {"n": 0}, "n must be between 1 and 64, not 0."),
        ("/images.npy", {"n": 65}, "n must be between 1 and 64, not 65."),
        ("/images.png", {"label": "Hat"}, "Unknown class 'Hat'"),
        ("/images.png", {"label": "10"}, "out of range"),
        ("/images.npy", {"size": "huge"}, "size must be 'native' or 'training'"),
        ("/image.png", {"index": 64}, "index must be between 0 and 63, not 64."),
        ("/", {"n": 1000}, "n must be between 1 and 64"),
        ("/images.png", {"temperature": 0}, "temperature must be above 0 and at most 4"),
        ("/image.png", {"temperature": "nan"}, "temperature must be above 0 and at most 4"),
        ("/images.npy", {"seed": -1}, "seed must be 0 or more, not -1."),
        ("/image.png", {"seed": -3}, "seed must be 0 or more, not -3."),
        ("/images.png", {"n": "many"}, "n: Input should be a valid integer"),
    ],
)
def test_bad_requests_get_422_and_one_sentence(client, path, params, sentence):
    response = client.get(path, params=params)
    assert response.status_code == 422
    assert sentence in response.json()["detail"]


def test_the_page_offers_every_category_and_shows_the_grid(client):
    page = client.get("/", params={"n": 8, "seed": 2, "label": "Ankle boot"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    for name in ["T-shirt/top", "Ankle boot", "every category in turn"]:
        assert name in text
    assert '<option value="Ankle boot" selected>' in text
    assert 'src="/images.png?n=8&amp;seed=2&amp;label=Ankle+boot"' in text
    # the form's "every category in turn" sends an empty label, which every request reads so
    assert 'src="/images.png?n=16&amp;seed=0"' in client.get("/", params={"label": ""}).text
    assert (
        client.get("/images.png", params={"n": 3, "label": ""}).content
        == client.get("/images.png", params={"n": 3}).content
    )
    assert (
        client.get("/image.png", params={"index": 2, "label": ""}).content
        == client.get("/image.png", params={"index": 2}).content
    )


def test_an_unconditional_generator_refuses_a_category(tmp_path):
    client = TestClient(create_app(export(tmp_path / "generator", conditional=False)))
    assert client.get("/info").json()["conditional"] is False
    assert "<select" not in client.get("/").text
    response = client.get("/images.png", params={"label": "Bag"})
    assert response.status_code == 422 and "not class-conditional" in response.json()["detail"]
    assert png(client.get("/images.png", params={"n": 4})).shape == (62, 62)


def test_serve_command_loads_then_runs_uvicorn(conditional_export, monkeypatch, capsys):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    assert main(["serve", str(conditional_export), "--port", "0", "--max-images", "8"]) == 0
    ((app, kwargs),) = calls
    assert kwargs["host"] == "127.0.0.1" and 0 < kwargs["port"] < 65536  # port 0: a free one, chosen and named
    assert TestClient(app).get("/info").json()["max_images"] == 8
    assert f"at http://127.0.0.1:{kwargs['port']}/" in capsys.readouterr().out


def test_serve_command_errors_are_one_sentence(tmp_path, conditional_export, monkeypatch, capsys):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: pytest.fail("must not start"))
    assert main(["serve", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(conditional_export), "--port", str(port)]) == 1
        err = capsys.readouterr().err
        assert f"Cannot listen on 127.0.0.1:{port}" in err and "choose another --port" in err
    assert main(["serve", str(conditional_export), "--max-images", "0"]) == 2
    assert "--max-images must be at least 1" in capsys.readouterr().err


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


def test_a_missing_fastapi_is_named_with_the_extra(monkeypatch, conditional_export):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    with pytest.raises(ProductganError, match=r"pip install 'productgan\[serve\]'"):
        create_app(conditional_export)
