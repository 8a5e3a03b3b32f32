"""data/colour.py and data/product.py: colour names and codes, sRGB <-> CIELAB, CIEDE2000 against
Sharma, Wu and Dalal's published pairs, and the attributes a product photo shows, measured on
synthetic images whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from productgan.data.colour import (
    COLOUR_NAMES,
    MAX_COLOURS,
    ciede2000,
    grey_to_lab,
    hex_code,
    lab_to_srgb,
    parse_colour,
    parse_colours,
    srgb_to_lab,
)
from productgan.data.product import (
    ATTRIBUTES,
    background_values,
    hue_difference,
    main_colours,
    mask_iou,
    measure,
    product_box,
    product_mask,
)
from productgan.errors import UsageError

# Sharma, Wu and Dalal (2005), "The CIEDE2000 color-difference formula: implementation notes,
# supplementary test data, and mathematical observations", Table 1: L1 a1 b1, L2 a2 b2, dE00.
SHARMA = """
50.0000 2.6772 -79.7751 50.0000 0.0000 -82.7485 2.0425
50.0000 3.1571 -77.2803 50.0000 0.0000 -82.7485 2.8615
50.0000 2.8361 -74.0200 50.0000 0.0000 -82.7485 3.4412
50.0000 -1.3802 -84.2814 50.0000 0.0000 -82.7485 1.0000
50.0000 -1.1848 -84.8006 50.0000 0.0000 -82.7485 1.0000
50.0000 -0.9009 -85.5211 50.0000 0.0000 -82.7485 1.0000
50.0000 0.0000 0.0000 50.0000 -1.0000 2.0000 2.3669
50.0000 -1.0000 2.0000 50.0000 0.0000 0.0000 2.3669
50.0000 2.4900 -0.0010 50.0000 -2.4900 0.0009 7.1792
50.0000 2.4900 -0.0010 50.0000 -2.4900 0.0010 7.1792
50.0000 2.4900 -0.0010 50.0000 -2.4900 0.0011 7.2195
50.0000 2.4900 -0.0010 50.0000 -2.4900 0.0012 7.2195
50.0000 -0.0010 2.4900 50.0000 0.0009 -2.4900 4.8045
50.0000 -0.0010 2.4900 50.0000 0.0010 -2.4900 4.8045
50.0000 -0.0010 2.4900 50.0000 0.0011 -2.4900 4.7461
50.0000 2.5000 0.0000 50.0000 0.0000 -2.5000 4.3065
50.0000 2.5000 0.0000 73.0000 25.0000 -18.0000 27.1492
50.0000 2.5000 0.0000 61.0000 -5.0000 29.0000 22.8977
50.0000 2.5000 0.0000 56.0000 -27.0000 -3.0000 31.9030
50.0000 2.5000 0.0000 58.0000 24.0000 15.0000 19.4535
50.0000 2.5000 0.0000 50.0000 3.1736 0.5854 1.0000
50.0000 2.5000 0.0000 50.0000 3.2972 0.0000 1.0000
50.0000 2.5000 0.0000 50.0000 1.8634 0.5757 1.0000
50.0000 2.5000 0.0000 50.0000 3.2592 0.3350 1.0000
60.2574 -34.0099 36.2677 60.4626 -34.1751 39.4387 1.2644
63.0109 -31.0961 -5.8663 62.8187 -29.7946 -4.0864 1.2630
61.2901 3.7196 -5.3901 61.4292 2.2480 -4.9620 1.8731
35.0831 -44.1164 3.7933 35.0232 -40.0716 1.5901 1.8645
22.7233 20.0904 -46.6940 23.0331 14.9730 -42.5619 2.0373
36.4612 47.8580 18.3852 36.2715 50.5065 21.2231 1.4146
90.8027 -2.0831 1.4410 91.1528 -1.6435 0.0447 1.4441
90.9257 -0.5406 -0.9208 88.6381 -0.8985 -0.7239 1.5381
6.7747 -0.2908 -2.4247 5.8714 -0.0985 -2.2286 0.6377
2.0776 0.0795 -1.1350 0.9033 -0.0636 -0.5514 0.9082
"""
PAIRS = np.array([[float(x) for x in line.split()] for line in SHARMA.strip().splitlines()])


def one_sentence(error: BaseException) -> str:
    text = str(error)
    assert text.endswith(".") and ". " not in text and "\n" not in text, text
    return text


# --- CIEDE2000 -----------------------------------------------------------------------------------


def test_ciede2000_gives_every_published_pair_to_four_decimals():
    assert PAIRS.shape == (34, 7)
    got = ciede2000(PAIRS[:, :3], PAIRS[:, 3:6])
    assert got.shape == (34,)
    np.testing.assert_allclose(got, PAIRS[:, 6], rtol=0, atol=1e-4)
    # the five the brief names, one at a time (scalars broadcast as well as batches)
    for first, second, expected in [
        ((50, 2.6772, -79.7751), (50, 0, -82.7485), 2.0425),
        ((50, 0, 0), (50, -1, 2), 2.3669),
        ((50, 2.49, -0.001), (50, -2.49, 0.0009), 7.1792),
        ((50, 2.5, 0), (73, 25, -18), 27.1492),
        ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ]:
        assert abs(float(ciede2000(np.array(first), np.array(second))) - expected) < 1e-4


def test_ciede2000_is_symmetric_zero_on_itself_and_broadcasts():
    rng = np.random.default_rng(0)
    a = np.column_stack([rng.uniform(0, 100, 500), rng.uniform(-100, 100, (500, 2))])
    b = np.column_stack([rng.uniform(0, 100, 500), rng.uniform(-100, 100, (500, 2))])
    np.testing.assert_allclose(ciede2000(a, b), ciede2000(b, a), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ciede2000(PAIRS[:, 3:6], PAIRS[:, :3]), PAIRS[:, 6], rtol=0, atol=1e-4)
    assert np.all(ciede2000(a, a) == 0)
    assert np.all(ciede2000(a, b) > 0)
    # one colour against many: the same as each pair alone
    many = ciede2000(a[0], b)
    assert many.shape == (500,)
    assert [float(x) for x in many[:20]] == [float(ciede2000(a[0], x)) for x in b[:20]]


# --- sRGB and CIELAB -----------------------------------------------------------------------------


def test_srgb_to_lab_known_values():
    np.testing.assert_allclose(srgb_to_lab([255, 255, 255]), [100, 0, 0], atol=1e-3)
    np.testing.assert_allclose(srgb_to_lab([0, 0, 0]), [0, 0, 0], atol=1e-9)
    # sRGB red, D65 (Lindbloom's calculator): L* 53.2408, a* 80.0925, b* 67.2032
    np.testing.assert_allclose(srgb_to_lab([255, 0, 0]), [53.2408, 80.0925, 67.2032], atol=1e-3)
    # grey 128: linear 0.21586, L* 53.585; a grey has no a*, b*
    np.testing.assert_allclose(grey_to_lab(128), [53.585, 0, 0], atol=1e-3)
    np.testing.assert_allclose(grey_to_lab(np.array([[0, 255]])), [[[0, 0, 0], [100, 0, 0]]], atol=1e-3)
    assert srgb_to_lab(np.zeros((2, 5, 3))).shape == (2, 5, 3)


def test_lab_round_trips_to_srgb():
    rng = np.random.default_rng(1)
    rgb = rng.uniform(0, 255, (2000, 3))
    np.testing.assert_allclose(lab_to_srgb(srgb_to_lab(rgb)), rgb, rtol=0, atol=1e-3)
    corners = np.array([[r, g, b] for r in (0, 255) for g in (0, 255) for b in (0, 255)], dtype=float)
    np.testing.assert_allclose(lab_to_srgb(srgb_to_lab(corners)), corners, rtol=0, atol=1e-3)
    # L* alone (a grey generator's targets) is the grey of that lightness
    grey = lab_to_srgb(grey_to_lab(np.array([30.0, 128.0, 200.0]))[:, :1])
    np.testing.assert_allclose(grey, np.repeat([[30.0], [128.0], [200.0]], 3, axis=1), atol=1e-3)
    # out of gamut: clipped to 0..255
    out = lab_to_srgb(np.array([50.0, 200.0, -200.0]))
    assert out.min() >= 0 and out.max() <= 255


# --- names and codes -----------------------------------------------------------------------------


def test_colour_names_and_codes():
    assert parse_colour("navy") == (0, 0, 128)
    assert parse_colour(" NaVy ") == (0, 0, 128)
    assert parse_colour("#1f3a93") == (0x1F, 0x3A, 0x93)
    assert parse_colour("#1F3A93") == (0x1F, 0x3A, 0x93)
    assert parse_colour("#abc") == (0xAA, 0xBB, 0xCC)
    assert parse_colour("white") == (255, 255, 255) and parse_colour("black") == (0, 0, 0)
    assert parse_colour("grey") == parse_colour("gray") == (128, 128, 128)
    for name, code in COLOUR_NAMES.items():  # every name reads to its own code
        assert hex_code(parse_colour(name)) == code, name
    assert parse_colours("navy, #c0392b ,olive") == [(0, 0, 128), (0xC0, 0x39, 0x2B), (128, 128, 0)]
    assert parse_colours(["white", "#000"]) == [(255, 255, 255), (0, 0, 0)]
    assert hex_code((31, 58, 147)) == "#1f3a93" and hex_code(np.array([300.0, -4.0, 127.6])) == "#ff0080"


@pytest.mark.parametrize("text", ["nosuch", "#12345", "#ggg", "1f3a93", "#1f3a93ff", "", "rgb(0,0,0)", "navy blue"])
def test_a_bad_colour_is_refused_in_one_sentence(text):
    with pytest.raises(UsageError) as refused:
        parse_colour(text)
    sentence = one_sentence(refused.value)
    assert "is not a colour" in sentence and "#RRGGBB" in sentence


def test_a_bad_list_of_colours_is_refused_in_one_sentence():
    with pytest.raises(UsageError, match="No colour was given") as refused:
        parse_colours(" , ,")
    one_sentence(refused.value)
    with pytest.raises(UsageError, match=f"at most {MAX_COLOURS}") as refused:
        parse_colours(",".join(["navy"] * (MAX_COLOURS + 1)))
    one_sentence(refused.value)
    assert len(parse_colours(",".join(["navy"] * MAX_COLOURS))) == MAX_COLOURS
    with pytest.raises(UsageError, match="'teel' is not a colour"):
        parse_colours("navy,teel")


# --- products on a plain background --------------------------------------------------------------


def canvas(channels: int, size: int, background: int) -> np.ndarray:
    return np.full((1, channels, size, size), background, dtype=np.uint8)


def test_measure_a_coloured_rectangle_on_white():
    colour = (0x1F, 0x3A, 0x93)
    images = canvas(3, 32, 255)
    images[0, :, 8:16, 4:28] = np.array(colour, dtype=np.uint8)[:, None, None]  # 8 high, 24 wide
    white = background_values({"background": 255}, 3)
    np.testing.assert_array_equal(white, [255, 255, 255])
    mask = product_mask(images, white)
    assert mask.sum() == 8 * 24 and mask[0, 8:16, 4:28].all()
    assert product_box(mask[0]) == (8, 16, 4, 28)
    values = measure(images, white)
    assert set(values) == set(ATTRIBUTES)
    expected = srgb_to_lab(np.array(colour, dtype=float))
    assert values["size"][0] == pytest.approx(8 * 24 / (32 * 32))
    assert values["aspect"][0] == pytest.approx(math.log2(3))
    np.testing.assert_allclose([values["lightness"][0], values["a"][0], values["b"][0]], expected, atol=1e-9)
    assert values["saturation"][0] == pytest.approx(math.hypot(expected[1], expected[2]))
    assert values["hue"][0] == pytest.approx(math.degrees(math.atan2(expected[2], expected[1])) % 360)
    assert 250 < values["hue"][0] < 320  # a blue
    np.testing.assert_allclose(main_colours(images, white)[0], expected, atol=1e-9)


def test_measure_a_grey_rectangle_on_black():
    images = canvas(1, 28, 0)
    images[0, 0, 2:26, 8:20] = 180  # 24 high, 12 wide
    black = background_values({"background": 0}, 1)
    values = measure(images, black)
    assert values["size"][0] == pytest.approx(24 * 12 / 28**2)
    assert values["aspect"][0] == pytest.approx(-1.0)
    assert values["lightness"][0] == pytest.approx(grey_to_lab(180)[0], abs=1e-9)
    assert abs(values["a"][0]) < 1e-4 and abs(values["b"][0]) < 1e-4 and values["saturation"][0] < 1e-4
    # an RGB background recorded for a grey generator is its mean
    np.testing.assert_array_equal(background_values({"background": [0, 30, 60]}, 1), [30.0])
    np.testing.assert_array_equal(background_values({}, 3), [255, 255, 255])


def test_the_main_colour_is_the_core_not_the_blended_edge():
    colour = np.array([200, 40, 40], dtype=np.uint8)
    images = canvas(3, 32, 255)
    images[0, :, 6:26, 6:26] = ((colour.astype(int) + 255) // 2).astype(np.uint8)[:, None, None]  # a blended rim
    images[0, :, 8:24, 8:24] = colour[:, None, None]  # 256 core pixels, 144 of rim
    white = np.array([255.0, 255.0, 255.0])
    np.testing.assert_allclose(main_colours(images, white)[0], srgb_to_lab(colour.astype(float)), atol=1e-9)
    assert measure(images, white)["size"][0] == pytest.approx(400 / 1024)


def test_nothing_but_background_measures_nan():
    images = np.concatenate([canvas(3, 16, 255), canvas(3, 16, 255)])
    images[1, :, 2:10, 2:6] = 0
    images[0, :, 0, 0] = 240  # within the threshold of the background: still background
    values = measure(images, np.array([255.0, 255.0, 255.0]))
    for name in ATTRIBUTES:
        assert np.isnan(values[name][0]), name
        assert np.isfinite(values[name][1]), name
    assert values["aspect"][1] == pytest.approx(-1.0)
    assert np.isnan(main_colours(images, np.array([255.0] * 3))[0]).all()
    assert product_box(np.zeros((8, 8), dtype=bool)) is None


def test_product_box_leaves_out_a_stray_pixel_of_a_large_image():
    mask = np.zeros((128, 128), dtype=bool)
    mask[20:80, 10:110] = True  # rows of 100 and columns of 60: 2% is 2 and 1.2 pixels
    mask[100, 120] = True  # a stray pixel, in a row and a column of its own
    assert product_box(mask) == (20, 80, 10, 110)
    mask[100, 60:63] = True  # a row of 3 of 100 counts
    assert product_box(mask) == (20, 101, 10, 110)


def test_mask_iou_known_values():
    left = np.zeros((10, 10), dtype=bool)
    left[:, :5] = True
    top = np.zeros((10, 10), dtype=bool)
    top[:5] = True
    empty = np.zeros((10, 10), dtype=bool)
    a = np.stack([left, left, empty, left])
    b = np.stack([top, left, empty, empty])
    np.testing.assert_allclose(mask_iou(a, b), [25 / 75, 1.0, 1.0, 0.0])
    assert mask_iou(left, top) == pytest.approx(1 / 3)


def test_hue_difference_goes_the_short_way_round():
    got = hue_difference(np.array([350.0, 10, 0, 90]), np.array([10.0, 350, 180, 80]))
    np.testing.assert_allclose(got, [20, -20, -180, -10])
