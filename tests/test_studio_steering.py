"""Steering in the studio's detail view, in a real browser: the sliders /directions.json lists, an
edited image's name and preview, reset, a strip along one slider, colour (greys only on this grey
run), the keyboard, and the one sentence a run without directions gets.

The browser, the server behind its /gan proxy and the helpers are test_studio.py's (its fixtures are
module-scoped, so this module gets a browser and a server of its own, once); the run is a tiny one
of its own whose directions are measured, and a copy of it made before, with none.

``PRODUCTGAN_SCREENSHOTS=docs`` writes ``studio-390-steering.png`` and ``studio-1440-steering.png``
there as well (``PRODUCTGAN_STEERING_RUN=RUN_DIR`` serves that run, whose directions are measured,
instead of the tiny one, for ``-k screenshots``: a colour run's swatches are colours).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

import pytest

# First: test_studio skips (or, in CI, fails) the module when the browser or Selenium is missing.
import test_studio
from test_studio import WAIT, fetch, loaded, serving, text, wait

# isort: split
from helpers import train_tiny_run
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import Select

from productgan.explore.steering import measure_directions

BASE = "7:0:T-shirt/top"  # the first image of the gallery at seed 7

# test_studio's module-scoped fixtures: this module's own browser and server (of its ``run_dir``)
browser, downloads, server = test_studio.browser, test_studio.downloads, test_studio.server


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """(a tiny run with measured directions, a copy of it made before they were measured)."""
    folder = tmp_path_factory.mktemp("steering")
    run = train_tiny_run(folder)
    bare = folder / "bare"
    shutil.copytree(run, bare)
    measure_directions(run, samples=200, probe=16, progress=False)
    return run, bare


@pytest.fixture(scope="module")
def run_dir(request):
    """The run test_studio's ``server`` serves: the measured one (or PRODUCTGAN_STEERING_RUN)."""
    if os.environ.get("PRODUCTGAN_STEERING_RUN"):
        return Path(os.environ["PRODUCTGAN_STEERING_RUN"])
    return request.getfixturevalue("runs")[0]


@pytest.fixture(scope="module")
def bare_server(runs):
    """``productgan serve`` of the run with no directions (no proxy, no root path): its address."""
    with serving(runs[1]) as port:
        yield f"http://127.0.0.1:{port}"


def open_steering(browser, server, width: int = 1440) -> None:
    """The detail view of the gallery's first image at seed 7, once its sliders are there."""
    browser.set_window_size(width, 1000 if width > 400 else 844)
    browser.get(server + "/?seed=7")
    browser.find_element(By.CSS_SELECTOR, ".gallery .cell").click()
    wait(browser, seen.visibility_of_element_located((By.ID, "detail")))
    wait(browser, lambda driver: driver.find_elements(By.CSS_SELECTOR, "#sliders input"))


def shown_name(browser) -> str:
    return browser.find_element(By.ID, "steer-name").get_attribute("data-name")


def named(element) -> str:
    """The image name the /named.png address of an image (or a link) asks for."""
    address = element.get_attribute("src") or element.get_attribute("href")
    return parse_qs(urlparse(address).query)["name"][0]


def preview_of(browser, name: str):
    """The preview, once it shows ``name`` and has loaded."""
    wait(browser, lambda driver: named(driver.find_element(By.ID, "steer-image")) == name)
    return loaded(browser, "#steer-image")[0]


def test_the_sliders_are_the_directions_json(browser, server, run_dir):
    listed = json.loads(fetch(server + "/directions.json"))
    assert listed["measured"]
    open_steering(browser, server)
    directions = listed["directions"]
    expected = [d for d in directions if d["attribute"]] + [d for d in directions if not d["attribute"]]
    sliders = browser.find_elements(By.CSS_SELECTOR, "#sliders input")
    assert [s.get_attribute("id") for s in sliders] == [f"steer-{d['name']}" for d in expected]
    assert expected[-1]["name"].startswith("main")  # the generator's own last
    for slider, direction in zip(sliders, expected):
        assert (slider.get_attribute("type"), slider.get_attribute("min"), slider.get_attribute("max")) == (
            "range",
            "-2",
            "2",
        )
        assert slider.get_attribute("step") == "0.1" and slider.get_attribute("value") == "0"
        label = browser.find_element(By.CSS_SELECTOR, f"label[for='{slider.get_attribute('id')}']")
        assert label.text.split()[0] == direction["name"]
        hint = browser.find_element(By.ID, slider.get_attribute("aria-describedby"))
        assert hint.text.startswith(direction["description"])
    assert shown_name(browser) == BASE and text(browser, "steer-name") == BASE
    assert named(preview_of(browser, BASE)) == BASE
    choices = [o.get_attribute("value") for o in Select(browser.find_element(By.ID, "strip-along")).options]
    assert choices == [d["name"] for d in expected]


def test_a_slider_edits_the_name_and_reset_puts_it_back(browser, server):
    sliders = browser.find_elements(By.CSS_SELECTOR, "#sliders input")
    first = sliders[0].get_attribute("data-direction")
    ActionChains(browser).drag_and_drop_by_offset(sliders[0], 60, 0).perform()  # the mouse
    name = wait(browser, lambda driver: shown_name(driver) != BASE and shown_name(driver))
    match = re.fullmatch(re.escape(BASE) + rf"\^{first}=(\d(?:\.\d)?)", name)
    assert match and 0 < float(match[1]) <= 2, name
    assert float(sliders[0].get_attribute("value")) == float(match[1])
    image = preview_of(browser, name)
    assert browser.execute_script("return arguments[0].naturalWidth", image) > 0
    # a second slider, at its end: both edits, in the sliders' order
    second = sliders[1].get_attribute("data-direction")
    sliders[1].send_keys(Keys.END)
    both = f"{name}{',' if '^' in name else '^'}{second}=2"
    wait(browser, lambda driver: shown_name(driver) == both)
    preview_of(browser, both)
    download = browser.find_element(By.ID, "steer-download")
    assert named(download) == both and download.get_attribute("download").endswith(".png")
    served = fetch(download.get_attribute("href"))
    assert served == fetch(f"{server}/named.png?name={quote(both, safe='')}")
    browser.execute_script("window.copied = null; navigator.clipboard.writeText = async (t) => { window.copied = t; };")
    browser.find_element(By.ID, "steer-copy").click()
    wait(browser, lambda driver: driver.execute_script("return window.copied") == both)
    # reset: every slider at 0, the image as made
    browser.find_element(By.ID, "steer-reset").click()
    assert shown_name(browser) == BASE and named(preview_of(browser, BASE)) == BASE
    assert {s.get_attribute("value") for s in sliders} == {"0"}


def test_the_keyboard_moves_a_slider(browser, server):
    reset = browser.find_element(By.ID, "steer-reset")
    reset.send_keys(Keys.TAB, Keys.TAB, Keys.TAB)  # copy, download, then the first slider
    slider = browser.switch_to.active_element
    assert slider.get_attribute("type") == "range"
    direction = slider.get_attribute("data-direction")
    slider.send_keys(Keys.ARROW_RIGHT)
    wait(browser, lambda driver: shown_name(driver) == f"{BASE}^{direction}=0.1")
    assert text(browser, f"steer-{direction}-value") == "0.1"
    assert browser.execute_script("return arguments[0].matches(':focus-visible')", slider)
    outline = browser.execute_script("return getComputedStyle(arguments[0]).outlineStyle", slider)
    assert outline != "none"
    slider.send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT)
    wait(browser, lambda driver: shown_name(driver) == f"{BASE}^{direction}=-0.1")
    preview_of(browser, f"{BASE}^{direction}=-0.1")
    browser.find_element(By.ID, "steer-reset").send_keys(Keys.ENTER)
    assert shown_name(browser) == BASE


def test_an_edited_name_opens_with_its_sliders_there(browser, server):
    """Edits that fit the sliders set them; those up to the last that does not (3 is past +2) stay
    in the name as written, first, so that the name steered is the one opened."""
    directions = [s.get_attribute("data-direction") for s in browser.find_elements(By.CSS_SELECTOR, "#sliders input")]
    first, second, last = directions[0], directions[1], directions[-1]
    browser.execute_script("openDetail(arguments[0])", f"{BASE}^{first}=1,{second}=-0.5")
    wait(browser, lambda driver: shown_name(driver) == f"{BASE}^{first}=1,{second}=-0.5")
    values = [browser.find_element(By.ID, f"steer-{d}").get_attribute("value") for d in (first, second, last)]
    assert values == ["1", "-0.5", "0"]
    opened = f"{BASE}^{last}=3,{first}=1"
    browser.execute_script("openDetail(arguments[0])", opened)
    wait(browser, lambda driver: shown_name(driver) == opened)
    preview_of(browser, opened)
    assert browser.find_element(By.ID, f"steer-{last}").get_attribute("value") == "0"
    browser.find_element(By.ID, f"steer-{first}").send_keys(Keys.ARROW_RIGHT)
    wait(browser, lambda driver: shown_name(driver) == f"{BASE}^{last}=3,{first}=1.1")
    browser.find_element(By.ID, "steer-reset").click()
    assert shown_name(browser) == BASE
    browser.execute_script("openDetail(arguments[0])", BASE)


def test_a_refused_preview_says_why(browser, server):
    """An edited image the server refuses (no such direction) gets the server's sentence beside
    the preview, from the page's one retry of failed images."""
    browser.execute_script("openDetail(arguments[0])", f"{BASE}^nosuch=1")
    wait(browser, lambda driver: "There is no direction 'nosuch'" in text(driver, "steer-error"))
    browser.execute_script("openDetail(arguments[0])", BASE)
    wait(browser, lambda driver: text(driver, "steer-error") == "")


def test_a_strip_along_one_slider(browser, server):
    sliders = browser.find_elements(By.CSS_SELECTOR, "#sliders input")
    kept, along = sliders[0].get_attribute("data-direction"), sliders[-1].get_attribute("data-direction")
    sliders[0].send_keys(Keys.END)  # kept in the strip, which moves along the other
    Select(browser.find_element(By.ID, "strip-along")).select_by_value(along)
    browser.find_element(By.ID, "strip-go").click()
    strip = loaded(browser, "#strip-result:not([hidden]) #strip-image")[0]
    query = parse_qs(urlparse(strip.get_attribute("src")).query)
    assert query == {"of": [f"{BASE}^{kept}=2"], "along": [along], "amounts": ["-2,-1,0,1,2"]}
    width = browser.execute_script("return arguments[0].naturalWidth", strip)
    assert width >= 5 * browser.execute_script("return document.getElementById('steer-image').naturalWidth")
    captions = [s.text for s in browser.find_elements(By.CSS_SELECTOR, "#strip-caption span")]
    assert captions == [f"{along} -2", f"{along} -1", f"{along} 0", f"{along} +1", f"{along} +2"]
    assert text(browser, "strip-error") == ""
    browser.find_element(By.ID, "steer-reset").click()


def test_a_grey_generator_offers_greys(browser, server):
    """The tiny run is grey (/directions.json: colour false): its greys from black to white as
    swatches, no colour picker, and a grey made as the API makes it."""
    listed = json.loads(fetch(server + "/directions.json"))
    assert listed["colour"] is False
    assert "grey images" in text(browser, "colour-note") and "greys only" in text(browser, "colour-note")
    assert not browser.find_element(By.ID, "colour-pick").is_displayed()
    swatches = browser.find_elements(By.CSS_SELECTOR, "#swatches .swatch")
    assert [s.text for s in swatches] == ["black", "grey", "silver", "white"]
    swatches[3].send_keys(Keys.ENTER)  # the keyboard chooses one
    wait(browser, seen.visibility_of_element_located((By.ID, "colourway")), WAIT * 2)
    answer = json.loads(fetch(f"{server}/colourways.json?of={quote(BASE, safe='')}&colours=white"))["colourways"][0]
    assert swatches[3].get_attribute("aria-pressed") == "true"
    said = text(browser, "colourway-text")
    assert said.startswith(f"Asked for white ({answer['colour']}); reached {answer['reached']}, CIEDE2000 ")
    assert f"CIEDE2000 {answer['ciede2000']:.1f}:" in said
    image = loaded(browser, "#colourway-image")[0]
    assert named(image) == answer["name"] and answer["name"].startswith("z:")
    # the colourway opens in the detail view, where it is steered in turn
    browser.find_element(By.ID, "colourway-open").click()
    wait(browser, lambda driver: shown_name(driver) == answer["name"])
    assert text(browser, "detail-title") == f"{BASE} in white"
    assert text(browser, "steer-name").startswith(answer["name"][:14] + "…")


def test_a_run_without_directions_says_how_to_measure_them(browser, bare_server):
    assert json.loads(fetch(bare_server + "/directions.json"))["measured"] is False
    browser.set_window_size(1440, 1000)
    browser.get(bare_server + "/?seed=7")
    browser.find_element(By.CSS_SELECTOR, ".gallery .cell").click()
    wait(browser, lambda driver: "productgan directions RUN" in text(driver, "steering-status"))
    assert text(browser, "steering-status").startswith("Sliders and colours need this generator's directions")
    assert not browser.find_element(By.ID, "steering").is_displayed()
    assert not browser.find_elements(By.CSS_SELECTOR, "#sliders input")
    assert loaded(browser, "#detail-image")  # the rest of the view as ever
    browser.find_element(By.ID, "more").click()
    assert len(loaded(browser, "#variants .cell img")) == 8
    browser.find_element(By.ID, "close").click()


@pytest.mark.parametrize("width", [390, 1440])
def test_steering_fits_and_screenshots(browser, server, width, tmp_path):
    """At 390 and 1440 px, with a slider moved, a colour chosen and a strip shown: no horizontal
    scroll, 44-pixel buttons; the picture of the steering (to PRODUCTGAN_SCREENSHOTS when set)."""
    open_steering(browser, server, width)
    listed = json.loads(fetch(server + "/directions.json"))
    sliders = browser.find_elements(By.CSS_SELECTOR, "#sliders input")
    sliders[0].send_keys(*[Keys.ARROW_RIGHT] * 10)
    if len(sliders) > 2:
        sliders[2].send_keys(*[Keys.ARROW_LEFT] * 5)
    swatch = "navy" if listed["colour"] else "grey"
    browser.find_element(By.CSS_SELECTOR, f".swatch[data-colour='{swatch}']").click()
    wait(browser, seen.visibility_of_element_located((By.ID, "colourway")), WAIT * 2)
    browser.find_element(By.ID, "strip-go").click()
    loaded(browser, "#steer-image, #colourway-image, #strip-result:not([hidden]) #strip-image")
    widths = "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    scroll, client = browser.execute_script(widths)
    assert scroll <= client, (scroll, client)
    dialog = "const d = document.getElementById('detail'); return [d.scrollWidth, d.clientWidth]"
    scroll, client = browser.execute_script(dialog)
    assert scroll <= client, (scroll, client)
    for button in browser.find_elements(By.CSS_SELECTOR, "#steering-section button, #steering-section .button"):
        assert button.size["height"] >= 44, button.get_attribute("id") or button.text
    # the steering section, from the dialog's heading down, in one picture
    top = browser.execute_script(
        "const d = document.getElementById('detail'), s = document.getElementById('steering-section');"
        "return s.getBoundingClientRect().top - d.getBoundingClientRect().top + d.scrollTop"
        " - d.querySelector('.detail-head').offsetHeight;"
    )
    height = browser.execute_script(
        "return document.getElementById('steering-section').offsetHeight"
        " + document.querySelector('#detail .detail-head').offsetHeight"
    )
    chrome = browser.execute_script("return window.outerHeight - window.innerHeight")
    browser.set_window_size(width, min(height + chrome + 48, 4000))
    browser.execute_script("document.getElementById('detail').scrollTop = arguments[0]", top)
    loaded(browser, "#steer-image, #colourway-image, #strip-image")
    time.sleep(0.3)
    out = Path(os.environ.get("PRODUCTGAN_SCREENSHOTS") or tmp_path)
    browser.save_screenshot(str(out / f"studio-{width}-steering.png"))
    browser.find_element(By.ID, "close").click()
