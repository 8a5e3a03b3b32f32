"""Read one product photo and fit it to a square: what ``prepare`` does to each file of a folder,
and what ``project`` does to the photo it is given.

A file is read only when stat says it is a regular file of at most ``MAX_FILE_BYTES``
(:func:`file_problem`, checked again on the open file). ``load_image`` decodes it with Pillow (its
decompression-bomb guard kept), turns it upright by its EXIF orientation, converts it to RGB or
grey with transparency composited on the background colour, pads (or centre-crops) it to a square
and resizes it with Lanczos. ``decode_file`` does all of it in a worker process and raises for
nothing: whatever goes wrong with one file becomes the reason that file is skipped.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from productgan.config import check_image_size
from productgan.errors import UsageError, first_line

BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128), "gray": (128, 128, 128)}
MAX_FILE_BYTES = 64 * 2**20  # per file: far above any product photo; a larger file is skipped unread
_SPECIAL_FILES = (
    (stat.S_ISFIFO, "named pipe"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISDIR, "folder"),
)


def parse_background(text: str) -> tuple[int, int, int]:
    """'white', 'black', 'grey', '#RRGGBB' or 'R,G,B' -> an RGB tuple."""
    value = str(text).strip().lower()
    if value in BACKGROUNDS:
        return BACKGROUNDS[value]
    try:
        if value.startswith("#") and len(value) == 7:
            rgb = tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))
        else:
            rgb = tuple(int(part) for part in value.split(","))
        if len(rgb) == 3 and all(0 <= c <= 255 for c in rgb):
            return rgb  # type: ignore[return-value]
    except ValueError:
        pass
    raise UsageError(f"--background {text!r} is not a colour; use white, black, grey, #RRGGBB or R,G,B (0-255).")


@dataclass(frozen=True)
class Options:
    """How a photo is fitted: the square's side, the channels, pad or crop, and the colour of
    padding and transparency."""

    size: int  # side of the square, in pixels
    channels: int  # 1 (grey) or 3 (RGB)
    fit: str  # "pad" (to a square, with the background) or "crop" (the centre square)
    background: tuple[int, int, int]  # RGB of padding and transparent pixels
    max_file_bytes: int = MAX_FILE_BYTES  # a larger file is skipped unread


def check_options(size: int, channels: int, fit: str, background: str) -> Options:
    """The Options of prepare's ``--size``, ``--channels``, ``--fit`` and ``--background``, or one
    sentence on the first that cannot be used."""
    size = check_image_size(size)
    if channels not in (1, 3):
        raise UsageError(f"--channels must be 1 (grey) or 3 (RGB), not {channels}.")
    if fit not in ("pad", "crop"):
        raise UsageError(f"--fit must be 'pad' or 'crop', not {fit!r}.")
    return Options(size, channels, fit, parse_background(background), max_file_bytes=MAX_FILE_BYTES)


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey modes -> 8-bit 'L' (Pillow's own conversion clips instead of scaling)."""
    array = np.asarray(image).astype(np.float64)
    if image.mode.startswith("I;16") or array.max(initial=0) > 255:
        array = array / 257.0
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), "L")


def _flatten(image: Image.Image, options: Options) -> Image.Image:
    """Any Pillow mode -> RGB or L, transparent pixels composited on the background."""
    if image.mode.startswith("I") or image.mode == "F":
        image = _to_8bit(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, options.background + (255,))
        image = Image.alpha_composite(canvas, rgba).convert("RGB")
    elif image.mode != "RGB":
        image = image.convert("RGB")
    return image.convert("L") if options.channels == 1 else image


def _fit(image: Image.Image, options: Options) -> Image.Image:
    width, height = image.size
    if options.fit == "crop":
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    elif width != height:
        side = max(width, height)
        fill = options.background if image.mode == "RGB" else int(round(np.mean(options.background)))
        canvas = Image.new(image.mode, (side, side), fill)
        canvas.paste(image, ((side - width) // 2, (side - height) // 2))
        image = canvas
    # reducing_gap: a fast box reduction down to 3x the target first, then Lanczos.
    return image.resize((options.size, options.size), Image.Resampling.LANCZOS, reducing_gap=3.0)


def load_image(data: bytes, options: Options) -> np.ndarray:
    """Encoded image bytes -> uint8 C x S x S; raises ValueError with the reason it cannot."""
    if not data:
        raise ValueError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format == "JPEG":
                # Let the JPEG decoder skip detail the target size does not need (much faster).
                image.draft("RGB" if options.channels == 3 else "L", (options.size * 2, options.size * 2))
            image.load()
            image = ImageOps.exif_transpose(image)
    except Image.DecompressionBombError:
        raise ValueError(f"too large (over {2 * Image.MAX_IMAGE_PIXELS:,} pixels; Pillow's decompression-bomb guard)")
    except UnidentifiedImageError:
        raise ValueError("not an image Pillow can read")
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as error:
        raise ValueError(f"damaged or truncated ({str(error).strip() or type(error).__name__})")
    try:
        fitted = _fit(_flatten(image, options), options)
    except (OSError, ValueError) as error:
        raise ValueError(f"unsupported image ({image.mode} mode: {error})")
    array = np.asarray(fitted, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f}".removesuffix(".0")


def file_problem(status: os.stat_result, max_bytes: int) -> str | None:
    """Why a file with this stat is not read: it is no regular file (a named pipe would block the
    read for ever, /dev/zero never ends), or it is over ``max_bytes``; None when it may be read."""
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for is_kind, name in _SPECIAL_FILES if is_kind(status.st_mode)), "special file")
        return f"not a regular file ({kind})"
    if status.st_size > max_bytes:
        return f"too big ({_mib(status.st_size)} MiB; files over {_mib(max_bytes)} MiB are skipped unread)"
    return None


def _read_regular_file(path: str, max_bytes: int) -> bytes:
    """The bytes of the regular file at ``path``, or a ValueError with the reason it is not read.

    The tree may change after it was listed, so the checks of :func:`file_problem` are made again
    on the open file. It is opened non-blocking: opening a named pipe would otherwise wait for a
    writer for ever. At most ``max_bytes + 1`` bytes are read, so a file that grows cannot eat memory.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as f:
        problem = file_problem(os.fstat(fd), max_bytes)
        if problem is not None:
            raise ValueError(problem)
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"too big (grew past {_mib(max_bytes)} MiB after it was listed; larger files are skipped)")
    return data


def decode_file(task: tuple[str, Options]) -> tuple[str | None, np.ndarray | None, str | None]:
    """(path, options) -> (sha256, image, reason it was skipped); runs in a worker process. It
    raises for no file: whatever goes wrong with one becomes the reason that file is skipped."""
    path, options = task
    try:
        data = _read_regular_file(path, options.max_file_bytes)
    except OSError as error:
        return None, None, f"unreadable ({error.strerror or type(error).__name__})"
    except ValueError as error:
        return None, None, str(error)
    except MemoryError:
        return None, None, "out of memory while reading"
    digest = hashlib.sha256(data).hexdigest()
    try:
        return digest, load_image(data, options), None
    except ValueError as error:
        return digest, None, str(error)
    except MemoryError:
        return digest, None, "out of memory while decoding"
    except Exception as error:  # a decoder's bug on one odd file must not end the run
        return digest, None, f"could not be decoded ({type(error).__name__}: {first_line(error)})"
