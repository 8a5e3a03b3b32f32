"""A product photo fitted as the generator expects it, and what it expects.

The photo goes through the fitting the run's data had: ``prepare``'s for a folder of photos (its
colour mode, the background of padding and transparency, pad or crop, the size); for
Fashion-MNIST, what Zalando's photos went through to become its images (trimmed to the product,
the longest side to 28 pixels, centred on black). A photo whose own background is the opposite of
the data's (a dark product on white for Fashion-MNIST's light products on black) is inverted
first, for grey data; ``FittedPhoto`` records what was done and why, ``expected_photo`` says what
the generator expects in one phrase (``"light products on a black background, 28x28 grey"``).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from productgan.data.photos import MAX_FILE_BYTES, Options, load_image
from productgan.data.prepare import fit_fashion_mnist
from productgan.errors import UsageError
from productgan.explore.likeness import plain_background
from productgan.generator.sampler import Sampler

MAX_PHOTO_BYTES = 20 * 2**20  # an upload or a file larger than this is refused unread
LIGHT = 128  # a background whose mean grey (0..255) is at least this counts as light
# A photo is trimmed at its own size, or at most this many times the native size, then reduced.
TRIM_OVERSAMPLE = 4
TRIM_LEVEL = 24  # grey above this (0..255, on the black background) is product, not background


def fit_photo(data: bytes, meta: dict, image_size: int, channels: int, invert: bool = False) -> np.ndarray:
    """Encoded image bytes -> uint8 C x S x S at the training size, fitted as the run's data was
    (``meta`` is the packed dataset's, as recorded in the export): as ``prepare`` fits a folder's
    photos, or, for Fashion-MNIST, as Zalando's photos became Fashion-MNIST's images (trimmed to
    the product, centred, 28 x 28, grey; ``trim_like_fashion_mnist``). With ``invert`` the photo
    is padded and made opaque on the opposite of the data's background, then inverted, so a dark
    product on white becomes a light one on black. Raises a UsageError saying why a file cannot
    be used."""
    if len(data) > MAX_PHOTO_BYTES:
        raise UsageError(f"The photo is {len(data) / 2**20:.0f} MiB; at most {MAX_PHOTO_BYTES // 2**20} MiB is taken.")
    if not _is_fashion_mnist(meta):
        return _decode(data, meta, image_size, channels, invert)
    native = int((meta.get("native_size") or [28, 28])[0])
    photo = _decode(data, meta, native, 1, invert)
    if not _fills_frame(photo[0]):
        side = min(max(_photo_side(data), native), TRIM_OVERSAMPLE * native)
        photo = trim_like_fashion_mnist(_decode(data, meta, side, 1, invert)[0], native)[None]
    return fit_fashion_mnist(photo, image_size)[0][0]


def _photo_side(data: bytes) -> int:
    """The longer side of the photo in ``data`` from its header (0 when unreadable: the decoding
    that follows says why)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # load_image judges the size
            with Image.open(io.BytesIO(data)) as image:
                return max(image.size)
    except Exception:  # noqa: BLE001 (any file Pillow cannot open: load_image gives the sentence)
        return 0


def _decode(data: bytes, meta: dict, size: int, channels: int, invert: bool) -> np.ndarray:
    """The photo as ``prepare`` fits it to a square of ``size`` on the data's background (on its
    opposite, then inverted, with ``invert``): uint8 C x size x size."""
    background = data_background(meta)
    if invert:
        background = tuple(255 - value for value in background)
    fit = "pad" if _is_fashion_mnist(meta) else meta.get("fit") or "pad"
    try:
        photo = load_image(data, Options(size, channels, fit, background, MAX_FILE_BYTES))
    except ValueError as error:
        raise UsageError(f"The photo cannot be used: it is {error}.")
    return 255 - photo if invert else photo


def _product_box(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right), exclusive ends, of the pixels brighter than TRIM_LEVEL in a
    grey H x W image on black; None when there are none."""
    rows = np.flatnonzero((image > TRIM_LEVEL).any(axis=1))
    columns = np.flatnonzero((image > TRIM_LEVEL).any(axis=0))
    if not len(rows):
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1


def _fills_frame(image: np.ndarray) -> bool:
    """True when a product already spans its square, as in Fashion-MNIST's own images (or there is
    no product to trim to): such a photo is taken as it is."""
    box = _product_box(image)
    return box is None or max(box[1] - box[0], box[3] - box[2]) >= image.shape[-1] - 2


def trim_like_fashion_mnist(image: np.ndarray, native: int = 28) -> np.ndarray:
    """A grey H x W image of a light product on black -> native x native, as Fashion-MNIST made
    its images from Zalando's photos: trimmed to the product, its longest side resized to the
    frame, centred on black (Xiao et al., 2017)."""
    box = _product_box(image)
    if box is None:
        return np.asarray(Image.fromarray(image).resize((native, native), Image.Resampling.LANCZOS))
    top, bottom, left, right = box
    product = image[top:bottom, left:right]
    side = max(product.shape)
    square = np.zeros((side, side), np.uint8)
    y, x = (side - product.shape[0]) // 2, (side - product.shape[1]) // 2
    square[y : y + product.shape[0], x : x + product.shape[1]] = product
    return np.asarray(Image.fromarray(square).resize((native, native), Image.Resampling.LANCZOS))


def _is_fashion_mnist(meta: dict) -> bool:
    return meta.get("source") == "fashion-mnist" or meta.get("dataset") == "fashion-mnist"


def data_background(meta: dict) -> tuple[int, int, int]:
    """The RGB background the run's data was fitted on (padding, transparency), as recorded."""
    background = meta.get("background")
    if background is None:
        background = 0 if _is_fashion_mnist(meta) else 255
    if isinstance(background, int | float):
        background = [background] * 3
    return tuple(int(value) for value in background)


def _tone(rgb: tuple[int, int, int]) -> str:
    """'black', 'white', or 'light'/'dark' with the colour: how a background is named to a user."""
    if rgb == (0, 0, 0):
        return "black"
    if rgb == (255, 255, 255):
        return "white"
    return f"{'light' if _is_light(np.mean(rgb)) else 'dark'} ({', '.join(map(str, rgb))})"


def _is_light(grey: float) -> bool:
    return grey >= LIGHT


def expected_photo(sampler: Sampler) -> dict:
    """What this generator expects of a photo, for a user about to upload one: ``text``, one
    phrase ("light products on a black background, 28x28 grey"), and its parts: the background
    (RGB and ``light``), the native size, the colour mode, and what ``fit_to_generator`` does to
    a photo on the opposite background (``opposite_background``: "inverted" for grey data, "kept"
    for colour data, whose products would change colour)."""
    info = sampler.info
    background = data_background(info)
    light = _is_light(float(np.mean(background)))
    width, height = sampler.native_size
    colour = "grey" if sampler.generator.channels == 1 else "colour"
    # Fashion-MNIST's images are negatives: light products on black. Elsewhere the products'
    # own tone is not recorded, only the background's.
    products = "light products" if _is_fashion_mnist(info) else "products"
    opposite = "inverted" if sampler.generator.channels == 1 else "kept"
    return {
        "text": f"{products} on a {_tone(background)} background, {width}x{height} {colour}",
        "background": list(background),
        "light_background": light,
        "native_size": [width, height],
        "colour": colour,
        "opposite_background": opposite,
    }


@dataclass(frozen=True)
class FittedPhoto:
    """A photo fitted for the generator, and how: ``pixels`` (uint8 C x S x S at the training
    size); whether it was ``inverted`` and ``trimmed`` (to the product, as Fashion-MNIST's images
    were); whether its own background is the ``opposite`` of the data's; the median grey of that
    background (0..255; None when transparent); the sentence that says what was done and why; and
    the photo's plain-border and product shares as it was (``plain_background``, for
    ``NeighbourIndex.likeness``)."""

    pixels: np.ndarray
    inverted: bool
    trimmed: bool
    opposite: bool
    border_grey: float | None
    note: str
    background: tuple[float, float]

    def record(self) -> dict:
        """The fit as projection.json and the API write it."""
        grey = None if self.border_grey is None else round(self.border_grey, 1)
        return {
            "inverted": self.inverted,
            "trimmed": self.trimmed,
            "photo_background_grey": grey,
            "opposite_background": self.opposite,
            "note": self.note,
        }


def fit_to_generator(data: bytes, sampler: Sampler, invert: bool | None = None) -> FittedPhoto:
    """A photo fitted as the generator expects it (``expected_photo``): as ``fit_photo`` fits it,
    and, with ``invert`` None, inverted when its own background is light and the data's dark or
    the reverse, for grey data only (inverting a colour photo would change its products' colours;
    the note says so). ``invert`` True or False decides instead."""
    meta, size, channels = sampler.info, sampler.generator.image_size, sampler.generator.channels
    fashion = _is_fashion_mnist(meta)
    check_size = int((meta.get("native_size") or [28])[0]) if fashion else size
    plain = _decode(data, meta, check_size, channels, False)
    inverted = _decode(data, meta, check_size, channels, True)
    # Padding and transparent pixels take opposite colours in the two decodings (the second's
    # inversion undone), so the photo's own pixels are those where they agree.
    own = (np.abs(plain.astype(np.int16) - (255 - inverted.astype(np.int16))) <= 8).all(axis=0)
    border, border_share, product_share = plain_background(plain, own)
    background = data_background(meta)
    data_tone, data_light = _tone(background), _is_light(float(np.mean(background)))
    photo_tone = None if border is None else ("light" if _is_light(border) else "dark")
    opposite = photo_tone is not None and (photo_tone == "light") != data_light
    if invert is None:
        invert = opposite and channels == 1
        if opposite and not invert:
            note = (
                f"The photo's background is {photo_tone} and the training images' {data_tone}; it was not inverted, "
                f"as that would change a colour product's colours: a photo on {data_tone} fits best."
            )
        elif invert:
            note = f"The photo's background is {photo_tone} and the training images' {data_tone}: it was inverted."
        elif photo_tone is None:
            note = f"The photo's transparent background became the training images' {data_tone}."
        else:
            note = f"The photo's background is {photo_tone}, as the training images' ({data_tone}) is."
    else:
        note = "The photo was inverted, as asked." if invert else "The photo was not inverted, as asked."
    trimmed = fashion and not _fills_frame((inverted if invert else plain)[0])
    if trimmed:
        note += " It was trimmed to the product and centred, as Fashion-MNIST's images were."
    pixels = fit_photo(data, meta, size, channels, invert=bool(invert))
    return FittedPhoto(pixels, bool(invert), trimmed, opposite, border, note, (border_share, product_share))
