"""The latent tools over REST: walks, variants, named images and zips give the CLI's bytes for the
same inputs; neighbours and projection answer from a run directory (404 from an export); an
upload is read in memory only; bad input gets 422 and one sentence."""

from __future__ import annotations

import base64
import io
import json
import tempfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from productgan.cli import main
from productgan.explore.commands import describe_fit
from productgan.explore.latent import point, render
from productgan.explore.neighbours import NeighbourIndex
from productgan.generator.sampler import load_generator

pytest.importorskip("fastapi")
TestClient = pytest.importorskip("fastapi.testclient").TestClient

from helpers import train_tiny_run  # noqa: E402
from test_serve import export, png  # noqa: E402

from productgan.serve import create_app  # noqa: E402


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    return export(tmp_path_factory.mktemp("explore") / "generator", conditional=True)


@pytest.fixture(scope="module")
def client(generator):
    return TestClient(create_app(generator, max_images=64))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("explore-run"))


@pytest.fixture(scope="module")
def run_client(run):
    return TestClient(create_app(run, max_images=16, max_projection_steps=20))


def photo_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["gif", "webp", "png", "npy"])
def test_a_walk_is_the_bytes_interpolate_writes(client, generator, tmp_path, fmt):
    out = tmp_path / f"walk.{fmt}"
    flags = ["--from", "7:3", "--via", "9:1", "--to", "7:5:Sandal", "--frames", "9", "--fps", "8", "--scale", "3"]
    assert main(["interpolate", str(generator), *flags, "--out", str(out)]) == 0
    params = [("from", "7:3"), ("via", "9:1"), ("to", "7:5:Sandal"), ("frames", 9), ("fps", 8), ("scale", 3)]
    response = client.get(f"/walk.{fmt}", params=params)
    assert response.status_code == 200, response.text
    assert response.content == out.read_bytes()
    media = {"gif": "image/gif", "webp": "image/webp", "png": "image/png", "npy": "application/octet-stream"}
    assert response.headers["content-type"] == media[fmt] and response.headers["etag"]
    again = client.get(f"/walk.{fmt}", params=params, headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304


def test_variants_are_the_bytes_variants_writes_and_are_named(client, generator, tmp_path):
    flags = ["--of", "7:3", "--n", "6", "--spread", "0.4", "--seed", "2", "--label", "Bag"]
    for suffix in ("png", "npy"):
        out = tmp_path / f"more.{suffix}"
        assert main(["variants", str(generator), *flags, "--out", str(out)]) == 0
        query = {"of": "7:3", "n": 6, "spread": 0.4, "seed": 2, "label": "Bag"}
        assert client.get(f"/variants.{suffix}", params=query).content == out.read_bytes(), suffix
    listed = client.get("/variants.json", params=query).json()
    assert listed["of"] == "7:3" and len(listed["variants"]) == 6
    assert all(
        v["name"].startswith("z:") and v["name"].endswith(":Bag") and v["category"] == "Bag" for v in listed["variants"]
    )
    # each name gives its row of the .npy, through /named.png as well
    images = np.load(tmp_path / "more.npy")
    for row, variant in enumerate(listed["variants"]):
        assert np.array_equal(png(client.get("/named.png", params={"name": variant["name"]})), images[row, 0])
    # and a variant can be varied and walked from in turn
    name = listed["variants"][0]["name"]
    assert client.get("/variants.json", params={"of": name, "n": 2}).status_code == 200
    assert client.get("/walk.gif", params={"from": name, "to": "1:1"}).status_code == 200


def test_a_named_image_is_the_samplers_enlarged_pixel_for_pixel(client, generator):
    sampler = load_generator(generator)
    expected = render(sampler, [point(sampler, "5:2:Coat@0.8")]).numpy()[0, 0]
    assert np.array_equal(png(client.get("/named.png", params={"name": "5:2:Coat@0.8"})), expected)
    large = png(client.get("/named.png", params={"name": "5:2:Coat@0.8", "scale": 4}))
    assert large.shape == (4 * 28, 4 * 28) and np.array_equal(large[::4, ::4], expected)


def test_a_grid_as_a_zip_is_generates_folder(client, generator, tmp_path):
    out = tmp_path / "folder"
    assert (
        main(["generate", str(generator), "--n", "12", "--seed", "4", "--temperature", "0.9", "--out", str(out)]) == 0
    )
    response = client.get("/images.zip", params={"n": 12, "seed": 4, "temperature": 0.9})
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        files = sorted(p.name for p in out.iterdir())
        assert sorted(entry["file"] for entry in manifest["images"]) == files
        for entry in manifest["images"]:
            assert np.array_equal(
                np.asarray(Image.open(io.BytesIO(archive.read(entry["file"])))),
                np.asarray(Image.open(out / entry["file"])),
            )
        third = manifest["images"][3]
        assert third == {"file": third["file"], "name": "4:3:Dress@0.9", "category": "Dress"}
    assert client.get("/images.zip", params={"n": 12, "seed": 4, "temperature": 0.9}).content == response.content


def test_a_selection_as_a_zip(client):
    names = ["3:1:Bag", "0:0", "2:5@1.5"]
    response = client.post("/selection.zip", json={"names": names})
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert [(e["name"], e["category"]) for e in manifest["images"]] == [
            ("3:1:Bag", "Bag"),
            ("0:0", "T-shirt/top"),
            ("2:5@1.5", "Sandal"),
        ]
        for entry in manifest["images"]:
            named = client.get("/named.png", params={"name": entry["name"]}).content
            assert archive.read(entry["file"]) == named
    for body, sentence in [
        (b"[1, 2]", "The body must be JSON"),
        (json.dumps({"names": []}).encode(), "names must list between 1 and 64"),
        (json.dumps({"names": ["/etc/passwd.npy"]}).encode(), "names[0] '/etc/passwd.npy' names no image"),
    ]:
        refused = client.post("/selection.zip", content=body, headers={"Content-Type": "application/json"})
        assert refused.status_code == 422 and refused.json()["detail"].startswith(sentence), refused.text
    huge = client.post("/selection.zip", content=b" " * (4 * 2**20 + 1), headers={"Content-Type": "application/json"})
    assert huge.status_code == 413 and "at most 4,194,304" in huge.json()["detail"]


@pytest.mark.parametrize(
    "path, params, sentence",
    [
        ("/named.png", {"name": "walk/latent.npy:Bag"}, "name 'walk/latent.npy:Bag' names no image"),
        ("/named.png", {"name": "z:AAAA:Bag"}, "name 'z:AAAA:Bag' names no image"),
        ("/named.png", {"name": "z:" + "_" * 43 + ":Bag"}, "NaN or infinite"),
        ("/named.png", {"name": "99999999999999999999:1"}, "names no image"),
        ("/named.png", {"name": "9999999999999999999:1"}, "the seed must be below 2**63"),
        ("/walk.gif", {"from": "1:1", "to": "1:2", "frames": 1}, "frames must be a whole number between 2 and 120"),
        ("/walk.gif", {"from": "1:1", "to": "1:2", "fps": 0.01}, "fps must be a number from 0.1 to 60"),
        ("/walk.gif", {"from": "1:1"}, "to is required."),
        ("/variants.png", {"of": "1:1", "spread": 0}, "spread must be a number above 0 and at most 1"),
        ("/variants.png", {"of": "1:1", "label": "Hat"}, "Unknown class 'Hat'; this generator knows: T-shirt/top"),
    ],
)
def test_bad_input_gets_422_and_one_sentence(client, path, params, sentence):
    response = client.get(path, params=params)
    assert response.status_code == 422 and sentence in response.json()["detail"], response.text


def test_from_an_export_the_run_tools_say_they_need_the_run(client):
    for response in (
        client.get("/neighbours.json", params={"of": "1:1"}),
        client.get("/neighbours.png", params={"of": "1:1"}),
        client.get("/training/3.png"),
        client.post("/project", files={"photo": ("p.png", photo_bytes(np.zeros((8, 8), np.uint8)))}),
    ):
        assert response.status_code == 404 and "need the run directory" in response.json()["detail"]


def test_neighbours_are_the_librarys_and_training_images_are_served(run, run_client):
    sampler = load_generator(run)
    index = NeighbourIndex.from_run(run)
    names = ["2:1", "2:4:Bag"]
    images = render(sampler, [point(sampler, name) for name in names]).numpy()
    expected = index.query(images, 3)
    answer = run_client.get("/neighbours.json", params=[("of", names[0]), ("of", names[1]), ("k", 3)]).json()
    assert answer["images"] == [{"name": n, **record} for n, record in zip(names, expected.records())]
    assert answer["copy_threshold"] == pytest.approx(expected.threshold)
    first = answer["images"][0]["neighbours"][0]["index"]
    assert np.array_equal(png(run_client.get(f"/training/{first}.png")), index.images(np.array([first]))[0, 0])
    held_out = int(index.dataset.indices("val")[0])
    missing = run_client.get(f"/training/{held_out}.png")
    assert missing.status_code == 404 and f"Image {held_out} is not one of the run's training images" in missing.text
    sheet = run_client.get("/neighbours.png", params={"of": names, "k": 3})
    assert sheet.status_code == 200 and png(sheet).shape[2] == 3


def test_a_photo_is_projected_in_memory(run, run_client, monkeypatch):
    # no temporary file may be made while the upload is read: the parts that would spool one fail
    import starlette.formparsers

    def refuse(*args, **kwargs):
        raise AssertionError("a temporary file was made for the upload")

    for name in ("SpooledTemporaryFile", "NamedTemporaryFile", "TemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", refuse)
    rng = np.random.default_rng(1)
    photo = photo_bytes(rng.integers(0, 256, (1100, 1000), dtype=np.uint8))  # over 1 MiB: Starlette would spool it
    assert len(photo) > 2**20
    response = run_client.post("/project", params={"steps": 5, "restarts": 2}, files={"photo": ("p.png", photo)})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["name"].startswith("z:") and result["label"] in result["per_class_loss"]
    assert result["verdict"] == describe_fit(result["feature_distance"], result["typical_real_distance"])
    reconstruction = np.asarray(Image.open(io.BytesIO(base64.b64decode(result["reconstruction"].split(",", 1)[1]))))
    assert np.array_equal(png(run_client.get("/named.png", params={"name": result["name"]})), reconstruction)
    assert result["target"].startswith("data:image/png;base64,")


@pytest.mark.parametrize(
    "files, headers, sentence",
    [
        ({"photo": ("notes.txt", b"words, not pixels")}, None, "The photo cannot be used: it is not an image"),
        ({"picture": ("p.png", b"x")}, None, "The form has no field 'photo'"),
        (None, {"Content-Type": "application/json"}, "Send the photo as multipart/form-data"),
    ],
)
def test_a_bad_upload_gets_one_sentence(run_client, files, headers, sentence):
    response = run_client.post("/project", files=files, headers=headers, content=None if files else b"{}")
    assert response.status_code == 422 and response.json()["detail"].startswith(sentence), response.text


def test_a_huge_photo_is_refused_by_its_header(run_client):
    bomb = io.BytesIO()
    Image.new("L", (8000, 7000)).save(bomb, format="PNG")  # 56 megapixels, a few KiB compressed
    response = run_client.post("/project", files={"photo": ("bomb.png", bomb.getvalue())})
    assert response.status_code == 422 and "8,000 x 7,000 pixels" in response.json()["detail"]
    large = run_client.post(
        "/project", content=b"-" * (21 * 2**20), headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert large.status_code == 413
