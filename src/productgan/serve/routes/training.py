"""Routes that need the run's training data: the nearest training images of generated ones (with
the copy flag), a training image by its index, and a product photo projected into the generator.

They answer only when the server serves a run directory (its packed data and its evaluator); from
an exported generator they answer 404 with a sentence that says so. The evaluator's features of
the training split are computed at the first such request (and kept in the user cache).

An uploaded photo is read into memory, never written to disk: the body is read whole, up to
``MAX_PHOTO_BYTES``, and parsed as multipart/form-data here rather than by Starlette, whose parser
spools uploads over 1 MiB to a temporary file; parsed in a thread, not on the event loop, and only
up to the photo (or MAX_FORM_PARTS parts without it).

A projection runs in a lane of its own (``Service.projections``), asks for at most
MAX_PROJECTION_WORK steps x starts x categories, optimises for at most ``Service.projection_seconds``
(then answers the best fit found, ``stopped_early``), and stops at its next step when its client goes
away or the server stops. It is ``project_photo``'s, as the CLI's: the same fitting, likeness test and
verdict, and the record projection.json holds.
"""

import base64
import threading
import time
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from productgan.errors import UsageError
from productgan.explore.latent import render
from productgan.explore.names import vector_name
from productgan.explore.neighbours import MAX_K, neighbour_sheet
from productgan.explore.photos import MAX_PHOTO_BYTES, fit_to_generator
from productgan.explore.projection import DEFAULT_RESTARTS, DEFAULT_STEPS, ProjectionCancelled, project_photo
from productgan.serve.problems import BAD_REQUEST, BUSY, NOT_SERVED, TOO_LARGE, NotServed
from productgan.serve.routes.images import PNG, IfNoneMatch, image_responses, label_query, png
from productgan.serve.service import NEEDS_RUN, Service
from productgan.serve.uploads import MAX_PHOTO_PIXELS, PHOTO_FIELD, check_pixels, form_file, photo_body, read_body
from productgan.serve.work import Closing

# The most neighbours asked per image, and images per request, in the API.
API_MAX_K = min(16, MAX_K)
MAX_QUERIED = 16
# The most image names each route's query carries (serve/middleware.py's QueryLimit).
NAMES_IN_QUERY = {"/neighbours.json": MAX_QUERIED, "/neighbours.png": MAX_QUERIED}
# Random starts per category a projection request may ask for (the CLI allows more).
MAX_API_RESTARTS = 8
# The most steps x starts x categories one projection asks for: 1,000 steps of 2 starts in each of
# 10 categories (24 s for Fashion-MNIST's generator on a busy 2-core EPYC), or 250 of 8 (16 s).
MAX_PROJECTION_WORK = 20_000


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


class PhotoLikeness(BaseModel):
    """Whether the fitted photo looks like the training data: four tests, each calibrated on the run's
    held-out images to call at most 0.5% of them unlike."""

    looks_like_training_data: bool = Field(description="Whether it passed all four tests.")
    nearest_training_distance: float = Field(
        description="Its evaluator-feature distance to the nearest training image."
    )
    nearest_training_thumbnail_distance: float = Field(
        description="Its 16x16 thumbnail's distance to the nearest training image's."
    )
    plain_border_share: float = Field(
        description="The share of the photo's own border within 32 grey levels of one grey."
    )
    product_share: float = Field(
        description="The share of the box around what differs from that background which does."
    )
    unlike_because: list[str] = Field(description="A phrase per test failed (none when it looks like the data).")


class PhotoFit(BaseModel):
    """What was done to the photo to fit it as the generator expects."""

    inverted: bool = Field(description="Whether it was inverted (its background was the opposite of the data's).")
    trimmed: bool = Field(
        description="Whether it was trimmed to the product and centred (as Fashion-MNIST's images were)."
    )
    photo_background_grey: float | None = Field(
        description="The median grey (0 to 255) of the photo's own border; null when it is transparent."
    )
    opposite_background: bool = Field(
        description="Whether that background is light where the data's is dark, or the reverse."
    )
    note: str = Field(description="What was done and why, in a sentence.")


class ProjectionResult(BaseModel):
    """A photo projected into the generator: what `productgan project` writes to projection.json, the
    projected image's name, and the fitted photo and reconstruction."""

    name: str = Field(description="The projected image's name (`z:...`): vary it, walk from it, GET /named.png.")
    label: str | None = Field(description="The chosen category (null for an unconditional generator).")
    verdict: str = Field(
        description="The projection in words: first whether the photo looks like the training data at all "
        "(`Does not look like the training data: ...`), and only then how good a match it is (`Good match as Shirt: "
        "...`), with what the fitting did and whether time ran out."
    )
    match: Literal["close", "good", "loose", "poor"] | None = Field(
        description="How good a match, from the feature distance against the typical one; null when the photo does "
        "not look like the training data."
    )
    feature_distance: float = Field(description="Distance between photo and reconstruction in evaluator features.")
    pixel_distance: float = Field(description="Root mean square pixel difference, on 0 to 255.")
    typical_real_distance: float = Field(
        description="The median distance of a held-out real image to its nearest training image."
    )
    likeness: PhotoLikeness
    fit: PhotoFit
    expected: str = Field(
        description="What the generator expects of a photo, in a phrase (as /info's `expected_photo.text`)."
    )
    per_class_loss: dict[str, float] = Field(description="The lowest loss reached in each category tried.")
    steps_done: int = Field(description="Optimisation steps taken (fewer than asked when `stopped_early`).")
    stopped_early: bool = Field(
        description="Whether the server's time for one projection ran out first: the fit is the best found by then."
    )
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
    async def neighbours_json(request: Request, of: Of, k: K = 4) -> NeighbourList:
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

        return await service.work.run(listed, request.is_disconnected)

    @router.get(
        "/neighbours.png",
        operation_id="neighboursPng",
        summary="each named image beside its nearest training images, a likely copy framed in red",
        description="The sheet `productgan neighbours --out nn.png` writes. Only when serving a run directory.",
        response_class=Response,
        responses={**image_responses(PNG, "The sheet: one row per image."), **NOT_SERVED},
    )
    async def neighbours_png(request: Request, of: Of, k: K = 4, if_none_match: IfNoneMatch = "") -> Response:
        make = found(of, k)
        if service.run_dir is None:
            service.neighbour_index()  # the sentence, before any caching headers

        def sheet() -> bytes:
            index, images, result = make()
            return png(neighbour_sheet(images, result, index))

        key = {"route": "neighbours.png", "of": of, "k": k}
        return await service.answer(key, PNG, sheet, if_none_match, disconnected=request.is_disconnected)

    @router.get(
        "/training/{index}.png",
        operation_id="trainingPng",
        summary="a training image of the run, by its index in the dataset",
        description="Only images of the training split; only when serving a run directory.",
        response_class=Response,
        responses={**image_responses(PNG, "The training image at native size."), **NOT_SERVED},
    )
    async def training_png(
        request: Request,
        index: Annotated[int, Path(ge=0, le=2**31 - 1, description="The image's index in the run's dataset.")],
        if_none_match: IfNoneMatch = "",
    ) -> Response:
        # one image: in the lane of single images, once the index is built (its build waits in the other)
        neighbours = service.ready_index() or await service.work.run(service.neighbour_index, request.is_disconnected)
        if not np.isin(index, neighbours.positions):
            raise NotServed(f"Image {index} is not one of the run's training images.")
        return await service.answer(
            {"route": "training.png", "index": index},
            PNG,
            lambda: png(neighbours.images(np.array([index]))[0]),
            if_none_match,
            lane=service.quick,
            disconnected=request.is_disconnected,
        )

    @router.post(
        "/project",
        operation_id="project",
        summary="project a product photo into the generator: its nearest generated image",
        description=(
            "Send the photo as multipart/form-data, field `photo` (PNG, JPEG, WebP...; at most "
            f"{MAX_PHOTO_BYTES // 2**20} MiB and {MAX_PHOTO_PIXELS:,} pixels). It is fitted as the generator expects "
            "(GET /info's `expected_photo`: as `prepare` fitted the run's data, inverted when its background is the "
            "opposite of the data's, for grey data), judged against the training data (`likeness`), then latent "
            "vectors (and, for a conditional generator, the category) are optimised to reproduce it: the answer is "
            "`productgan project`'s projection.json for the same photo and settings. The photo is kept in memory only. "
            "Only when serving a run directory. "
            f"`steps` x `restarts` x the categories tried may be at most {MAX_PROJECTION_WORK:,}; "
            f"the optimisation runs for at most {service.projection_seconds:g} s, and then answers the best fit "
            "found (`stopped_early`). A projection stops when its client goes away."
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
        check_work(service, steps, restarts, chosen)
        body = await read_body(request, MAX_PHOTO_BYTES + 64 * 1024)  # the photo and the form around it
        photo = await run_in_threadpool(form_file, body, request.headers.get("content-type", ""), PHOTO_FIELD)
        gone = threading.Event()  # set when the client goes away

        def make() -> ProjectionResult:
            sampler = service.sampler
            check_pixels(photo)
            fitted = fit_to_generator(photo, sampler)  # a file that is no image is refused before the index
            projected = project_photo(
                sampler,
                service.neighbour_index(),
                fitted,
                chosen,
                steps,
                restarts,
                seed,
                deadline=time.monotonic() + service.projection_seconds,
                cancelled=lambda: gone.is_set() or service.stopping,
            )
            result, record = projected.projection, projected.record()
            del record["ref"]  # a file's name in projection.json; here the vector travels in `name`
            return ProjectionResult(
                name=vector_name(result.point.z, result.label),
                **record,
                target=data_url(result.target),
                reconstruction=data_url(result.reconstruction),
            )

        try:
            return await service.projections.run(make, request.is_disconnected, gone)
        except ProjectionCancelled:
            raise Closing() from None  # the server is stopping (a client that went away hears nothing)

    return router


def check_work(service: Service, steps: int, restarts: int, chosen: int | None) -> None:
    """Refuse, before the photo is read, a projection that asks for more than MAX_PROJECTION_WORK."""
    categories = service.sampler.generator.num_classes if chosen is None and service.sampler.conditional else 1
    work = steps * restarts * categories
    if work > MAX_PROJECTION_WORK:
        tried = f"{categories} categories" if categories > 1 else "1 category"
        raise UsageError(
            f"steps x restarts x categories tried must be at most {MAX_PROJECTION_WORK:,}, not "
            f"{steps:,} x {restarts} x {categories} = {work:,} ({tried}); ask for fewer steps or restarts, "
            "or one category with label."
        )


def data_url(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png(image)).decode("ascii")
