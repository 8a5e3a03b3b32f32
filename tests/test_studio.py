"""The studio page in a real browser: headless Chromium, driven by Selenium, against a live
``productgan serve`` of a tiny trained run, reached through a proxy that serves it under /gan.

One browser and one server for the module; the tests run in order, as a user would click. The
browser and its driver are Debian's (``chromium``, ``chromium-driver``; ``make browser`` installs
them): nothing is downloaded. Without them the tests are skipped, except in CI (``CI=true``),
where they fail.

``PRODUCTGAN_SCREENSHOTS=docs`` writes the screenshots of ``test_screenshots`` there as well
(``PRODUCTGAN_STUDIO_RUN=RUN_DIR`` serves that run instead of the tiny one).
"""

from __future__ import annotations

import http.client
import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = "/gan"
WAIT = 30  # seconds any one thing may take to appear on two busy cores
PROJECTION_WAIT = 120


def _browser_or_skip():
    """Selenium's module, or a skip (outside CI) / a failure (in CI) that names what is missing."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    try:
        import selenium.webdriver as webdriver  # noqa: F401
    except ModuleNotFoundError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    if missing:
        message = f"The browser tests need {', '.join(missing)}: run `make browser`."
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message, allow_module_level=True)


_browser_or_skip()

from helpers import train_tiny_run  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service as DriverService  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as seen  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from productgan.explore.latent import encode_frames, point, render, walk_images  # noqa: E402
from productgan.generator.sampler import load_generator  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny trained run (or the run PRODUCTGAN_STUDIO_RUN names)."""
    if os.environ.get("PRODUCTGAN_STUDIO_RUN"):
        return Path(os.environ["PRODUCTGAN_STUDIO_RUN"])
    return train_tiny_run(tmp_path_factory.mktemp("studio"))


class Proxy(http.server.ThreadingHTTPServer):
    """A reverse proxy that serves ``upstream`` under ROOT and strips it, as nginx's
    ``location /gan/ { proxy_pass http://127.0.0.1:PORT/; }`` does."""

    daemon_threads = True

    def __init__(self, upstream: int):
        self.upstream = upstream
        super().__init__(("127.0.0.1", 0), ProxyHandler)


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def forward(self) -> None:
        if not self.path.startswith(ROOT + "/"):
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=PROJECTION_WAIT)
        try:
            upstream.request(self.command, self.path[len(ROOT) :], body=body or None, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("connection", "transfer-encoding", "content-length", "date", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_HEAD = forward


@pytest.fixture(scope="module")
def server(run_dir):
    """``productgan serve RUN --root-path /gan`` in a process of its own, behind the proxy; the
    proxy's address."""
    command = [sys.executable, "-m", "productgan", "serve", str(run_dir), "--port", "0", "--root-path", ROOT]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line + process.stdout.read()
        port = int(match[1])
        deadline = time.monotonic() + WAIT
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline, "the server did not answer /health"
                time.sleep(0.1)
        proxy = Proxy(port)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{proxy.server_address[1]}{ROOT}"
        proxy.shutdown()
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--hide-scrollbars"):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=DriverService(str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.set_window_size(1440, 1000)
    yield driver
    driver.quit()


def wait(browser, condition, seconds: float = WAIT):
    return WebDriverWait(browser, seconds, poll_frequency=0.1).until(condition)


def loaded(browser, selector: str) -> list:
    """The images ``selector`` finds, once every one of them has loaded."""

    def all_loaded(driver):
        images = driver.find_elements(By.CSS_SELECTOR, selector)
        ready = images and all(driver.execute_script("return arguments[0].complete", i) for i in images)
        return images if ready else False

    images = wait(browser, all_loaded)
    for image in images:
        assert browser.execute_script("return arguments[0].naturalWidth", image) > 0, image.get_attribute("src")
    return images


def fetch(url: str) -> bytes:
    match = re.match(r"http://([^/:]+):(\d+)(/.*)", url)
    connection = http.client.HTTPConnection(match[1], int(match[2]), timeout=WAIT)
    connection.request("GET", match[3])
    response = connection.getresponse()
    assert response.status == 200, (url, response.status)
    return response.read()


def text(browser, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


def test_the_gallery_has_a_section_per_category(browser, server, run_dir):
    browser.get(server + "/")
    class_names = load_generator(run_dir).class_names
    headings = [" ".join(h.text.split()[:-1]) for h in browser.find_elements(By.CSS_SELECTOR, ".category h2")]
    assert headings == class_names
    cells = loaded(browser, ".gallery .cell img")
    assert len(cells) == 2 * len(class_names) and text(browser, "count").startswith("20 images in 10 categories")
    # every link of the page goes through the proxy's prefix
    for element in browser.find_elements(By.CSS_SELECTOR, "[src], link[href]"):
        assert (element.get_attribute("src") or element.get_attribute("href")).startswith(server + "/")


def test_a_category_and_a_new_seed(browser, server):
    Select(browser.find_element(By.ID, "label")).select_by_visible_text("Bag")
    browser.find_element(By.ID, "generate").click()
    wait(browser, seen.url_contains("label=Bag"))
    assert [" ".join(h.text.split()) for h in browser.find_elements(By.CSS_SELECTOR, ".category h2")] == ["Bag 20"]
    before = [image.get_attribute("src") for image in loaded(browser, ".gallery .cell img")]
    browser.find_element(By.ID, "new-seed").click()
    wait(browser, lambda driver: "seed=0" not in driver.current_url)
    after = loaded(browser, ".gallery .cell img")
    assert len(after) == 20 and before[0] != after[0].get_attribute("src")
    assert fetch(before[0]) != fetch(after[0].get_attribute("src"))  # other pixels, not only another address
    seed = browser.find_element(By.ID, "seed").get_attribute("value")
    assert f"seed={seed}" in browser.current_url and text(browser, "count").endswith(f"seed {seed}")


def test_a_bad_value_gets_a_sentence_beside_its_field(browser, server):
    address = browser.current_url
    field = browser.find_element(By.ID, "temperature")
    field.clear()
    field.send_keys("9", Keys.ENTER)
    error = wait(browser, lambda driver: text(driver, "temperature-error"))
    assert error.startswith("temperature must be a number above 0 and at most 4") and "'9'" in error
    assert field.get_attribute("aria-invalid") == "true" and browser.current_url == address
    assert browser.switch_to.active_element == field


def test_an_image_opens_downloads_varies_and_walks(browser, server, downloads, run_dir):
    browser.get(server + "/?n=20&seed=3")
    cells = browser.find_elements(By.CSS_SELECTOR, ".gallery .cell")
    first = cells[0]
    name = first.get_attribute("data-name")
    first.send_keys(Keys.ENTER)  # the keyboard opens it
    dialog = wait(browser, seen.visibility_of_element_located((By.ID, "detail")))
    assert text(browser, "detail-name") == name == "3:0:T-shirt/top"
    assert "Seed 3, image 0, T-shirt/top" in text(browser, "detail-category")

    # download: the native PNG is the sampler's image
    browser.find_element(By.ID, "download-native").click()
    saved = downloads / "3_0_T-shirt_top.png"
    wait(browser, lambda _: saved.exists() and saved.stat().st_size > 0)
    sampler = load_generator(run_dir)
    expected = render(sampler, [point(sampler, name)]).numpy()[0, 0]
    assert np.array_equal(np.asarray(Image.open(saved)), expected)

    # more like this: eight variants, each an image that opens
    browser.find_element(By.ID, "more").click()
    variants = loaded(browser, "#variants .cell img")
    assert len(variants) == 8
    assert all(v.find_element(By.XPATH, "..").get_attribute("data-name").startswith("z:") for v in variants)

    # nearest training images, with the copy flag in words
    neighbours = loaded(browser, "#neighbours img")
    assert len(neighbours) == 4 and "/training/" in neighbours[0].get_attribute("src")
    assert re.match(r"(Likely a copy|Not a copy)", text(browser, "copy-flag"))

    # a walk to another image plays in the page, and is the CLI's file
    walk_to = browser.find_element(By.ID, "walk-to")
    assert walk_to.get_attribute("value") == cells[1].get_attribute("data-name")  # the next image, to start with
    walk_to.clear()
    walk_to.send_keys("3:1:Trouser")
    frames = browser.find_element(By.ID, "frames")
    frames.clear()
    frames.send_keys("6")
    browser.find_element(By.ID, "walk-go").click()
    image = loaded(browser, "#walk-result:not([hidden]) #walk-image")[0]
    assert image.get_attribute("src").startswith("blob:")
    assert browser.execute_script("return arguments[0].naturalWidth", image) == 4 * sampler.native_size[1]
    served = fetch(f"{server}/walk.gif?from=3:0:T-shirt/top&to=3:1:Trouser&frames=6&fps=12&scale=4")
    frames_made = walk_images(sampler, [point(sampler, name), point(sampler, "3:1:Trouser")], 6).numpy()
    assert served == encode_frames(frames_made, "gif", 12, 4)
    # a bad name gets its sentence beside the field
    walk_to.clear()
    walk_to.send_keys("nowhere", Keys.ENTER)
    error = wait(browser, lambda driver: text(driver, "walk-to-error"))
    assert error.startswith("to 'nowhere' names no image")

    # Escape closes the view and gives the focus back to the image
    dialog.send_keys(Keys.ESCAPE)
    wait(browser, seen.invisibility_of_element(dialog))
    assert browser.switch_to.active_element.get_attribute("data-name") == name


def test_a_selection_downloads_as_a_zip(browser, server, downloads):
    boxes = browser.find_elements(By.CSS_SELECTOR, ".pick input")[:3]
    for box in boxes:
        box.click()
    button = browser.find_element(By.ID, "selection-zip")
    assert button.text == "Download selection (3)"
    button.click()
    saved = downloads / "selection.zip"
    wait(browser, lambda _: saved.exists() and zipfile.is_zipfile(saved))
    with zipfile.ZipFile(saved) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        names = [entry["name"] for entry in manifest["images"]]
        assert names == [box.get_attribute("data-name") for box in boxes]
        assert archive.read(manifest["images"][0]["file"]) == fetch(
            f"{server}/named.png?name={names[0].replace('/', '%2F')}"
        )


def test_a_photo_is_projected_and_opens(browser, server, tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30), dtype=np.uint8)).save(photo)
    not_a_photo = tmp_path / "notes.png"
    not_a_photo.write_bytes(b"these are words, not pixels")
    browser.find_element(By.ID, "photo").send_keys(str(not_a_photo))
    browser.find_element(By.ID, "project").click()
    error = wait(browser, lambda driver: text(driver, "photo-error"), PROJECTION_WAIT)
    assert error.startswith("The photo cannot be used")

    browser.find_element(By.ID, "photo").send_keys(str(photo))
    Select(browser.find_element(By.ID, "effort")).select_by_value("100")
    browser.find_element(By.ID, "project").click()
    wait(browser, seen.visibility_of_element_located((By.ID, "projection")), PROJECTION_WAIT)
    assert text(browser, "photo-error") == ""
    assert re.match(r"(Close|Good|Loose|Poor) match as \S", text(browser, "verdict"))
    assert "typically" in text(browser, "distance")
    target, reconstruction = loaded(browser, "#projection img")
    assert target.get_attribute("src").startswith("data:image/png;base64,")
    browser.find_element(By.ID, "open-projection").click()
    wait(browser, seen.visibility_of_element_located((By.ID, "detail")))
    assert text(browser, "detail-name").startswith("z:")
    browser.find_element(By.ID, "close").click()


@pytest.mark.parametrize("width", [390, 1440])
def test_no_horizontal_scroll(browser, server, width):
    browser.set_window_size(width, 900)
    browser.get(server + "/")
    loaded(browser, ".gallery .cell img")
    widths = "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    scroll, client = browser.execute_script(widths)
    assert scroll <= client, (scroll, client)
    browser.find_element(By.CSS_SELECTOR, ".gallery .cell").click()
    wait(browser, seen.visibility_of_element_located((By.ID, "detail")))
    scroll, client = browser.execute_script(widths)
    assert scroll <= client, (scroll, client)
    for button in browser.find_elements(By.CSS_SELECTOR, "#detail button, #controls button"):
        if button.is_displayed():
            assert button.size["height"] >= 44, button.get_attribute("id")  # touch-sized
    browser.find_element(By.ID, "close").click()


def test_screenshots(browser, server, tmp_path):
    """The page at phone and desktop width, light and dark (copied to PRODUCTGAN_SCREENSHOTS when set)."""
    out = Path(os.environ.get("PRODUCTGAN_SCREENSHOTS") or tmp_path)
    shots = {}
    for name, width, scheme in (("390", 390, "light"), ("1440", 1440, "light"), ("1440-dark", 1440, "dark")):
        browser.execute_cdp_cmd(
            "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
        )
        browser.set_window_size(width, 900)
        browser.get(server + "/?seed=7")
        loaded(browser, ".gallery .cell img")
        height = browser.execute_script("return document.documentElement.scrollHeight")
        chrome = browser.execute_script("return window.outerHeight - window.innerHeight")
        browser.set_window_size(width, min(height + chrome, 2400))  # the whole page in one picture
        loaded(browser, ".gallery .cell img")
        shots[name] = out / f"studio-{name}.png"
        browser.save_screenshot(str(shots[name]))
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    browser.set_window_size(1440, 1000)
    browser.get(server + "/?seed=7")
    browser.find_element(By.CSS_SELECTOR, ".gallery .cell").click()
    browser.find_element(By.ID, "more").click()
    browser.find_element(By.ID, "walk-go").click()
    wait(
        browser,
        lambda driver: (
            len(driver.find_elements(By.CSS_SELECTOR, "#variants .cell img")) == 8
            and len(driver.find_elements(By.CSS_SELECTOR, "#neighbours img")) == 4
            and driver.find_element(By.ID, "walk-result").is_displayed()
        ),
        PROJECTION_WAIT,
    )
    loaded(browser, "#variants .cell img, #neighbours img, #walk-image")
    shots["1440-detail"] = out / "studio-1440-detail.png"
    browser.save_screenshot(str(shots["1440-detail"]))
    for name, path in shots.items():
        with Image.open(io.BytesIO(path.read_bytes())) as picture:
            assert picture.width == int(name[:4].rstrip("-")), name
    with Image.open(shots["1440-dark"]) as dark, Image.open(shots["1440"]) as light:
        assert dark.convert("L").getpixel((5, 5)) < 60 < light.convert("L").getpixel((5, 5))  # the scheme took
