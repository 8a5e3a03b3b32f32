"""The latent tools' routes: any named image alone, a walk between named images, variants of one,
and a grid or a selection of images as a zip of PNGs with a manifest.

Images are named as ``productgan.explore.names`` names them: ``SEED:INDEX[:CLASS][@TEMPERATURE]``, a
variant of a name, ``NAME~SPREAD/SEED#INDEX[:CLASS]`` (at most ``MAX_VARIANT_DEPTH`` deep), or
``z:BASE64[:CLASS]`` for a vector the API gave (a projection, a variant of a vector), so a client can
walk from anything it was shown. Every answer is a pure function of its query and of the generator: the same
bytes as ``productgan interpolate`` and ``productgan variants`` write for the same names, with an
ETag, made by the work queue (one image, /named.png, in the lane of single images). A body is
parsed off the event loop.
"""

import io
import json
import zipfile
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from productgan.explore.latent import MAX_FPS, MIN_FPS, encode_frames, enlarge, render, variants, walk_images
from productgan.explore.names import DEFAULT_SPREAD, ImageName, Point, variant_names, variant_points, vector_name
from productgan.generator.grid import make_grid
from productgan.generator.output import image_file_name
from productgan.serve.patterns import NAME_HELP
from productgan.serve.problems import BAD_REQUEST, BUSY, TOO_LARGE
from productgan.serve.routes.images import (
    NPY,
    PNG,
    IfNoneMatch,
    Seed,
    cutout_query,
    image_responses,
    images_query,
    label_query,
    png,
)
from productgan.serve.service import MAX_VARIANT_DEPTH, Service
from productgan.serve.uploads import MAX_SELECTION_BYTES, parse_selection, read_body, selection_schema

ZIP = "application/zip"
FRAME_MEDIA = {"gif": "image/gif", "webp": "image/webp", "png": PNG, "npy": NPY}
# A walk of the API: at most this many frames, each pixel enlarged at most this many times, and at
# most this many stops between its ends (the CLI allows longer walks; an answer stays a few MiB).
MAX_WALK_FRAMES = 120
MAX_WALK_SCALE = 8
MAX_VIA = 8
# The slowest animation: ten seconds a frame (a GIF frame's delay has 16 bits of centiseconds).
# How many times /named.png may enlarge an image (28 x 28 -> 224 x 224), as a walk's frames.
MAX_SCALE = MAX_WALK_SCALE
# The most image names each route's query carries: its query may be longer by that many names
# (serve/middleware.py's QueryLimit).
NAMES_IN_QUERY = {
    "/named.png": 1,
    **{f"/walk.{fmt}": MAX_VIA + 2 for fmt in FRAME_MEDIA},
    **{f"/variants.{fmt}": 1 for fmt in ("png", "npy", "json")},
}


def name_query(service: Service, description: str, alias: str | None = None) -> Any:
    example = f"7:3:{service.example_class}" if service.sampler.conditional else "7:3"
    extra = {"pattern": service.name_pattern, "examples": [example]}
    return Annotated[str, Query(alias=alias, description=f"{description} {NAME_HELP}", json_schema_extra=extra)]


def routes(service: Service) -> APIRouter:
    """The latent tools' routes over ``service``."""
    router = APIRouter(tags=["explore"])
    conditional, class_names = service.sampler.conditional, service.sampler.class_names
    service.expected.update(
        frames=f"a whole number between 2 and {MAX_WALK_FRAMES}",
        fps=f"a number from {MIN_FPS:g} to {MAX_FPS:g}",
        scale=f"a whole number between 1 and {MAX_SCALE}",
        spread="a number above 0 and at most 1 (0.1: nearly the same image; 1: an unrelated one)",
        k="a whole number between 1 and 16",
    )
    Of = name_query(service, "The image to start from.")
    Name = name_query(service, "The image.")
    From = name_query(service, "The first image of the walk.", alias="from")
    To = name_query(service, "The last image of the walk.")
    Via = Annotated[
        list[str],
        Query(
            max_length=MAX_VIA,
            description=f"Images the walk passes through, in order (repeat the parameter; at most {MAX_VIA}). "
            + NAME_HELP,
            json_schema_extra={"items": {"type": "string", "pattern": service.name_pattern}},
        ),
    ]
    Frames = Annotated[
        int, Query(ge=2, le=MAX_WALK_FRAMES, description="Frames of the whole walk, the first and last included.")
    ]
    Fps = Annotated[float, Query(ge=MIN_FPS, le=MAX_FPS, description="Frames per second of an animation.")]
    WalkScale = Annotated[
        int, Query(ge=1, le=MAX_WALK_SCALE, description="Each pixel enlarged this many times (nearest neighbour).")
    ]
    Scale = Annotated[
        int, Query(ge=1, le=MAX_SCALE, description="Each pixel enlarged this many times (nearest neighbour).")
    ]
    Spread = Annotated[
        float,
        Query(
            gt=0,
            le=1,
            description="How far the variants stray: 0.1 nearly the same image, 0.5 (the default) another product "
            "of the family, 1 an unrelated image.",
        ),
    ]
    Count = Annotated[int, Query(ge=1, le=service.max_images, description="How many variants.")]
    Label = label_query(service)
    CutoutQuery = cutout_query(service)
    ZipImages = images_query(
        service, Annotated[int, Query(ge=1, le=service.max_images, description="How many images.")]
    )

    def category(p: Point) -> str | None:
        return class_names[p.label] if conditional and isinstance(p.label, int) else None

    @router.get(
        "/named.png",
        operation_id="namedPng",
        summary="one image by its name, as a PNG (a seed's image or a z: vector)",
        response_class=Response,
        responses=image_responses(PNG, "The image as a PNG, at native size times `scale`."),
    )
    async def named_png(
        request: Request,
        name: Name,
        scale: Scale = 1,
        *,
        cut: CutoutQuery,
        if_none_match: IfNoneMatch = "",
    ) -> Response:
        p = service.point(name, "name")

        def make() -> bytes:
            cutout = service.cutout(**cut)
            image = enlarge(render(service.sampler, [p]).numpy(), scale)  # cropped once enlarged
            return png(cutout.pictures(image)[0])

        return await service.answer(
            {"route": "named.png", "name": name, "scale": scale, **cut},
            PNG,
            make,
            if_none_match,
            lane=service.quick,
            disconnected=request.is_disconnected,
        )

    for fmt, media in FRAME_MEDIA.items():
        _walk_route(router, service, fmt, media, From, To, Via, Frames, Fps, WalkScale)

    for fmt, media in (("png", PNG), ("npy", NPY)):
        _variants_route(router, service, fmt, media, Of, Count, Spread, Seed, Label)

    @router.get(
        "/variants.json",
        operation_id="variantsJson",
        summary="variants of one image: each one's name, to fetch, vary or walk from",
        response_model=VariantList,
        responses={**BAD_REQUEST, **BUSY},
    )
    async def variants_json(
        request: Request, of: Of, n: Count = 16, spread: Spread = DEFAULT_SPREAD, seed: Seed = 0, label: Label = ""
    ) -> VariantList:
        base = service.point(of, "of")
        chosen = service.label_index(label)

        def make() -> VariantList:
            start = base if chosen is None else Point(base.z, chosen)
            points = variant_points(service.sampler, start, n, spread, seed)
            names = variant_names(service.sampler, of, n, spread, seed, chosen)
            if not all(service.accepts(name) for name in names):  # deeper than the API reads, or a spread too fine
                names = [vector_name(p.z, category(p)) for p in points]
            listed = [Variant(name=name, category=category(p)) for name, p in zip(names, points)]
            return VariantList(of=of, spread=spread, seed=seed, variants=listed)

        return await service.work.run(make, request.is_disconnected)

    @router.get(
        "/images.zip",
        operation_id="imagesZip",
        summary="the images of /images.png as a zip: one PNG each and a manifest",
        description=(
            "The PNGs are named as `productgan generate --out FOLDER` names them, with the same pixels; "
            "`manifest.json` lists each file's image name and category."
        ),
        response_class=Response,
        responses=image_responses(ZIP, "A zip of PNGs and manifest.json."),
    )
    async def images_zip(request: Request, images: ZipImages, if_none_match: IfNoneMatch = "") -> Response:

        def make() -> bytes:
            pictures = service.make(images)
            labels = service.sampler.labels(images.n, images.label)
            entries = []
            for index, picture in enumerate(pictures):
                name = None if labels is None else class_names[int(labels[index])]
                file = image_file_name(images.seed, index, images.n, name)
                entries.append((file, str(ImageName(images.seed, index, name, images.temperature)), name, picture))
            return zipped(entries, {"seed": images.seed, "temperature": images.temperature, "size": images.size})

        return await service.answer(
            images.key("images.zip"), ZIP, make, if_none_match, disconnected=request.is_disconnected
        )

    @router.post(
        "/selection.zip",
        operation_id="selectionZip",
        summary="named images as a zip: one PNG each and a manifest",
        description="Each PNG has the pixels of /named.png for its name; `manifest.json` lists names and categories.",
        response_class=Response,
        openapi_extra={"requestBody": selection_schema(service)},
        responses={
            200: {"description": "A zip of PNGs and manifest.json.", "content": {ZIP: {"schema": BINARY}}},
            **BAD_REQUEST,
            **TOO_LARGE,
            **BUSY,
        },
    )
    async def selection_zip(request: Request) -> Response:
        body = await read_body(request, MAX_SELECTION_BYTES)
        selection = await run_in_threadpool(parse_selection, body, service.max_images)
        points = [service.point(name, f"names[{i}]") for i, name in enumerate(selection.names)]

        def make() -> bytes:
            service.sampler.check_memory(len(points), "native")
            pictures = render(service.sampler, points).numpy()
            width = max(4, len(str(len(points))))
            entries = [
                (f"{i + 1:0{width}d}.png", name, category(p), picture)
                for i, (name, p, picture) in enumerate(zip(selection.names, points, pictures))
            ]
            return zipped(entries, {})

        return Response(await service.work.run(make, request.is_disconnected), media_type=ZIP)

    return router


BINARY = {"type": "string", "format": "binary"}


class Variant(BaseModel):
    name: str = Field(
        description="The variant's name: `OF~SPREAD/SEED#INDEX[:CATEGORY]`, or a `z:` name when `of` is a vector "
        f"or already {MAX_VARIANT_DEPTH} variants deep. GET /named.png?name=... shows it; it can be varied and "
        "walked from."
    )
    category: str | None = Field(description="Its category (null for an unconditional generator).")


class VariantList(BaseModel):
    """Variants of one image, by name."""

    of: str = Field(description="The image varied.")
    spread: float = Field(description="How far they stray (0 to 1).")
    seed: int = Field(description="The seed of the variations.")
    variants: list[Variant] = Field(description="The variants, in the order of /variants.png.")


def _walk_route(router, service: Service, fmt: str, media: str, From, To, Via, Frames, Fps, WalkScale) -> None:
    what = {"gif": "an animated GIF", "webp": "an animated WebP (lossless)", "png": "a PNG strip", "npy": "a .npy"}

    @router.get(
        f"/walk.{fmt}",
        operation_id=f"walk{fmt.title()}",
        summary=f"a walk between named images as {what[fmt]}",
        description=(
            "The latent vector follows the arc between the images and, between two categories, the "
            "conditioning blends. The bytes are those of `productgan interpolate --out walk." + fmt + "` for "
            "the same names; the first and last frames are the named images."
            + (" The .npy holds uint8 frames x C x H x W (`scale` does not apply)." if fmt == "npy" else "")
        ),
        response_class=Response,
        responses=image_responses(media, f"The walk as {what[fmt]}."),
    )
    async def walk(
        request: Request,
        start: From,
        to: To,
        via: Via = (),
        frames: Frames = 24,
        fps: Fps = 12.0,
        scale: WalkScale = 1,
        if_none_match: IfNoneMatch = "",
    ) -> Response:
        names = [start, *via, to]
        parameters = ["from", *["via"] * len(via), "to"]
        points = [service.point(name, parameter) for name, parameter in zip(names, parameters)]
        key = {"route": f"walk.{fmt}", "names": names, "frames": frames, "fps": fps.hex(), "scale": scale}
        return await service.answer(
            key,
            media,
            lambda: encode_frames(walk_images(service.sampler, points, frames).numpy(), fmt, fps, scale),
            if_none_match,
            disconnected=request.is_disconnected,
        )


def _variants_route(router, service: Service, fmt: str, media: str, Of, Count, Spread, Seed, Label) -> None:
    @router.get(
        f"/variants.{fmt}",
        operation_id=f"variants{fmt.title()}",
        summary="variants of one image as a PNG grid" if fmt == "png" else "variants of one image as a .npy",
        description=(
            "`n` images near the named one; the bytes of `productgan variants --out more." + fmt + "` for the same "
            "inputs. /variants.json names each one."
        ),
        response_class=Response,
        responses=image_responses(media, "The variants." if fmt == "png" else "uint8 N x C x H x W."),
    )
    async def variants_file(
        request: Request,
        of: Of,
        n: Count = 16,
        spread: Spread = DEFAULT_SPREAD,
        seed: Seed = 0,
        label: Label = "",
        if_none_match: IfNoneMatch = "",
    ) -> Response:
        base = service.point(of, "of")
        chosen = service.label_index(label)

        def make() -> bytes:
            images = variants(service.sampler, base, n, spread, seed, chosen)[0].numpy()
            return png(make_grid(images)) if fmt == "png" else npy_bytes(images)

        key = {"route": f"variants.{fmt}", "of": of, "n": n, "spread": spread.hex(), "seed": seed, "label": chosen}
        return await service.answer(key, media, make, if_none_match, disconnected=request.is_disconnected)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def zipped(entries: list[tuple[str, str, str | None, np.ndarray]], about: dict[str, Any]) -> bytes:
    """A zip of one PNG per (file, name, category, image) and manifest.json listing them. The
    entries carry a fixed date, so the same images give the same bytes."""
    buffer = io.BytesIO()
    manifest = {**about, "images": []}
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
        for file, name, category, picture in entries:
            archive.writestr(zipfile.ZipInfo(file, date_time=ZIP_DATE), png(picture))
            manifest["images"].append({"file": file, "name": name, "category": category})
        archive.writestr(zipfile.ZipInfo("manifest.json", date_time=ZIP_DATE), json.dumps(manifest, indent=2) + "\n")
    return buffer.getvalue()


ZIP_DATE = (1980, 1, 1, 0, 0, 0)
