"""Routes that need the run's training data: the nearest training images of generated ones (with
the copy flag), a training image by its index, and a product photo projected into the generator.

They answer only when the server serves a run directory (its packed data and its evaluator); from
an exported generator they answer 404 with a sentence that says so. The evaluator's features of
the training split are computed at the first such request (and kept in the user cache).

An uploaded photo is read into memory, never written to disk: the body is read whole, up to
``MAX_PHOTO_BYTES``, and parsed as multipart/form-data here rather than by Starlette, whose parser
spools uploads over 1 MiB to a temporary file.
"""

import base64
import io
import warnings
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Path, Query, Request, Response
from PIL import Image
from pydantic import BaseModel, Field
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from productgan.errors import UsageError
from productgan.explore.commands import describe_fit
from productgan.explore.latent import render, vector_name
from productgan.explore.neighbours import MAX_K, neighbour_sheet
from productgan.explore.projection import DEFAULT_RESTARTS, DEFAULT_STEPS, MAX_PHOTO_BYTES, fit_photo, project
from productgan.serve.problems import BAD_REQUEST, BUSY, NOT_SERVED, TOO_LARGE, NotServed
from productgan.serve.routes.explore import read_body
from productgan.serve.routes.images import PNG, IfNoneMatch, image_responses, label_query, png
from productgan.serve.service import NEEDS_RUN, Service

# The most neighbours asked per image, and images per request, in the API.
API_MAX_K = min(16, MAX_K)
MAX_QUERIED = 16
# A photo's largest pixel count: a 48-megapixel camera's, well under what takes the server's memory.
MAX_PHOTO_PIXELS = 50_000_000
# Random starts per category a projection request may ask for (the CLI allows more).
MAX_API_RESTARTS = 8
PHOTO_FIELD = "photo"


class Neighbour(BaseModel):
    index: int = Field(description="The training image's index in the run's dataset: GET /training/{index}.png.")
    distance: float = Field(description="Distance in the evaluator's feature space.")


class ImageNeighbours(BaseModel):
    name: str = Field(description="The image, as it was named in the request.")
    neighbours: list[Neighbour] = Field(description="Its nearest training images, nearest first.")
    likely_copy: bool = Field(
        description="Closer to a training image than 99.5% of held-out real images are, in the evaluator's "
        "features or in 16x16 thumbnails."
    )
    thumbnail_distance: float = Field(description="Distance of its 16x16 thumbnail to the nearest training image's.")


class NeighbourList(BaseModel):
    """Nearest training images of named images, and what the copy flag is measured against."""

    copy_threshold: float = Field(description="A feature distance below this flags a likely copy.")
    thumbnail_threshold: float = Field(description="A thumbnail distance below this flags a likely copy.")
    typical_real_distance: float = Field(
        description="The median distance of a held-out real image to its nearest training image."
    )
    images: list[ImageNeighbours]


class ProjectionResult(BaseModel):
    """A photo projected into the generator."""

    name: str = Field(description="The projected image's name (`z:...`): vary it, walk from it, GET /named.png.")
    label: str | None = Field(description="The chosen category (null for an unconditional generator).")
    feature_distance: float = Field(description="Distance between photo and reconstruction in evaluator features.")
    pixel_distance: float = Field(description="Root mean square pixel difference, on 0 to 255.")
    typical_real_distance: float = Field(
        description="The median distance of a held-out real image to its nearest training image."
    )
    verdict: str = Field(description="The feature distance in words, against the typical distance.")
    per_class_loss: dict[str, float] = Field(description="The lowest loss reached in each category tried.")
    target: str = Field(description="The photo as fitted to the run's data: a PNG data URL at native size.")
    reconstruction: str = Field(description="The generator's image of `name`: a PNG data URL at native size.")


def routes(service: Service) -> APIRouter:
    """The routes over the run's training data (404 when ``service`` serves an export)."""
    router = APIRouter(tags=["training data"])
    service.expected.update(
        k=f"a whole number between 1 and {API_MAX_K}",
        steps=f"a whole number between 1 and {service.max_projection_steps}",
        restarts=f"a whole number between 1 and {MAX_API_RESTARTS}",
    )
    Of = Annotated[
        list[str],
        Query(
            min_length=1,
            max_length=MAX_QUERIED,
            description=f"The images (repeat the parameter; at most {MAX_QUERIED}). "
            "`SEED:INDEX[:CATEGORY][@TEMPERATURE]` or a `z:` name this API gave.",
            json_schema_extra={"items": {"type": "string", "pattern": service.name_pattern}},
        ),
    ]
    K = Annotated[int, Query(ge=1, le=API_MAX_K, description="Nearest training images per image.")]
    Label = label_query(service)
    not_here = {**BAD_REQUEST, **NOT_SERVED, **BUSY}

    def found(of: list[str], k: int):
        points = [service.point(name, "of") for name in of]

        def make():
            index = service.neighbour_index()
            images = render(service.sampler, points).numpy()
            return index, images, index.query(images, k)

        return make

    @router.get(
        "/neighbours.json",
        operation_id="neighboursJson",
        summary="the nearest training images of named images, with the copy flag",
        description="Only when the server serves a run directory (404 from an exported generator).",
        response_model=NeighbourList,
        responses=not_here,
    )
    async def neighbours_json(of: Of, k: K = 4) -> NeighbourList:
        make = found(of, k)

        def listed() -> NeighbourList:
            _, _, result = make()
            records = [{"name": name, **record} for name, record in zip(of, result.records())]
            return NeighbourList(
                copy_threshold=result.threshold,
                thumbnail_threshold=result.pixel_threshold,
                typical_real_distance=result.typical,
                images=records,
            )

        return await service.work.run(listed)

    @router.get(
        "/neighbours.png",
        operation_id="neighboursPng",
        summary="each named image beside its nearest training images, a likely copy framed in red",
        description="The sheet `productgan neighbours --out nn.png` writes. Only when serving a run directory.",
        response_class=Response,
        responses={**image_responses(PNG, "The sheet: one row per image."), **NOT_SERVED},
    )
    async def neighbours_png(of: Of, k: K = 4, if_none_match: IfNoneMatch = "") -> Response:
        make = found(of, k)
        if service.run_dir is None:
            service.neighbour_index()  # the sentence, before any caching headers

        def sheet() -> bytes:
            index, images, result = make()
            return png(neighbour_sheet(images, result, index))

        return await service.answer({"route": "neighbours.png", "of": of, "k": k}, PNG, sheet, if_none_match)

    @router.get(
        "/training/{index}.png",
        operation_id="trainingPng",
        summary="a training image of the run, by its index in the dataset",
        description="Only images of the training split; only when serving a run directory.",
        response_class=Response,
        responses={**image_responses(PNG, "The training image at native size."), **NOT_SERVED},
    )
    async def training_png(
        index: Annotated[int, Path(ge=0, le=2**31 - 1, description="The image's index in the run's dataset.")],
        if_none_match: IfNoneMatch = "",
    ) -> Response:
        neighbours = await service.work.run(service.neighbour_index)
        if not np.isin(index, neighbours.positions):
            raise NotServed(f"Image {index} is not one of the run's training images.")
        return await service.answer(
            {"route": "training.png", "index": index},
            PNG,
            lambda: png(neighbours.images(np.array([index]))[0]),
            if_none_match,
        )

    @router.post(
        "/project",
        operation_id="project",
        summary="project a product photo into the generator: its nearest generated image",
        description=(
            "Send the photo as multipart/form-data, field `photo` (PNG, JPEG, WebP...; at most "
            f"{MAX_PHOTO_BYTES // 2**20} MiB and {MAX_PHOTO_PIXELS:,} pixels). It is fitted as `prepare` fitted the "
            "run's data, then latent vectors (and, for a conditional generator, the category) are optimised to "
            "reproduce it, as `productgan project` does. The photo is kept in memory only. Only when serving a "
            "run directory."
        ),
        response_model=ProjectionResult,
        openapi_extra={"requestBody": photo_body()},
        responses={**BAD_REQUEST, **NOT_SERVED, **TOO_LARGE, **BUSY},
    )
    async def projection(
        request: Request,
        label: Label = "",
        steps: Annotated[
            int,
            Query(
                ge=1,
                le=service.max_projection_steps,
                description=f"Optimisation steps (the CLI's default: {DEFAULT_STEPS}).",
            ),
        ] = min(DEFAULT_STEPS, service.max_projection_steps),
        restarts: Annotated[
            int, Query(ge=1, le=MAX_API_RESTARTS, description="Random starts per category tried.")
        ] = DEFAULT_RESTARTS,
        seed: Annotated[int, Query(ge=0, le=2**31 - 1, description="Seed of the random starts.")] = 0,
    ) -> ProjectionResult:
        chosen = service.label_index(label)
        if service.run_dir is None:
            raise NotServed(NEEDS_RUN)
        body = await read_body(request, MAX_PHOTO_BYTES + 64 * 1024)  # the photo and the form around it
        photo = form_file(body, request.headers.get("content-type", ""), PHOTO_FIELD)

        def make() -> ProjectionResult:
            index = service.neighbour_index()
            sampler = service.sampler
            check_pixels(photo)
            fitted = fit_photo(photo, sampler.info, sampler.generator.image_size, sampler.generator.channels)
            result = project(sampler, fitted, index.net, chosen, steps, restarts, seed)
            return ProjectionResult(
                name=vector_name(result.point.z, result.label),
                label=result.label,
                feature_distance=round(result.feature_distance, 6),
                pixel_distance=round(result.pixel_distance, 4),
                typical_real_distance=round(index.typical, 6),
                verdict=describe_fit(result.feature_distance, index.typical),
                per_class_loss=result.per_class,
                target=data_url(result.target),
                reconstruction=data_url(result.reconstruction),
            )

        return await service.work.run(make)

    return router


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


def form_file(body: bytes, content_type: str, field: str) -> bytes:
    """The bytes of the form field ``field`` of a multipart/form-data body, parsed in memory; a
    UsageError when the body is not such a form or has no such field."""
    how = f"Send the photo as multipart/form-data with a file field named {field!r} (curl -F {field}=@photo.jpg)."
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UsageError(how)
    parts: list[tuple[dict[bytes, bytes], bytearray]] = []
    header_name, header_value = bytearray(), bytearray()

    def begin() -> None:
        parts.append(({}, bytearray()))

    def header_end() -> None:
        parts[-1][0][bytes(header_name).strip().lower()] = bytes(header_value).strip()
        header_name.clear()
        header_value.clear()

    callbacks = {
        "on_part_begin": begin,
        "on_header_field": lambda data, start, end: header_name.extend(data[start:end]),
        "on_header_value": lambda data, start, end: header_value.extend(data[start:end]),
        "on_header_end": header_end,
        "on_part_data": lambda data, start, end: parts[-1][1].extend(data[start:end]),
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except (MultipartParseError, ValueError, IndexError):
        raise UsageError(f"The form cannot be read. {how}")
    for headers, data in parts:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        if disposition.get(b"name") == field.encode():
            return bytes(data)
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


def data_url(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png(image)).decode("ascii")
