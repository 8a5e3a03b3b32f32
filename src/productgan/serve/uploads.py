"""What a request sends: bodies read off the event loop (``read_body``), a selection of image names
(``parse_selection``), a photo's multipart form read up to its ``photo`` part and no further
(``photo_body``, ``form_file``), and the pixels a photo may have (``check_pixels``)."""

from __future__ import annotations

import io
import json
import warnings
from typing import Any

from fastapi import Request
from PIL import Image
from pydantic import BaseModel, Field
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from productgan.errors import UsageError
from productgan.serve.patterns import NAME_HELP
from productgan.serve.problems import TooLarge
from productgan.serve.service import Service

# A photo's largest pixel count: a 48-megapixel camera's, well under what takes the server's memory.
MAX_PHOTO_PIXELS = 50_000_000

PHOTO_FIELD = "photo"

# Form parts read before the photo's: a form from a browser or curl has one or two.
MAX_FORM_PARTS = 8


def photo_body() -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [PHOTO_FIELD],
                    "properties": {
                        PHOTO_FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "The product photo: an image file.",
                        }
                    },
                }
            }
        },
    }


class _Found(Exception):
    """The field's part has ended: the rest of the form is not read."""


def form_file(body: bytes, content_type: str, field: str) -> bytes:
    """The bytes of the form field ``field`` of a multipart/form-data body, parsed in memory up to
    the end of that field's part; a UsageError when the body is not such a form, has no such field,
    or has more than MAX_FORM_PARTS parts before it. (A route calls this in a thread: a body of
    many small parts takes seconds to parse through.)"""
    how = f"Send the photo as multipart/form-data with a file field named {field!r} (curl -F {field}=@photo.jpg)."
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UsageError(how)
    parts = 0
    headers: dict[bytes, bytes] = {}
    header_name, header_value, data = bytearray(), bytearray(), bytearray()
    wanted = [False]  # whether the part being read is the field's

    def begin() -> None:
        nonlocal parts
        parts += 1
        if parts > MAX_FORM_PARTS + 1:  # that many parts, then the photo
            raise UsageError(f"The form has more than {MAX_FORM_PARTS} parts before a field {field!r}. {how}")
        headers.clear()

    def header_end() -> None:
        headers[bytes(header_name).strip().lower()] = bytes(header_value).strip()
        header_name.clear()
        header_value.clear()

    def headers_finished() -> None:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        wanted[0] = disposition.get(b"name") == field.encode()

    def part_data(chunk: bytes, start: int, end: int) -> None:
        if wanted[0]:
            data.extend(chunk[start:end])

    def part_end() -> None:
        if wanted[0]:
            raise _Found()

    callbacks = {
        "on_part_begin": begin,
        "on_header_field": lambda chunk, start, end: header_name.extend(chunk[start:end]),
        "on_header_value": lambda chunk, start, end: header_value.extend(chunk[start:end]),
        "on_header_end": header_end,
        "on_headers_finished": headers_finished,
        "on_part_data": part_data,
        "on_part_end": part_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except _Found:
        return bytes(data)
    except UsageError:
        raise  # too many parts (a ValueError too)
    except (MultipartParseError, ValueError, IndexError):
        raise UsageError(f"The form cannot be read. {how}")
    raise UsageError(f"The form has no field {field!r}. {how}")


def check_pixels(photo: bytes) -> None:
    """Refuse, from its header alone, a photo with more than MAX_PHOTO_PIXELS pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            width, height = Image.open(io.BytesIO(photo)).size
    except Exception:  # noqa: BLE001 (any header Pillow cannot read: fit_photo says why in a sentence)
        return
    if width * height > MAX_PHOTO_PIXELS:
        raise UsageError(
            f"The photo is {width:,} x {height:,} pixels; at most {MAX_PHOTO_PIXELS:,} pixels are taken. "
            "Send a smaller copy."
        )


# The largest body POST /selection.zip reads: a thousand names of a 512-number vector fit.
MAX_SELECTION_BYTES = 4 * 2**20


class Selection(BaseModel):
    """Images to put in one zip, by name."""

    names: list[str] = Field(description="The images' names, in the order the zip lists them.")


def selection_schema(service: Service) -> dict[str, Any]:
    """The request body of POST /selection.zip, as the server reads it (declared by hand: the body is
    read with a size limit, never by FastAPI)."""
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["names"],
                    "additionalProperties": False,
                    "properties": {
                        "names": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": service.max_images,
                            "description": f"The images, in order. {NAME_HELP}",
                            "items": {"type": "string", "pattern": service.name_pattern},
                        }
                    },
                }
            }
        },
    }


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, read into memory, or TooLarge once it passes ``limit`` bytes (a declared
    Content-Length over the limit is refused before any of it is read)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"The body is {int(declared):,} bytes; this request takes at most {limit:,}.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"The body is over {limit:,} bytes; this request takes at most {limit:,}.")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_selection(body: bytes, max_images: int) -> Selection:
    """The body of POST /selection.zip, or a UsageError in one sentence (JSON nested too deep
    for the parser, too)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        data = None
    names = data.get("names") if isinstance(data, dict) and set(data) == {"names"} else None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise UsageError('The body must be JSON: {"names": [image names]}, for example {"names": ["7:3", "7:4"]}.')
    if not 1 <= len(names) <= max_images:
        raise UsageError(f"names must list between 1 and {max_images} images, not {len(names)}.")
    return Selection(names=names)
