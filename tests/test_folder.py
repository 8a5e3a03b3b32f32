"""productgan prepare on folders of product photos: every odd input is built here, on the fly."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_config
from PIL import Image

from productgan.cli import main
from productgan.data import PackedDataset
from productgan.data import folder as folder_module
from productgan.data import photos as photos_module
from productgan.data.folder import parse_split, prepare_folder, split_by_class
from productgan.data.photos import Options, load_image, parse_background
from productgan.errors import ProductganError, UsageError
from productgan.train import train

WHITE, RED, BLUE = (255, 255, 255), (255, 0, 0), (0, 0, 255)


def save(image: Image.Image, path: Path, **params) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **params)
    return path


def half_and_half(size=(40, 20), left=RED, right=BLUE) -> Image.Image:
    image = Image.new("RGB", size, left)
    image.paste(Image.new("RGB", (size[0] // 2, size[1]), right), (size[0] // 2, 0))
    return image


@pytest.fixture
def photos(tmp_path) -> Path:
    """Three class folders of odd files, an empty class folder, and strays at the top."""
    src = tmp_path / "photos"
    shoes, bags, hats = src / "shoes", src / "bags", src / "hats"
    for i in range(4):  # plain images of each kind, different content
        save(half_and_half(left=(40 * i, 200, 0)), shoes / f"plain-{i}.png")
        save(Image.new("RGB", (30, 50), (0, 30 * i, 200)), bags / f"plain-{i}.jpg", quality=95)
    save(Image.new("RGB", (20, 20), (10, 10, 10)), shoes / "small.webp")
    # EXIF orientation 6: stored 40 wide x 20 high, upright 20 wide x 40 high.
    exif = Image.Exif()
    exif[0x0112] = 6
    save(Image.new("RGB", (40, 20), (0, 0, 0)), shoes / "rotated.jpg", exif=exif.tobytes(), quality=95)
    # Transparent cut-out: left half fully transparent, right half opaque red.
    cutout = Image.new("RGBA", (20, 20), (0, 255, 0, 0))
    cutout.paste(Image.new("RGBA", (10, 20), (255, 0, 0, 255)), (10, 0))
    save(cutout, bags / "cutout.png")
    save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), bags / "cmyk.jpg", quality=95)
    save(Image.fromarray(np.full((16, 16), 32896, np.uint16)), bags / "sixteen-bit.png")  # 128 * 257
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    save(palette, bags / "palette.gif", transparency=0)
    save(Image.new("L", (16, 16), 90), shoes / "chaussure-été-👟.png")  # unicode name, grey
    (shoes / "text.jpg").write_text("this is not a picture")
    (shoes / "empty.png").write_bytes(b"")
    good = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(good, "JPEG", quality=90)
    (bags / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    os.symlink(src / "missing.png", shoes / "dangling.png")  # unreadable: points nowhere
    shutil.copy(shoes / "plain-1.png", bags / "copy-of-a-shoe.png")  # exact duplicate
    (shoes / "notes.txt").write_text("shot on a phone")
    (shoes / ".DS_Store").write_bytes(b"\0")
    hats.mkdir()
    save(Image.new("RGB", (16, 16), RED), src / "stray.png")
    return src


@pytest.fixture
def packed(photos, tmp_path) -> Path:
    return prepare_folder(photos, tmp_path / "packed", size=32, split="0.5,0.25,0.25", workers=1, progress=False)


def reasons(packed: Path) -> dict[str, str]:
    meta = json.loads((packed / "dataset.json").read_text())["meta"]
    return {entry["file"]: entry["reason"] for entry in meta["skipped"]}


def test_every_bad_file_is_skipped_with_its_reason(packed):
    found = reasons(packed)
    assert found["shoes/text.jpg"] == "not an image Pillow can read"
    assert found["shoes/empty.png"] == "empty file"
    assert found["bags/truncated.jpg"].startswith("damaged or truncated")
    assert found["shoes/dangling.png"].startswith("unreadable")
    assert found["shoes/notes.txt"] == "not an image file type (.txt)"
    assert found["shoes/.DS_Store"] == "hidden file"
    assert found["stray.png"].startswith("not inside a class folder")
    assert len(found) == 7


def test_classes_duplicates_and_empty_folders_are_recorded(packed):
    info = json.loads((packed / "dataset.json").read_text())
    meta = info["meta"]
    assert info["class_names"] == ["bags", "shoes"]
    assert meta["empty_class_folders"] == ["hats"]
    assert meta["duplicates_dropped"] == 1
    assert meta["duplicates"] == [{"file": "shoes/plain-1.png", "duplicate_of": "bags/copy-of-a-shoe.png"}]
    dataset = PackedDataset.load(packed)
    assert dataset.images.shape == (len(dataset), 3, 32, 32) and len(dataset) == 15
    # bags: 4 plain + 4 odd modes + the copy (kept: first in walk order); shoes: 3 plain + 3 others
    assert np.bincount(dataset.labels).tolist() == [9, 6]
    assert meta["files_found"] == 15 + 7 + 1
    for label in (0, 1):  # every split has each class
        assert set(np.unique(dataset.split[dataset.labels == label])) == {0, 1, 2}


def image_of(packed: Path, name: str, tmp_path: Path) -> np.ndarray:
    """The image prepare makes of source file ``name`` with the dataset's settings."""
    meta = json.loads((packed / "dataset.json").read_text())["meta"]
    data = (Path(meta["source_folder"]) / name).read_bytes()
    return load_image(data, Options(32, 3, meta["fit"], tuple(meta["background"])))


def test_exif_orientation_is_applied(packed, tmp_path):
    image = image_of(packed, "shoes/rotated.jpg", tmp_path)
    # Upright the photo is tall: white padding at the left and right, the black product between.
    assert (image[:, :, :4] >= 250).all() and (image[:, :, -4:] >= 250).all()
    assert (image[:, 8:24, 12:20] <= 5).all()


def test_transparent_pixels_sit_on_the_background(packed, tmp_path):
    image = image_of(packed, "bags/cutout.png", tmp_path)
    assert (image[:, 4:28, 2:12] == 255).all()  # transparent half: white, not the hidden green
    assert (image[0, 4:28, 20:30] >= 250).all() and (image[1:, 4:28, 20:30] <= 5).all()  # opaque red


def test_cmyk_sixteen_bit_and_palette_images_convert(packed, tmp_path):
    red = image_of(packed, "bags/cmyk.jpg", tmp_path).reshape(3, -1).mean(axis=1)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    grey = image_of(packed, "bags/sixteen-bit.png", tmp_path)
    assert np.abs(grey.astype(int) - 128).max() <= 1  # scaled from 16 bits, not clipped to white
    palette = image_of(packed, "bags/palette.gif", tmp_path)
    assert (palette[:, 10:20, 10:20] == [[[0]], [[200]], [[0]]]).all()


def test_crop_fit_and_grey_output(photos, tmp_path):
    out = prepare_folder(
        photos, tmp_path / "grey", size=32, channels=1, fit="crop", split="0.5,0.25,0.25", workers=1, progress=False
    )
    dataset = PackedDataset.load(out)
    assert dataset.images.shape[1:] == (1, 32, 32)
    assert json.loads((out / "dataset.json").read_text())["meta"]["fit"] == "crop"


def test_no_labels_puts_everything_in_one_class(photos, tmp_path):
    out = prepare_folder(photos, tmp_path / "one", size=32, labels=False, workers=1, progress=False)
    dataset = PackedDataset.load(out)
    assert dataset.class_names == ["all"] and len(dataset) == 16  # the stray counts now


def test_worker_processes_give_the_same_dataset(tmp_path):
    src = tmp_path / "many"
    rng = np.random.default_rng(0)
    for i in range(70):
        save(Image.fromarray(rng.integers(0, 256, (12, 18, 3), dtype=np.uint8)), src / f"c{i % 2}" / f"{i}.png")
    one = prepare_folder(src, tmp_path / "one", size=32, workers=1, progress=False)
    two = prepare_folder(src, tmp_path / "two", size=32, workers=2, progress=False)
    a, b = PackedDataset.load(one), PackedDataset.load(two)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.split, b.split)


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    src = tmp_path / "src"
    for i in range(3):
        save(Image.new("RGB", (8, 8), (i, 0, 0)), src / "a" / f"{i}.png")
    save(Image.new("RGB", (100, 100)), src / "a" / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 100x100 is over twice the limit
    out = prepare_folder(src, tmp_path / "out", size=32, workers=1, progress=False)
    assert reasons(out)["a/huge.png"].startswith("too large")


def test_existing_output_is_kept_and_interrupts_leave_nothing(photos, packed, tmp_path, monkeypatch):
    before = (packed / "images.npy").read_bytes()
    with pytest.raises(ProductganError, match="--overwrite"):
        prepare_folder(photos, packed, size=32, workers=1, progress=False)
    calls = []

    def interrupted(task):
        calls.append(task)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return original(task)

    original = folder_module.decode_file
    monkeypatch.setattr(folder_module, "decode_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_folder(photos, packed, size=32, split="0.5,0.25,0.25", workers=1, progress=False, overwrite=True)
    assert (packed / "images.npy").read_bytes() == before
    assert sorted(p.name for p in packed.parent.iterdir() if p.name.startswith(".")) == []  # no staging left


def test_too_few_images_for_the_split_is_a_clear_error(tmp_path):
    src = tmp_path / "src"
    save(Image.new("RGB", (8, 8), RED), src / "rare" / "only.png")
    for i in range(5):
        save(Image.new("RGB", (8, 8), (i, i, i)), src / "common" / f"{i}.png")
    with pytest.raises(UsageError, match="Class 'rare' has 1 usable image"):
        prepare_folder(src, tmp_path / "out", workers=1, progress=False)
    assert not (tmp_path / "out").exists()
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    with pytest.raises(UsageError, match="holds no image files"):
        prepare_folder(empty, tmp_path / "out", workers=1, progress=False)
    flat = tmp_path / "flat"
    for i in range(3):
        save(Image.new("RGB", (8, 8), (i, i, i)), flat / f"{i}.png")
    with pytest.raises(UsageError, match="holds 3 file\\(s\\) but no class sub-folders; .* or pass --no-labels"):
        prepare_folder(flat, tmp_path / "out", workers=1, progress=False)


def test_split_is_stratified_seeded_and_exact():
    labels = np.repeat(np.arange(3), [10, 20, 7])
    split = split_by_class(labels, (0.8, 0.1, 0.1), seed=1, class_names=["a", "b", "c"])
    assert np.array_equal(split, split_by_class(labels, (0.8, 0.1, 0.1), 1, ["a", "b", "c"]))
    assert not np.array_equal(split, split_by_class(labels, (0.8, 0.1, 0.1), 2, ["a", "b", "c"]))
    counts = {c: np.bincount(split[labels == c], minlength=3).tolist() for c in range(3)}
    assert counts == {0: [8, 1, 1], 1: [16, 2, 2], 2: [5, 1, 1]}


def test_option_parsing():
    assert parse_background("white") == WHITE and parse_background("#FF0000") == RED
    assert parse_background("0, 0, 255") == BLUE
    with pytest.raises(UsageError, match="not a colour"):
        parse_background("sky")
    assert parse_split("0.7,0.2,0.1") == (0.7, 0.2, 0.1)
    for bad in ("0.5,0.5", "0.8,0.3,0.1", "0,0.5,0.5", "a,b,c"):
        with pytest.raises(UsageError, match="--split"):
            parse_split(bad)


def test_prepare_command_and_training_on_the_result(photos, tmp_path, capsys):
    out = tmp_path / "cli-packed"
    code = main(
        [
            "prepare",
            str(photos),
            "--out",
            str(out),
            "--size",
            "32",
            "--split",
            "0.5,0.25,0.25",
            "--workers",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert (
        "15 images of 32x32x3, 2 class(es)" in printed
        and "Skipped 7 file(s) or folder(s) and 1 exact duplicate(s)" in printed
    )
    assert "hats" in printed
    # Training straight from the photo folder points at prepare.
    assert main(["train", "--data", str(photos), "--out", str(tmp_path / "r0"), "--steps", "1"]) == 2
    assert "productgan prepare" in capsys.readouterr().err
    config = tiny_config(out, tmp_path / "run", steps=2, batch_size=4)
    config.model.conditional = True
    config.train.grid_size = 4
    summary = train(config, progress=False)
    grid = Image.open(summary["samples"])
    assert grid.mode == "RGB" and grid.size == (8 * (2 * 34 + 2),) * 2  # 2 classes x 2 columns of 32 px, 8 times


def test_training_from_a_memory_mapped_dataset_matches_in_memory(packed, tmp_path, monkeypatch):
    import importlib

    from productgan.checkpoint import load_checkpoint

    train(tiny_config(packed, tmp_path / "ram", steps=3, batch_size=4), progress=False)
    prepare_module = importlib.import_module("productgan.data.prepare")
    monkeypatch.setattr(prepare_module, "fits_in_memory", lambda path, share=0.5: False)
    from productgan.data import open_dataset

    assert isinstance(open_dataset(packed).images, np.memmap)
    train(tiny_config(packed, tmp_path / "mapped", steps=3, batch_size=4), progress=False)
    a = load_checkpoint(tmp_path / "ram" / "checkpoints" / "last.pt")["G"]
    b = load_checkpoint(tmp_path / "mapped" / "checkpoints" / "last.pt")["G"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_decoding_workers_end_with_a_killed_main_process(tmp_path):
    """A SIGKILL gives the pool no chance to stop its workers; they must not live on."""
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import os, signal, sys\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from productgan.data.folder import end_with_parent\n"
        "pool = ProcessPoolExecutor(1, initializer=end_with_parent, initargs=(os.getpid(),))\n"
        "print(pool.submit(os.getpid).result(), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    main = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert main.returncode == -signal.SIGKILL
    worker = int(main.stdout.split()[0])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{worker}").exists()


# --- hostile inputs (issue 24) ---------------------------------------------------------------


def three_images(folder: Path, shade: int = 0) -> Path:
    for i in range(3):
        save(Image.new("RGB", (8, 8), (shade, i, 0)), folder / f"{i}.png")
    return folder


def packed_info(out: Path) -> dict:
    return json.loads((out / "dataset.json").read_text(encoding="utf-8"))


class StillRunning(BaseException):
    """Not an OSError or an Exception, so no per-file handler can swallow it and carry on."""


class gives_up_after:
    """Raise StillRunning in the main thread after ``seconds``, so a test that would hang fails."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __enter__(self):
        import signal

        def alarm(signum, frame):
            raise StillRunning(f"still running after {self.seconds} s")

        self.previous = signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc):
        import signal

        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)


def test_pipes_sockets_and_devices_are_skipped_unread(tmp_path):
    import socket

    src = tmp_path / "src"
    three_images(src / "a")
    os.mkfifo(src / "a" / "pipe.png")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(src / "a" / "sock.png"))
    os.symlink("/dev/zero", src / "a" / "zero.png")  # read whole, it never ends
    try:
        with gives_up_after(20):
            out = prepare_folder(src, tmp_path / "out", size=32, workers=1, progress=False)
    finally:
        listener.close()
    found = reasons(out)
    assert found["a/pipe.png"] == "not a regular file (named pipe)"
    assert found["a/sock.png"] == "not a regular file (socket)"
    assert found["a/zero.png"] == "not a regular file (character device)"
    assert len(PackedDataset.load(out)) == 3


def test_a_file_turned_pipe_after_listing_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with gives_up_after(20):
        digest, image, reason = photos_module.decode_file((str(tmp_path / "pipe.png"), Options(32, 3, "pad", WHITE)))
    assert image is None and reason == "not a regular file (named pipe)"


def test_files_over_the_size_cap_are_skipped_unread(tmp_path, monkeypatch):
    src = tmp_path / "src"
    three_images(src / "a")
    with open(src / "a" / "huge.jpg", "wb") as f:  # sparse: no disk used, 100 MiB on stat
        f.truncate(100 * 2**20)
    out = prepare_folder(src, tmp_path / "out", size=32, workers=1, progress=False)
    assert reasons(out)["a/huge.jpg"] == "too big (100 MiB; files over 64 MiB are skipped unread)"
    # The cap holds at read time too, for a file that grew after it was listed.
    (tmp_path / "grown.png").write_bytes(b"\0" * 5000)
    options = Options(32, 3, "pad", WHITE, max_file_bytes=4000)
    assert photos_module.decode_file((str(tmp_path / "grown.png"), options))[2].startswith("too big")


def test_no_single_file_can_end_the_run(tmp_path, monkeypatch):
    src = tmp_path / "src"
    three_images(src / "a")
    save(Image.new("RGB", (8, 8), (9, 9, 9)), src / "a" / "memory.png")
    save(Image.new("RGB", (8, 8), (7, 7, 7)), src / "a" / "bug.png")
    original = photos_module.load_image

    def failing(data, options):
        image = original(data, options)
        if image[0, 0, 0] == 9:
            raise MemoryError
        if image[0, 0, 0] == 7:
            raise RuntimeError("decoder bug\nmore detail")
        return image

    monkeypatch.setattr(photos_module, "load_image", failing)
    out = prepare_folder(src, tmp_path / "out", size=32, workers=1, progress=False)
    found = reasons(out)
    assert found["a/memory.png"] == "out of memory while decoding"
    assert found["a/bug.png"] == "could not be decoded (RuntimeError: decoder bug)"
    assert len(PackedDataset.load(out)) == 3


def test_linked_class_folders_are_followed_and_loops_skipped(tmp_path):
    src, elsewhere = tmp_path / "src", tmp_path / "elsewhere"
    three_images(src / "boots")
    three_images(elsewhere / "bags", shade=50)
    os.symlink(elsewhere / "bags", src / "bags")  # outside the tree: a class like any other
    os.symlink(src / "boots", src / "alias")  # a second path to a class folder
    os.symlink(src / "boots", src / "boots" / "again")  # back to a folder above it
    os.symlink(src, src / "boots" / "top")  # back to the source folder itself
    out = prepare_folder(src, tmp_path / "out", size=32, split="0.34,0.33,0.33", workers=1, progress=False)
    info = packed_info(out)
    assert info["class_names"] == ["bags", "boots"] and info["shape"][0] == 6
    assert reasons(out) == {
        "alias/": "same folder as boots/, already listed",
        "boots/again/": "link loop: leads back to boots/",
        "boots/top/": "link loop: leads back to the source folder",
    }
    assert info["meta"]["empty_class_folders"] == [] and info["meta"]["files_found"] == 6


def test_folders_that_cannot_be_listed_say_so(tmp_path, monkeypatch):
    src = tmp_path / "src"
    three_images(src / "open")
    three_images(src / "locked")
    three_images(src / "open" / "deeper" / "locked")
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(os.fsdecode(path)).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    out = prepare_folder(src, tmp_path / "out", size=32, workers=1, progress=False)
    assert reasons(out) == {
        "locked/": "cannot list: Permission denied",
        "open/deeper/locked/": "cannot list: Permission denied",
    }
    info = packed_info(out)
    assert info["class_names"] == ["open"] and info["meta"]["empty_class_folders"] == []
    monkeypatch.setattr(os, "scandir", lambda path=".": scandir(src / "locked"))
    with pytest.raises(ProductganError, match="Cannot list .*src \\(Permission denied\\); check its permissions"):
        prepare_folder(src, tmp_path / "out2", size=32, workers=1, progress=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root lists any folder whatever its permissions")
def test_an_unreadable_folder_is_reported(tmp_path):
    src = tmp_path / "src"
    three_images(src / "open")
    three_images(src / "locked")
    (src / "locked").chmod(0)
    try:
        out = prepare_folder(src, tmp_path / "out", size=32, workers=1, progress=False)
    finally:
        (src / "locked").chmod(0o755)
    assert reasons(out) == {"locked/": "cannot list: Permission denied"}


def test_class_folders_with_names_that_are_not_utf8(tmp_path, capsys):
    src = tmp_path / "src"
    three_images(src / "plain")
    latin1 = os.fsencode(src) + b"/caf\xe9"  # "café" written by a Latin-1 system
    os.mkdir(latin1)
    three_images(Path(os.fsdecode(latin1)), shade=60)
    (Path(os.fsdecode(latin1)) / os.fsdecode(b"notes-\xff.txt")).write_text("x")
    os.mkdir(os.fsencode(src) + b"/vide-\xe9")  # an empty class folder: printed by name
    out = tmp_path / "out"
    assert main(["prepare", str(src), "--out", str(out), "--size", "32", "--workers", "1", "--no-progress"]) == 0
    assert "Class folders with no usable image (left out): vide-\\xe9." in capsys.readouterr().out
    raw = (out / "dataset.json").read_bytes()
    raw.decode("utf-8")
    assert b"\\ud" not in raw  # no lone surrogates escaped into the JSON
    info = json.loads(raw)
    assert info["class_names"] == ["caf\\xe9", "plain"]
    assert info["meta"]["non_utf8_class_folders"] == [
        {"class_name": "caf\\xe9", "folder_name_hex": b"caf\xe9".hex()},
        {"class_name": "vide-\\xe9", "folder_name_hex": b"vide-\xe9".hex()},
    ]
    assert reasons(out) == {"caf\\xe9/notes-\\xff.txt": "not an image file type (.txt)"}
    assert all(name.encode("utf-8") for name in PackedDataset.load(out).class_names)
    # A folder really named with a backslash would read the same: refused, not merged.
    three_images(src / "caf\\xe9", shade=90)
    with pytest.raises(UsageError, match="both read as class 'caf\\\\xe9'.*rename one of them"):
        prepare_folder(src, tmp_path / "out2", size=32, workers=1, progress=False)


def test_workers_below_one_are_refused_and_many_are_capped(tmp_path, monkeypatch, capsys):
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for i in range(70):
        save(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)), src / f"c{i % 2}" / f"{i}.png")
    for bad in (0, -1):
        with pytest.raises(UsageError, match=f"--workers must be 1 or more, not {bad}"):
            prepare_folder(src, tmp_path / "out", size=32, workers=bad, progress=False)
    assert main(["prepare", str(src), "--out", str(tmp_path / "out"), "--workers", "0", "--no-progress"]) == 2
    assert "--workers" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    started = []
    real_pool = folder_module.ProcessPoolExecutor

    def pool(max_workers, **kwargs):
        started.append(max_workers)
        return real_pool(max_workers, **kwargs)

    monkeypatch.setattr(folder_module, "ProcessPoolExecutor", pool)
    prepare_folder(src, tmp_path / "out", size=32, workers=48, progress=False)
    assert started == [2]


def test_a_folder_that_cannot_be_listed_does_not_look_like_photos(tmp_path, monkeypatch):
    from PIL import Image

    from productgan.data.listing import looks_like_image_folder

    shoes = tmp_path / "photos" / "shoes"
    shoes.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(shoes / "a.png")
    assert looks_like_image_folder(tmp_path / "photos")
    real_iterdir = Path.iterdir

    def refuse(self):
        if self.name == "shoes":
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", refuse)
    assert not looks_like_image_folder(tmp_path / "photos")  # no traceback


def test_prepare_names_a_source_folder_it_cannot_read(photos, monkeypatch, tmp_path, capsys):
    from test_data import shut

    shut(monkeypatch, photos)
    assert main(["prepare", str(photos), "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    error = capsys.readouterr().err
    assert f"Cannot list {photos} (Permission denied); check its permissions." in error, error
    assert "dataset.json" not in error and not (tmp_path / "out").exists()
