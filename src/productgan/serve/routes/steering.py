"""The steering routes: the generator's measured directions, colourways of a named image, and a
strip of one along a slider.

An edited image needs no route of its own: its name carries the edits (``7:3:Sneaker^size=1``), and
/named.png and every other route that takes names make it. /colourways.png and /strip.png give the
bytes ``productgan colourways`` and ``productgan steer`` write to a .png for the same query;
/colourways.json gives each colourway's ``z:`` name, which any route reads back.
"""

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from productgan.data.colour import COLOUR_NAMES, MAX_COLOURS, parse_colours
from productgan.data.product import ATTRIBUTE_HELP
from productgan.explore.colourways import ROUNDS, colourways
from productgan.explore.latent import render
from productgan.explore.steering import DEFAULT_AMOUNTS, MAX_STRIP, check_amounts, slider_images
from productgan.generator.directions import MAX_AMOUNT
from productgan.generator.grid import make_grid
from productgan.serve.patterns import amounts_pattern, colours_pattern
from productgan.serve.problems import BAD_REQUEST, BUSY
from productgan.serve.routes.explore import name_query
from productgan.serve.routes.images import PNG, IfNoneMatch, image_responses, png
from productgan.serve.service import Service

# The most image names each route's query carries (serve/middleware.py's QueryLimit).
NAMES_IN_QUERY = {"/colourways.png": 1, "/colourways.json": 1, "/strip.png": 1}


class DirectionInfo(BaseModel):
    name: str = Field(description="What an edit calls it: `NAME=AMOUNT` in an image's name (`7:3^size=1`).")
    kind: str = Field(description="shift (z + amount x vector), turn (hue) or scale (saturation).")
    attribute: str | None = Field(description="The measured attribute it was fitted to; none for the generator's own.")
    effects: dict[str, float | None] = Field(description="Measured change of each attribute per unit.")
    monotone: bool | None = Field(description="Whether its own attribute moved the same way at each step of -2...+2.")
    category_kept: float | None = Field(description="Share of images the evaluator still gave their category at +-2.")
    description: str


class DirectionList(BaseModel):
    measured: bool = Field(description="False until `productgan directions RUN` has run for this generator.")
    colour: bool = Field(description="Whether colourways can ask for any colour (else greys only, or none).")
    max_amount: float
    attributes: dict[str, str] = Field(description="What each attribute measures.")
    colour_names: dict[str, str] = Field(description="The colour names a query may use, with their #RRGGBB.")
    directions: list[DirectionInfo]


class ColourwayInfo(BaseModel):
    name: str = Field(description="The image's name (its z: vector), which any route reads.")
    colour: str = Field(description="The colour asked for, #rrggbb.")
    reached: str | None = Field(description="The main colour measured on the image made, #rrggbb.")
    ciede2000: float | None = Field(description="How far apart the two look (about 1: just noticeable).")


class ColourwayList(BaseModel):
    of: str
    colourways: list[ColourwayInfo]


def routes(service: Service) -> APIRouter:
    """The steering routes over ``service``."""
    router = APIRouter(tags=["steering"])
    service.expected.update(
        colours=f"1 to {MAX_COLOURS} comma-separated colours: names (navy) or #RRGGBB",
        along="a direction /directions.json lists",
        amounts=f"1 to {MAX_STRIP} comma-separated numbers from -{MAX_AMOUNT:g} to {MAX_AMOUNT:g}",
    )
    Of = name_query(service, "The product.")
    Colours = Annotated[
        str,
        Query(
            pattern=colours_pattern(MAX_COLOURS),
            description="Comma-separated colours: names (navy, olive; /directions.json lists them) or #RRGGBB.",
            examples=["navy,#c0392b,olive"],
        ),
    ]
    Along = Annotated[
        str, Query(pattern="^[A-Za-z][A-Za-z0-9_]{0,31}$", description="A direction's name (/directions.json).")
    ]
    Amounts = Annotated[
        str,
        Query(
            pattern=amounts_pattern(MAX_STRIP),
            description="Comma-separated steps along the direction, -5 to 5.",
            examples=[",".join(f"{a:g}" for a in DEFAULT_AMOUNTS)],
        ),
    ]

    @router.get(
        "/directions.json",
        operation_id="directionsJson",
        summary="the generator's sliders: what each measurably does (empty until `productgan directions`)",
        response_model=DirectionList,
    )
    async def directions_json() -> DirectionList:
        directions = service.sampler.directions
        listed = []
        if directions is not None:
            fields = DirectionInfo.model_fields
            listed = [
                DirectionInfo(**{key: value for key, value in d.to_dict().items() if key in fields})
                for d in directions.directions.values()
            ]
        return DirectionList(
            measured=directions is not None,
            colour=directions is not None and directions.colour.coloured,
            max_amount=MAX_AMOUNT,
            attributes=ATTRIBUTE_HELP,
            colour_names=COLOUR_NAMES,
            directions=listed,
        )

    def made(of: str, colours: str):
        base, wanted = service.point(of, "of"), parse_colours(colours)
        service.sampler.require_directions()
        return base, wanted

    @router.get(
        "/colourways.png",
        operation_id="colourwaysPng",
        summary="the product in each colour, as one PNG strip (the product first)",
        response_class=Response,
        responses=image_responses(PNG, "The strip as a PNG, as `productgan colourways --out strip.png` writes it."),
    )
    async def colourways_png(request: Request, of: Of, colours: Colours, if_none_match: IfNoneMatch = "") -> Response:
        base, wanted = made(of, colours)

        def make() -> bytes:
            ways = colourways(service.sampler, base, wanted, ROUNDS)
            images = render(service.sampler, [base, *(way.point for way in ways)]).numpy()
            return png(make_grid(images, len(images)))

        return await service.answer(
            {"route": "colourways.png", "of": of, "colours": colours},
            PNG,
            make,
            if_none_match,
            disconnected=request.is_disconnected,
        )

    @router.get(
        "/colourways.json",
        operation_id="colourwaysJson",
        summary="the product in each colour: each image's name and the colour it reached",
        response_model=ColourwayList,
        responses={**BAD_REQUEST, **BUSY},
    )
    async def colourways_json(request: Request, of: Of, colours: Colours) -> ColourwayList:
        base, wanted = made(of, colours)

        def make() -> ColourwayList:
            ways = colourways(service.sampler, base, wanted, ROUNDS)
            listed = [ColourwayInfo(name=way.name(service.sampler), **way.describe()) for way in ways]
            return ColourwayList(of=of, colourways=listed)

        return await service.work.run(make, request.is_disconnected)

    @router.get(
        "/strip.png",
        operation_id="stripPng",
        summary="the product at each step along one direction, as one PNG strip",
        response_class=Response,
        responses=image_responses(PNG, "The strip as a PNG, as `productgan steer --out strip.png` writes it."),
    )
    async def strip_png(
        request: Request, of: Of, along: Along, amounts: Amounts = "-2,-1,0,1,2", if_none_match: IfNoneMatch = ""
    ) -> Response:
        base, values = service.point(of, "of"), check_amounts(amounts, along)
        direction = along.lower()
        service.sampler.require_directions().check(((direction, 0.0),))

        def make() -> bytes:
            images = slider_images(service.sampler, base, direction, values)[0].numpy()
            return png(make_grid(np.asarray(images), len(images)))

        return await service.answer(
            {"route": "strip.png", "of": of, "along": direction, "amounts": list(values)},
            PNG,
            make,
            if_none_match,
            lane=service.quick,
            disconnected=request.is_disconnected,
        )

    return router
