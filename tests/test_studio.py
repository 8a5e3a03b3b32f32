"""The studio page in a real browser: headless Chromium, driven by Selenium, against a live
``productgan serve`` of a tiny trained run, reached through a proxy that serves it under /gan.

One browser and one server for the module; the tests run in order, as a user would click. The
proxy can also answer a number of image requests 503 itself, as a server busy with another
client's work does (``Proxy.refuse``). The
browser and its driver are Debian's (``chromium``, ``chromium-driver``; ``make browser`` installs
them): nothing is downloaded. Without them the tests are skipped, except in CI (``CI=true``),
where they fail.

``PRODUCTGAN_SCREENSHOTS=docs`` writes the screenshots of ``test_screenshots`` there as well
(``PRODUCTGAN_STUDIO_RUN=RUN_DIR`` serves that run instead of the tiny one).
"""

from __future__ import annotations

import contextlib
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
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = "/gan"
WAIT = 30  # seconds any one thing may take to appear on two busy cores
PROJECTION_WAIT = 120
BUSY = 15  # seconds the busy neighbour asks for large grids


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
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service as DriverService  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as seen  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from productgan.explore.latent import encode_frames, render, walk_images  # noqa: E402
from productgan.explore.names import point  # noqa: E402
from productgan.generator.sampler import load_generator  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny trained run (or the run PRODUCTGAN_STUDIO_RUN names)."""
    if os.environ.get("PRODUCTGAN_STUDIO_RUN"):
        return Path(os.environ["PRODUCTGAN_STUDIO_RUN"])
    return train_tiny_run(tmp_path_factory.mktemp("studio"))


class Proxy(http.server.ThreadingHTTPServer):
    """A reverse proxy that serves ``upstream`` under ROOT and strips it, as nginx's
    ``location /gan/ { proxy_pass http://127.0.0.1:PORT/; }`` does. While ``refusing`` is set it
    answers the first request for each /named.png address itself, with 503 and ``Retry-After: 1``,
    as a busy server does; ``refused`` holds those addresses."""

    daemon_threads = True

    def __init__(self, upstream: int):
        self.upstream = upstream
        self.refusing, self.refused = False, set()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), ProxyHandler)

    def handle_error(self, request, client_address) -> None:
        pass  # a browser that went on to another page before its answer came: nothing to report

    def refuse(self, path: str) -> bool:
        with self.lock:
            if not self.refusing or not path.startswith(ROOT + "/named.png") or path in self.refused:
                return False
            self.refused.add(path)
            return True


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def forward(self) -> None:
        if not self.path.startswith(ROOT + "/"):
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.server.refuse(self.path):
            busy = b'{"detail": "The server is busy (a test); try again in 1 s."}'
            self.send_response(503)
            for name, value in (("Retry-After", "1"), ("Content-Type", "application/json")):
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(busy)))
            self.end_headers()
            self.wfile.write(busy)
            return
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


class Served(str):
    """The proxy's address (a str), and the proxy."""

    def __new__(cls, address: str, proxy: Proxy):
        served = super().__new__(cls, address)
        served.proxy = proxy
        return served


@contextlib.contextmanager
def serving(run_dir, *options: str) -> Iterator[int]:
    """``productgan serve RUN --port 0 OPTIONS`` in a process of its own, once it answers /health:
    its port; the process ends with the block."""
    command = [sys.executable, "-m", "productgan", "serve", str(run_dir), "--port", "0", *options]
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
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(run_dir):
    """``productgan serve RUN --root-path /gan`` in a process of its own, behind the proxy; the
    proxy's address."""
    with serving(run_dir, "--root-path", ROOT) as port:
        proxy = Proxy(port)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        yield Served(f"http://127.0.0.1:{proxy.server_address[1]}{ROOT}", proxy)
        proxy.shutdown()
        proxy.server_close()


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


def loaded(browser, selector: str, seconds: float = WAIT) -> list:
    """The images ``selector`` finds, once every one of them has loaded (an image the server was
    too busy for is asked for again by the page: it may be broken for a while first)."""
    missing = "return arguments[0].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"

    def all_loaded(driver):
        images = driver.find_elements(By.CSS_SELECTOR, selector)
        try:
            return images if images and not driver.execute_script(missing, images) else False
        except StaleElementReferenceException:  # replaced meanwhile (new variants): look again
            return False

    try:
        return wait(browser, all_loaded, seconds)
    except TimeoutException:
        images = browser.find_elements(By.CSS_SELECTOR, selector)
        raise AssertionError(f"not loaded after {seconds} s: {browser.execute_script(missing, images)[:5]}") from None


def fetch(url: str, headers: dict[str, str] | None = None, status: int = 200) -> bytes:
    match = re.match(r"http://([^/:]+):(\d+)(/.*)", url)
    connection = http.client.HTTPConnection(match[1], int(match[2]), timeout=WAIT)
    connection.request("GET", match[3], headers=headers or {})
    response = connection.getresponse()
    assert response.status == status, (url, response.status)
    return response.read()


def text(browser, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


def page_height(browser) -> int:
    return browser.execute_script("return document.documentElement.scrollHeight")


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


def test_a_shared_link_with_a_bad_value_opens_the_page(browser, server):
    """A link with a bad value opens the page, the API's sentence beside the field, the value as sent
    in it and the default in its place; a client that is not a browser still gets the 422."""
    sentence = "n must be a whole number between 1 and 1024, not '5000'."
    assert json.loads(fetch(server + "/?n=5000", status=422))["detail"] == sentence
    for width in (1440, 390):
        browser.set_window_size(width, 900)
        browser.get(server + "/?n=5000&seed=4")
        error = wait(browser, lambda driver: driver.find_element(By.ID, "n-error"))
        assert error.is_displayed() and error.text == sentence  # the form stays open on a phone
        field = browser.find_element(By.ID, "n")
        assert field.get_attribute("value") == "5000" and field.get_attribute("aria-invalid") == "true"
        assert browser.switch_to.active_element == field
        assert text(browser, "count") == "20 images in 10 categories, seed 4"  # the default in its place
        assert len(loaded(browser, ".gallery .cell img")) == 20
    browser.set_window_size(1440, 1000)
    browser.get(server + "/?label=Hat&seed=4&temperature=0")
    assert text(browser, "label-error").startswith("Unknown class 'Hat'")
    assert text(browser, "temperature-error").startswith("temperature must be a number above 0 and at most 4")
    assert browser.switch_to.active_element.get_attribute("id") == "label"  # the first of them in the form
    assert browser.find_element(By.ID, "label").get_attribute("aria-invalid") == "true"
    assert text(browser, "count") == "20 images in 10 categories, seed 4"


def test_the_form_folds_away_on_a_phone(browser, server):
    browser.set_window_size(390, 844)
    try:
        browser.get(server + "/?seed=5")
        summary = browser.find_element(By.CSS_SELECTOR, "#controls-box > summary")
        assert summary.is_displayed() and "20 images · seed 5" in summary.text
        assert not browser.find_element(By.ID, "n").is_displayed()
        first = browser.find_element(By.CSS_SELECTOR, ".gallery .cell")
        viewport = browser.execute_script("return window.innerHeight")
        assert browser.find_element(By.ID, "controls-box").rect["height"] < 60  # one line
        assert first.rect["y"] + first.rect["height"] < viewport * 2 / 3, first.rect  # the gallery on screen one
        summary.send_keys(Keys.ENTER)  # the keyboard opens it
        wait(browser, lambda driver: driver.find_element(By.ID, "n").is_displayed())
        summary.send_keys(Keys.TAB)
        assert browser.switch_to.active_element.get_attribute("id") == "label"
        assert page_height(browser) > first.rect["y"]
    finally:
        browser.set_window_size(1440, 1000)


def test_a_busy_neighbour_does_not_break_the_gallery(browser, server):
    """Thumbnails the server is too busy for are asked again after its Retry-After, with a
    placeholder meanwhile: refused by the proxy (every first request), and then beside a client
    firing twelve n=1024 grids at once at the same server."""
    server.proxy.refusing = True
    try:
        browser.get(server + "/?seed=9")
        images = loaded(browser, ".gallery .cell img")  # WAIT: a few 1-second waits each, at most
    finally:
        server.proxy.refusing = False
    refused = {path for path in server.proxy.refused if "name=9%3A" in path}  # (not the last page's late ones)
    assert len(images) == 20 and len(refused) == 20
    assert all(image.get_attribute("src").startswith("blob:") for image in images)  # each one asked again
    assert not browser.find_elements(By.CSS_SELECTOR, ".waiting, .failed") and text(browser, "gallery-status") == ""

    # twelve threads, each asking for n=1024 grids one after another, for BUSY seconds at most
    stop, answers = threading.Event(), []
    match = re.match(r"http://([^/:]+):(\d+)(/.*)", server)

    def neighbour(thread: int) -> None:
        until = time.monotonic() + BUSY
        for seed in range(thread * 1000, thread * 1000 + 1000):
            if stop.is_set() or time.monotonic() > until:
                return
            connection = http.client.HTTPConnection(match[1], int(match[2]), timeout=PROJECTION_WAIT)
            connection.request("GET", f"{match[3]}/images.png?n=1024&seed={seed}")
            answers.append(connection.getresponse().status)
            connection.close()

    threads = [threading.Thread(target=neighbour, args=(i,), daemon=True) for i in range(12)]
    for thread in threads:
        thread.start()
    try:
        wait(browser, lambda _: len(answers) >= 12)  # the neighbour is at work
        browser.get(server + "/?seed=10&n=40")
        assert len(loaded(browser, ".gallery .cell img", BUSY + WAIT)) == 40
    finally:
        stop.set()
        for thread in threads:
            thread.join(WAIT)
    assert answers.count(200) >= 12, answers[:24]


def test_a_thousand_images_load_lazily_in_a_dense_grid(browser, server):
    browser.get(server + "/?n=1024&seed=2")
    cells = browser.find_elements(By.CSS_SELECTOR, ".gallery .cell img")
    assert len(cells) == 1024
    loaded(browser, ".category:first-child .cell img")
    rows = browser.find_elements(By.CSS_SELECTOR, ".category:first-child .cells li")
    columns = len({row.rect["x"] for row in rows})
    assert columns >= 12 and all(96 <= row.rect["width"] <= 128 for row in rows), (columns, rows[0].rect)
    assert page_height(browser) < 11_000  # 15,416 px with two images a row
    complete = "return [...document.querySelectorAll('.gallery .cell img')].filter(i => i.naturalWidth > 0).length"
    time.sleep(1)
    assert browser.execute_script(complete) < 700  # the rest wait until they are scrolled to
    browser.execute_script("window.scrollTo(0, document.documentElement.scrollHeight)")
    loaded(browser, ".category:last-child .cells li:last-child img")


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

    # more like this: eight variants as the API names them, at the spread the API declares by default
    spread = browser.find_element(By.ID, "spread")
    declared = json.loads(fetch(server + "/openapi.json"))["paths"]["/variants.json"]["get"]["parameters"]
    default = next(p["schema"]["default"] for p in declared if p["name"] == "spread")
    assert float(spread.get_attribute("value")) == default and text(browser, "spread-value") == f"{default:g}"
    browser.find_element(By.ID, "more").click()
    variants = loaded(browser, "#variants .cell img")
    answer = json.loads(fetch(f"{server}/variants.json?of=3:0:T-shirt%2Ftop&n=8&spread={default}"))
    names = [v["name"] for v in answer["variants"]]
    assert [v.find_element(By.XPATH, "..").get_attribute("data-name") for v in variants] == names
    captions = [caption.text for caption in browser.find_elements(By.CSS_SELECTOR, "#variants figcaption")]
    for i, (caption, variant) in enumerate(zip(captions, names)):  # a short handle, never a long z: name
        if variant.startswith("z:") and len(variant) > 40:
            assert caption == f"variant {i + 1}"
        else:
            assert caption == variant.replace("3:0:T-shirt/top~", "…~", 1)
    # a wider spread, from the keyboard, asks again
    spread.send_keys(Keys.END)
    wait(browser, lambda _: text(browser, "spread-value") == "1")
    wider = json.loads(fetch(f"{server}/variants.json?of=3:0:T-shirt%2Ftop&n=8&spread=1"))
    wider_names = [v["name"] for v in wider["variants"]]
    shown = "return [...document.querySelectorAll('#variants .cell')].map(cell => cell.dataset.name)"
    wait(browser, lambda driver: driver.execute_script(shown) == wider_names)

    # nearest training images, with the copy flag in words
    neighbours = loaded(browser, "#neighbours img")
    assert len(neighbours) == 4 and "/training/" in neighbours[0].get_attribute("src")
    assert re.match(r"(Likely a copy|Not a copy)", text(browser, "copy-flag"))

    # a walk to another image, chosen with a click among the variants and the gallery; it plays in
    # the page, and is the CLI's file
    choices = [c.get_attribute("value") for c in browser.find_elements(By.CSS_SELECTOR, "#walk-choices input")]
    assert choices == wider_names + [c.get_attribute("data-name") for c in cells[1:]]
    chosen = browser.find_element(By.CSS_SELECTOR, "#walk-choices input:checked")
    assert chosen.get_attribute("value") == cells[1].get_attribute("data-name")  # the next image, to start with
    browser.find_element(By.CSS_SELECTOR, "#walk-choices input[value='3:1:Trouser']").find_element(
        By.XPATH, ".."
    ).click()
    assert text(browser, "walk-chosen") == "Walking to 3:1:Trouser."
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
    # a variant, chosen from the keyboard: the first choice, by the arrow keys from the checked one
    checked = browser.find_element(By.CSS_SELECTOR, "#walk-choices input:checked")
    checked.send_keys(*[Keys.LEFT] * (choices.index("3:1:Trouser")))
    assert browser.find_element(By.CSS_SELECTOR, "#walk-choices input:checked").get_attribute("value") == choices[0]
    # a name typed, and a bad one gets its sentence beside the field
    browser.find_element(By.CSS_SELECTOR, "#walk-typed summary").click()
    walk_to = browser.find_element(By.ID, "walk-to")
    assert walk_to.get_attribute("value") == choices[0]
    walk_to.clear()
    walk_to.send_keys("nowhere", Keys.ENTER)
    error = wait(browser, lambda driver: text(driver, "walk-to-error"))
    assert error.startswith("to 'nowhere' names no image")

    # a variant opens with a short label; its full name is copied, never shown
    browser.execute_script("window.copied = null; navigator.clipboard.writeText = async (t) => { window.copied = t; };")
    browser.find_element(By.CSS_SELECTOR, "#variants .cell").click()
    wait(browser, lambda driver: text(driver, "detail-name") != name)
    title, shown = text(browser, "detail-title"), text(browser, "detail-name")
    if wider_names[0].startswith("z:") and len(wider_names[0]) > 40:  # a short label, the name's start only
        assert (
            title == "variant 1 of 3:0:T-shirt/top"
            and shown == f"{wider_names[0][:14]}… ({len(wider_names[0])} characters)"
        )
    else:
        assert title == shown == wider_names[0]
    browser.find_element(By.ID, "copy-name").click()
    wait(browser, lambda driver: driver.execute_script("return window.copied") == wider_names[0])
    assert text(browser, "copy-status").startswith("Copied")

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
    # beside the upload, what the generator expects
    browser.get(server + "/?seed=3")
    expects = text(browser, "expects")
    expected = json.loads(fetch(server + "/info"))["expected_photo"]["text"]  # what /info says
    assert expects.startswith(f"Works best with photos like its training data: {expected}, each one of its")
    assert "10 categories: T-shirt/top, Trouser," in expects and "black background" in expects and "grey" in expects
    browser.find_element(By.ID, "photo").send_keys(str(not_a_photo))
    browser.find_element(By.ID, "project").click()
    error = wait(browser, lambda driver: text(driver, "photo-error"), PROJECTION_WAIT)
    assert error.startswith("The photo cannot be used")

    # the answer, as the page received it
    browser.execute_script(
        "window.answers = []; const sent = window.fetch; window.fetch = async (...args) => {"
        " const response = await sent(...args);"
        " if (String(args[0]).includes('/project')) window.answers.push(await response.clone().json());"
        " return response; };"
    )
    browser.find_element(By.ID, "photo").send_keys(str(photo))
    Select(browser.find_element(By.ID, "effort")).select_by_value("100")
    browser.find_element(By.ID, "project").click()
    wait(browser, seen.visibility_of_element_located((By.ID, "projection")), PROJECTION_WAIT)
    assert text(browser, "photo-error") == ""
    (answer,) = browser.execute_script("return window.answers")
    assert text(browser, "verdict") == answer["verdict"]  # the API's verdict, word for word
    unlike = "unlike" in browser.find_element(By.ID, "verdict").get_attribute("class")
    assert unlike == (answer.get("match", "") is None)  # a photo unlike the training data, in the warning colour
    assert "typically" in text(browser, "distance")
    target, reconstruction = loaded(browser, "#projection img")
    assert target.get_attribute("src").startswith("data:image/png;base64,")
    browser.find_element(By.ID, "open-projection").click()
    wait(browser, seen.visibility_of_element_located((By.ID, "detail")))
    assert text(browser, "detail-title") == "the closest image to your photo"
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
    browser.find_element(By.ID, "more").click()
    loaded(browser, "#variants .cell img")
    scroll, client = browser.execute_script(widths)
    assert scroll <= client, (scroll, client)
    for button in browser.find_elements(By.CSS_SELECTOR, "#detail button, #controls button, #detail summary"):
        if button.is_displayed():
            assert button.size["height"] >= 44, button.get_attribute("id")  # touch-sized
    browser.find_element(By.ID, "close").click()


def screenshot(browser, path: Path, width: int, address: str | None, tallest: int = 2400) -> None:
    """The page at ``width``, as tall as it is (at most ``tallest`` pixels), in one picture."""
    browser.set_window_size(width, 900)
    if address:
        browser.get(address)
    loaded(browser, ".gallery .cell img:not([loading='lazy']), .category:first-child .cell img")
    chrome = browser.execute_script("return window.outerHeight - window.innerHeight")
    browser.set_window_size(width, min(page_height(browser) + chrome, tallest))
    loaded(browser, ".category:first-child .cell img")
    time.sleep(0.5)  # the images the taller window brings near
    browser.save_screenshot(str(path))


def open_detail(browser, server, width: int) -> None:
    """An image's detail view with its variants, nearest training images and a walk."""
    browser.set_window_size(width, 1000 if width > 400 else 844)
    browser.get(server + "/?seed=7")
    browser.find_element(By.CSS_SELECTOR, ".gallery .cell").click()
    browser.find_element(By.ID, "more").click()
    loaded(browser, "#variants .cell img")
    browser.find_element(By.CSS_SELECTOR, "#variants .cell").click()  # a variant: its short label
    browser.find_element(By.ID, "more").click()
    browser.find_element(By.ID, "walk-go").click()

    def ready(driver) -> bool:
        return (
            len(driver.find_elements(By.CSS_SELECTOR, "#variants .cell img")) == 8
            and len(driver.find_elements(By.CSS_SELECTOR, "#neighbours img")) == 4
            and driver.find_element(By.ID, "walk-result").is_displayed()
        )

    try:
        wait(browser, ready, PROJECTION_WAIT)
    except TimeoutException:  # say which part never came, and what the page said
        shown = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "[role=alert], .error") if e.text.strip()]
        raise AssertionError(
            f"after {PROJECTION_WAIT} s: {len(browser.find_elements(By.CSS_SELECTOR, '#variants .cell img'))} "
            f"variants, {len(browser.find_elements(By.CSS_SELECTOR, '#neighbours img'))} neighbours, walk shown "
            f"{browser.find_element(By.ID, 'walk-result').is_displayed()}; the page said {shown}"
        )
    loaded(browser, "#variants .cell img, #neighbours img, #walk-image")


def test_screenshots(browser, server, tmp_path):
    """The page at phone and desktop width, light and dark; an image's detail view; a thousand
    images; a link with a bad value; a photo's projection (copied to PRODUCTGAN_SCREENSHOTS when set)."""
    out = Path(os.environ.get("PRODUCTGAN_SCREENSHOTS") or tmp_path)
    shots = {}
    for name, width, scheme in (
        ("390", 390, "light"),
        ("390-dark", 390, "dark"),
        ("1440", 1440, "light"),
        ("1440-dark", 1440, "dark"),
    ):
        browser.execute_cdp_cmd(
            "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
        )
        shots[name] = out / f"studio-{name}.png"
        screenshot(browser, shots[name], width, server + "/?seed=7")
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    shots["1440-dense"] = out / "studio-1440-dense.png"
    screenshot(browser, shots["1440-dense"], 1440, server + "/?n=1024&seed=7", tallest=1600)
    shots["390-bad-link"] = out / "studio-390-bad-link.png"
    screenshot(browser, shots["390-bad-link"], 390, server + "/?n=5000&label=Hat&seed=7", tallest=1200)
    # a photo unlike the training data (noise), and what the API says of it
    photo = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (60, 40, 3), dtype=np.uint8)).save(photo)
    browser.set_window_size(1440, 1000)
    browser.get(server + "/?seed=7")
    browser.find_element(By.ID, "photo").send_keys(str(photo))
    browser.find_element(By.ID, "project").click()
    wait(browser, seen.visibility_of_element_located((By.ID, "projection")), PROJECTION_WAIT)
    shots["1440-photo"] = out / "studio-1440-photo.png"
    screenshot(browser, shots["1440-photo"], 1440, None)
    for width in (1440, 390):
        open_detail(browser, server, width)
        shots[f"{width}-detail"] = out / f"studio-{width}-detail.png"
        height = browser.execute_script("return document.getElementById('detail').scrollHeight")
        chrome = browser.execute_script("return window.outerHeight - window.innerHeight")
        browser.set_window_size(width, min(height + chrome + 32, 2400))  # the whole dialog
        loaded(browser, "#variants .cell img, #neighbours img, #walk-image")
        browser.save_screenshot(str(shots[f"{width}-detail"]))
        browser.find_element(By.ID, "close").click()
    browser.set_window_size(1440, 1000)
    for name, path in shots.items():
        with Image.open(io.BytesIO(path.read_bytes())) as picture:
            assert picture.width == int(name[:4].rstrip("-")), name
    with Image.open(shots["1440-dark"]) as dark, Image.open(shots["1440"]) as light:
        assert dark.convert("L").getpixel((5, 5)) < 60 < light.convert("L").getpixel((5, 5))  # the scheme took
