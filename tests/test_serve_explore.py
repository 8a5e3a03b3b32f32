"""The latent tools over REST: walks, variants, named images and zips give the CLI's bytes for the
same inputs; neighbours and projection answer from a run directory (404 from an export); an
upload is read in memory only; bad input gets 422 and one sentence."""

from __future__ import annotations

import base64
import io
import json
import tempfile
import zipfile
from time import perf_counter

import numpy as np
import pytest
import torch
from PIL import Image

from productgan.cli import main
from productgan.config import ModelConfig
from productgan.errors import UsageError
from productgan.explore.latent import render
from productgan.explore.names import DEFAULT_SPREAD, point, vector_name
from productgan.explore.neighbours import NeighbourIndex
from productgan.generator.directions import LONGEST_EDITS
from productgan.generator.export import write_export
from productgan.generator.sampler import load_generator
from productgan.models import Generator, init_weights

pytest.importorskip("fastapi")
TestClient = pytest.importorskip("fastapi.testclient").TestClient

from helpers import train_tiny_run  # noqa: E402
from test_serve import INFO, export, png  # noqa: E402

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
    # short handles (explore.latent.variant_names), each the pixels of its variant
    assert [v["name"] for v in listed["variants"]] == [f"7:3~0.4/2#{i}:Bag" for i in range(6)]
    assert all(v["category"] == "Bag" for v in listed["variants"])
    # each name gives its row of the .npy, through /named.png as well
    images = np.load(tmp_path / "more.npy")
    for row, variant in enumerate(listed["variants"]):
        assert np.array_equal(png(client.get("/named.png", params={"name": variant["name"]})), images[row, 0])
    # and a variant can be varied and walked from in turn
    name = listed["variants"][0]["name"]
    assert client.get("/variants.json", params={"of": name, "n": 2}).status_code == 200
    assert client.get("/walk.gif", params={"from": name, "to": "1:1"}).status_code == 200


def test_variants_default_to_the_measured_spread(client, generator, tmp_path):
    out = tmp_path / "more.png"
    assert main(["variants", str(generator), "--of", "7:3", "--n", "4", "--out", str(out)]) == 0
    assert client.get("/variants.png", params={"of": "7:3", "n": 4}).content == out.read_bytes()
    listed = client.get("/variants.json", params={"of": "7:3", "n": 4}).json()
    assert listed["spread"] == DEFAULT_SPREAD
    assert [v["name"] for v in listed["variants"]] == [f"7:3~{DEFAULT_SPREAD:g}/0#{i}" for i in range(4)]
    description = client.get("/openapi.json").json()["paths"]
    for path in ("/variants.png", "/variants.npy", "/variants.json"):
        (spread,) = (p for p in description[path]["get"]["parameters"] if p["name"] == "spread")
        assert spread["schema"]["default"] == DEFAULT_SPREAD, path


def test_variants_of_variants_nest_four_deep_then_go_by_vector(client):
    name = "7:3:Bag@0.8"
    for depth in range(1, 5):  # each level named by its handle, and read back
        name = client.get("/variants.json", params={"of": name, "n": 2, "seed": depth}).json()["variants"][1]["name"]
        assert name.count("~") == depth and name.endswith(f"~0.5/{depth}#1"), name
        assert client.get("/named.png", params={"name": name}).status_code == 200
    deeper = client.get("/variants.json", params={"of": name, "n": 3}).json()["variants"]
    assert all(v["name"].startswith("z:") and v["name"].endswith(":Bag") for v in deeper)
    images = np.load(io.BytesIO(client.get("/variants.npy", params={"of": name, "n": 3}).content))
    for row, variant in enumerate(deeper):
        assert np.array_equal(png(client.get("/named.png", params={"name": variant["name"]})), images[row, 0])
    too_deep = f"{name}~0.5/0#0"
    for path, params in (("/named.png", {"name": too_deep}), ("/variants.json", {"of": too_deep})):
        response = client.get(path, params=params)
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert "is a variant of variants 5 deep, and this API reads them at most 4 deep" in detail
        assert detail.endswith("; use the z: name /variants.json gives for a variant that deep.")


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
        ("/named.png", {"name": "1:1~0.5/0#1024"}, "the variant below 1024"),
        ("/named.png", {"name": "1:1~0/0#1"}, "name '1:1~0/0#1' names no image"),
        ("/named.png", {"name": "1:1~0.5/0#1:Hat"}, "names no image"),
        ("/named.png", {"name": "x.npy~0.5/0#1"}, "names no image"),
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
    # noise is no product: the verdict says so first, and gives no match
    assert result["verdict"].startswith("Does not look like the training data: ") and result["match"] is None
    assert result["likeness"]["looks_like_training_data"] is False and result["likeness"]["unlike_because"]
    reconstruction = np.asarray(Image.open(io.BytesIO(base64.b64decode(result["reconstruction"].split(",", 1)[1]))))
    assert np.array_equal(png(run_client.get("/named.png", params={"name": result["name"]})), reconstruction)
    assert result["target"].startswith("data:image/png;base64,")


def test_a_projection_is_the_clis_record_and_vector(run, run_client, tmp_path):
    """The API's answer for a photo is `productgan project`'s projection.json, field for field, and its
    name the vector of latent.npy: one projection (project_photo) with one verdict."""
    photo = np.full((48, 40), 250, np.uint8)  # a dark product on white: the fitting inverts it
    photo[10:40, 12:30] = 40
    (tmp_path / "photo.png").write_bytes(photo_bytes(photo))
    out = tmp_path / "projected"
    flags = ["--steps", "4", "--restarts", "2", "--seed", "3", "--label", "Bag"]
    assert main(["project", str(run), str(tmp_path / "photo.png"), "--out", str(out), *flags]) == 0
    record = json.loads((out / "projection.json").read_text())
    query = {"steps": 4, "restarts": 2, "seed": 3, "label": "bag"}
    response = run_client.post("/project", params=query, files={"photo": ("photo.png", photo_bytes(photo))})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert {key: answer[key] for key in record if key != "ref"} == {k: v for k, v in record.items() if k != "ref"}
    assert answer["name"] == vector_name(torch.from_numpy(np.load(out / "latent.npy")), "Bag")
    assert answer["fit"]["inverted"] is True and "it was inverted" in answer["verdict"]
    assert answer["expected"] == "light products on a black background, 28x28 grey"
    assert answer["match"] in (None, "close", "good", "loose", "poor") and answer["steps_done"] == 4
    first = "Does not look like the training data: " if answer["match"] is None else f"{answer['match']} match as Bag: "
    assert answer["verdict"].lower().startswith(first.lower())
    reconstruction = (out / "reconstruction.png").read_bytes()
    assert base64.b64decode(answer["reconstruction"].split(",", 1)[1]) == reconstruction


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


@pytest.fixture(scope="module")
def budget_client(run):
    """A run's server that allows 1,000 steps and gives a projection half a second."""
    return TestClient(create_app(run, max_images=16, projection_seconds=0.5))


def test_a_projection_answers_its_best_fit_when_its_time_runs_out(budget_client):
    photo = photo_bytes(np.random.default_rng(2).integers(0, 256, (40, 40), dtype=np.uint8))
    start = perf_counter()
    response = budget_client.post(
        "/project", params={"steps": 1000, "restarts": 8, "label": "Bag"}, files={"photo": ("p.png", photo)}
    )
    took = perf_counter() - start
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["stopped_early"] is True and 1 <= result["steps_done"] < 1000, result["steps_done"]
    assert result["name"].startswith("z:") and took < 5
    quick = budget_client.post("/project", params={"steps": 2, "restarts": 1}, files={"photo": ("p.png", photo)})
    assert quick.json()["stopped_early"] is False and quick.json()["steps_done"] == 2


def test_a_projection_beyond_the_work_bound_is_refused_before_its_photo_is_read(budget_client):
    refused = budget_client.post(
        "/project", params={"steps": 1000, "restarts": 8}, content=b"{}", headers={"Content-Type": "text/plain"}
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"] == (
        "steps x restarts x categories tried must be at most 20,000, not 1,000 x 8 x 10 = 80,000 (10 categories); "
        "ask for fewer steps or restarts, or one category with label."
    )
    one = budget_client.post("/project", params={"steps": 1000, "restarts": 8, "label": "Bag"}, content=b"{}")
    assert one.status_code == 422 and one.json()["detail"].startswith("Send the photo as multipart/form-data")


def test_the_form_is_read_up_to_the_photo_only():
    from productgan.serve.uploads import form_file

    photo = b'--x\r\nContent-Disposition: form-data; name="photo"; filename="p.png"\r\n\r\nPIXELS\r\n'
    assert form_file(photo + b"--x\r\n" + b"garbage" * 1000, "multipart/form-data; boundary=x", "photo") == b"PIXELS"
    note = b'--x\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n'
    assert form_file(note * 8 + photo + b"--x--\r\n", "multipart/form-data; boundary=x", "photo") == b"PIXELS"
    with pytest.raises(UsageError, match="more than 8 parts before a field 'photo'"):
        form_file(note * 9 + photo + b"--x--\r\n", "multipart/form-data; boundary=x", "photo")


def test_json_nested_deeper_than_the_parser_goes_is_a_422_with_the_headers(client):
    for depth in (1_000, 100_000):
        body = b'{"names": ' + b"[" * depth + b"]" * depth + b"}"
        response = client.post("/selection.zip", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422 and response.json()["detail"].startswith("The body must be JSON")
        assert response.headers["x-content-type-options"] == "nosniff" and response.headers["x-frame-options"]


def test_the_query_cap_admits_the_most_names_a_route_describes(tmp_path):
    """At nz 100, the 2 KiB query cap admitted 3 z: names where the description allows 16."""
    torch.manual_seed(0)
    generator = Generator(ModelConfig(nz=100, ngf=4, conditional=True), 32, 1, num_classes=10)
    init_weights(generator)
    wide = TestClient(create_app(write_export(generator.eval(), tmp_path / "nz100", INFO), max_images=16))
    base = vector_name(torch.randn(100, generator=torch.Generator().manual_seed(0)), "T-shirt/top")
    variants = wide.get("/variants.json", params={"of": base, "n": 16}).json()["variants"]
    names = [variant["name"] for variant in variants]  # the longest names: z: (a vector's) and the longest category
    assert len(names[0]) > 540 and names[0].endswith(":T-shirt/top")
    description = wide.get("/openapi.json").json()["paths"]
    (of,) = (p for p in description["/neighbours.json"]["get"]["parameters"] if p["name"] == "of")
    assert of["schema"]["maxItems"] == 16
    # neighbours need a run (404), but the query of 16 names is read: not 414
    neighbours = wide.get("/neighbours.json", params=[("of", name) for name in names])
    assert neighbours.status_code == 404, neighbours.text
    walk = wide.get("/walk.png", params=[("from", names[0]), *[("via", name) for name in names[1:9]], ("to", names[9])])
    assert walk.status_code == 200, walk.text
    assert wide.get("/named.png", params={"name": names[0]}).status_code == 200
    too_many = wide.get("/images.png", params={"label": "x" * 2100})
    assert too_many.status_code == 414 and "at most 2,048" in too_many.json()["detail"]
    # the longest name the description allows: a z: name varied 4 times, each at the longest spread, seed and
    # index, then the longest edits
    deep = names[0] + ("~0." + "9" * 30 + f"/{2**63 - 1}#1023:T-shirt/top") * 4
    deepest = deep + "^" + LONGEST_EDITS
    read = wide.get("/neighbours.json", params=[("of", deepest)] * 16)  # read, and refused for having no directions
    assert read.status_code == 422 and "productgan directions" in read.json()["detail"], read.text
    walk = wide.get("/walk.npy", params=[("from", deep), *[("via", deep)] * 8, ("to", deep), ("frames", 2)])
    assert walk.status_code == 200, walk.text
    beyond = wide.get("/neighbours.json", params=[("of", deepest)] * 20)
    assert beyond.status_code == 414
