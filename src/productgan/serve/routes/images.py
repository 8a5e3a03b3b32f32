"""The image routes: a seed's images as a PNG grid or a .npy array, and one image of a seed alone.

Each is a pure function of its query: the answer carries an ETag and may be cached, and it is
made by the service's work queue (503 with Retry-After when that is full); one image alone in the
lane of single images, so that a gallery's thumbnails never wait behind large grids. The
parameters are declared here, with their ranges, for FastAPI to check and for the API description.
"""

import io
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Header, Query, Request, Response

from productgan.errors import UsageError
from productgan.generator.cutout import BACKGROUNDS, CROPS
from productgan.generator.grid import to_pil
from productgan.generator.latents import MAX_TEMPERATURE
from productgan.serve.problems import BAD_REQUEST, BUSY
from productgan.serve.service import MAX_INDEX, MAX_SEED, Images, Service

PNG = "image/png"
NPY = "application/octet-stream"  # the .npy format has no registered media type of its own

Seed = Annotated[
    int,
    Query(ge=0, le=MAX_SEED, description="Seed of the random vectors: the same seed gives the same images."),
]
Size = Annotated[
    Literal["native", "training"],
    Query(description="`native`: the dataset's own image size; `training`: the size the generator was trained at."),
]
Temperature = Annotated[
    float,
    Query(
        gt=0,
        le=MAX_TEMPERATURE,
        description="Spread of the random vectors: 1 as trained, below 1 more typical images, above 1 more varied.",
    ),
]
IfNoneMatch = Annotated[
    str,
    Header(
        alias="If-None-Match",
        description="The ETag of an earlier answer: the same images give 304 and no body.",
    ),
]
CACHE_HEADERS = {
    "ETag": {
        "description": "Names these bytes: the query and the generator's weights.",
        "required": True,
        "schema": {"type": "string"},
    },
    "Cache-Control": {
        "description": "The answer may be kept and reused for the given time.",
        "required": True,
        "schema": {"type": "string"},
    },
}


def image_responses(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    """The answers of a cached image route: its bytes (or 304), a bad query, a full queue."""
    return {
        200: {
            "description": description,
            "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
            "headers": CACHE_HEADERS,
        },
        304: {"description": "The client already holds these bytes (If-None-Match).", "headers": CACHE_HEADERS},
        **BAD_REQUEST,
        **BUSY,
    }


def count_query(service: Service) -> Any:
    return Annotated[
        int,
        Query(ge=1, le=service.max_images, description="How many images (the server's limit is in /info)."),
    ]


def label_query(service: Service) -> Any:
    names = service.sampler.class_names
    listed = ", ".join(f"{name} ({i})" for i, name in enumerate(names[:20])) + (", ..." if len(names) > 20 else "")
    described = (
        f"A class, by name in any case or by index: {listed}. Empty or absent: every class in turn."
        if service.sampler.conditional
        else "This generator is not class-conditional: leave it out or empty."
    )
    examples = [names[0]] if service.sampler.conditional and names else [""]
    return Annotated[
        str,
        Query(description=described, json_schema_extra={"pattern": service.label_pattern, "examples": examples}),
    ]


def images_query(service: Service, count: Any = None) -> Any:
    """The query of every route over a seed's first n images (n, seed, label, size, temperature)
    as one FastAPI dependency that gives the checked request (``Service.images``). ``count``:
    the annotation of n, when a route describes it its own way."""
    Count = count or count_query(service)
    Label = label_query(service)

    def query(
        n: Count = service.default_count,
        seed: Seed = 0,
        label: Label = "",
        size: Size = "native",
        temperature: Temperature = 1.0,
    ) -> Images:
        return service.images(n, seed, label, size, temperature)

    return Annotated[Images, Depends(query)]


def cutout_query(service: Service) -> Any:
    """``crop`` and ``background`` as one FastAPI dependency (so that they follow a route's other
    parameters in the API description) that gives them as a dict, each declared with the values
    this generator's images can have: ``Service.cutout`` measures whether its backgrounds are plain
    now, once; where they are not (or the export records no background) the description lists only
    the default, and a request for more gets 422 and the library's sentence."""
    refused = {}
    for crop, background in (("product", "keep"), ("none", "transparent")):
        try:
            service.cutout(crop, background)
        except UsageError as error:
            refused[crop if background == "keep" else background] = f" Only the default here: {error}"
    crops = [value for value in CROPS if value not in refused]
    backgrounds = [value for value in BACKGROUNDS if value not in refused]
    Crop = Annotated[
        Literal["none", "product"],
        Query(
            description="`product`: each image cut to its product's box (the pixels off the data's background) "
            "with a margin of a tenth of the box, so of its own size (a grid centres them on one cell); `none`: "
            "the whole square." + refused.get("product", ""),
            json_schema_extra={"enum": crops},
        ),
    ]
    Background = Annotated[
        Literal["keep", "transparent"],
        Query(
            description="`transparent`: a PNG with an alpha channel, the data's background transparent (where the "
            "generator's backgrounds are plain, measured on its own images); `keep`: opaque."
            + refused.get("transparent", ""),
            json_schema_extra={"enum": backgrounds},
        ),
    ]

    def query(crop: Crop = "none", background: Background = "keep") -> dict[str, str]:
        return {"crop": crop, "background": background}

    return Annotated[dict[str, str], Depends(query)]


def routes(service: Service) -> APIRouter:
    """The image routes over ``service``."""
    router = APIRouter(tags=["images"])
    Label = label_query(service)
    SeedImages = images_query(service)
    CutoutQuery = cutout_query(service)

    @router.get(
        "/images.png",
        operation_id="imagesPng",
        summary="n images as one PNG grid",
        description="One column per class when every class is made in turn; otherwise a square grid.",
        response_class=Response,
        responses=image_responses(PNG, "The images as one PNG grid."),
    )
    async def images_png(
        request: Request,
        images: SeedImages,
        cut: CutoutQuery,
        if_none_match: IfNoneMatch = "",
    ) -> Response:
        columns = service.sampler.grid_columns(images.n, images.label)

        def make() -> bytes:
            cutout = service.cutout(**cut)
            pictures = service.make(images)
            return png(cutout.grid(pictures, columns))

        return await service.answer(
            images.key("images.png", **cut),
            PNG,
            make,
            if_none_match,
            disconnected=request.is_disconnected,
        )

    @router.get(
        "/images.npy",
        operation_id="imagesNpy",
        summary="the same images as a uint8 N x C x H x W .npy array",
        response_class=Response,
        responses=image_responses(NPY, "The images as a NumPy .npy file: uint8, N x C x H x W."),
    )
    async def images_npy(request: Request, images: SeedImages, if_none_match: IfNoneMatch = "") -> Response:
        return await service.answer(
            images.key("images.npy"),
            NPY,
            lambda: npy(service.make(images)),
            if_none_match,
            disconnected=request.is_disconnected,
        )

    @router.get(
        "/image.png",
        operation_id="imagePng",
        summary="image `index` of a seed alone, as in a larger request",
        response_class=Response,
        responses=image_responses(PNG, "The image as a PNG."),
    )
    async def image_png(
        request: Request,
        seed: Seed = 0,
        index: Annotated[
            int,
            Query(ge=0, le=MAX_INDEX, description="Which image of the seed: row `index` of any request that has it."),
        ] = 0,
        label: Label = "",
        size: Size = "native",
        temperature: Temperature = 1.0,
        *,
        cut: CutoutQuery,
        if_none_match: IfNoneMatch = "",
    ) -> Response:
        images = service.images(1, seed, label, size, temperature)

        def make() -> bytes:
            cutout = service.cutout(**cut)
            picture = service.make_one(images, index)
            return png(cutout.pictures(picture[None])[0])

        return await service.answer(
            images.key("image.png", index=index, **cut),
            PNG,
            make,
            if_none_match,
            lane=service.quick,
            disconnected=request.is_disconnected,
        )

    return router


def png(picture: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    to_pil(picture).save(buffer, format="PNG")
    return buffer.getvalue()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
