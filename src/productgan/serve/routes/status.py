"""What a client asks before it asks for images: is the server up, and what does it serve.

``/health`` answers on the event loop with no lock and no work, so it answers at once however
busy the image workers are.
"""

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from productgan.explore.photos import expected_photo
from productgan.generator.latents import MAX_TEMPERATURE
from productgan.serve.service import MAX_INDEX, MAX_SEED, Service


class Health(BaseModel):
    status: Literal["ok"] = Field(description="Always `ok`: the server is up and answering.")


class ExpectedPhoto(BaseModel):
    """What the generator expects of a photo to project (``expected_photo``): what it was trained on."""

    text: str = Field(description="In a phrase, as `light products on a black background, 28x28 grey`.")
    background: list[int] = Field(description="The training images' background, RGB on 0 to 255.")
    light_background: bool = Field(description="Whether that background is light.")
    native_size: list[int] = Field(description="The training images' size in pixels, width then height.")
    colour: Literal["grey", "colour"] = Field(description="Whether they are grey or in colour.")
    opposite_background: Literal["inverted", "kept"] = Field(
        description="What is done to a photo on the opposite background: inverted (grey data) or kept as it is "
        "(colour data, whose products would change colour)."
    )


class Info(BaseModel):
    """The generator and the limits of its requests."""

    conditional: bool = Field(description="Whether images can be asked for by class (`label`).")
    class_names: list[str] = Field(description="The classes, in index order (empty for an unconditional generator).")
    channels: int = Field(description="1 (grey) or 3 (RGB).")
    native_size: list[int] = Field(description="Height and width of an image at `size=native`.")
    training_size: list[int] = Field(description="Height and width of an image at `size=training`.")
    nz: int = Field(description="Length of a latent vector.")
    dataset: str | None = Field(description="What the generator was trained on.")
    step: int | None = Field(description="Training steps taken when the generator was exported.")
    images_seen: int | None = Field(description="Training images the discriminator had seen by then.")
    ema: bool | None = Field(description="Whether these are the moving-average weights.")
    max_images: int = Field(description="The most images one request may ask for (`n`).")
    max_index: int = Field(description="The highest `index` of /image.png.")
    max_seed: int = Field(description="The highest `seed`.")
    max_temperature: float = Field(description="The highest `temperature`.")
    expected_photo: ExpectedPhoto | None = Field(
        description="What a photo to project should look like, from the generator's description (for an exported "
        "generator too); null when that description's data fields cannot say."
    )


def describe(service: Service) -> Info:
    """What a client needs to know before asking: the classes, the sizes and the limits."""
    sampler, info = service.sampler, service.sampler.info
    return Info(
        conditional=sampler.conditional,
        class_names=sampler.class_names,
        channels=sampler.generator.channels,
        native_size=sampler.native_size,
        training_size=[sampler.generator.image_size] * 2,
        nz=sampler.generator.config.nz,
        # provenance, which the export's checks leave alone: shown when it is of the right type
        dataset=None if info.get("dataset") is None else str(info["dataset"]),
        step=_of_type(info.get("step"), int),
        images_seen=_of_type(info.get("images_seen"), int),
        ema=_of_type(info.get("ema"), bool),
        max_images=service.max_images,
        max_index=MAX_INDEX,
        max_seed=MAX_SEED,
        max_temperature=MAX_TEMPERATURE,
        expected_photo=_expected(service),
    )


def _expected(service: Service) -> ExpectedPhoto | None:
    """``expected_photo`` of the sampler, or None when its description's data fields (``background``,
    which the export's checks leave alone) are not of a form it reads."""
    try:
        return ExpectedPhoto(**expected_photo(service.sampler))
    except (TypeError, ValueError):  # pydantic's ValidationError is a ValueError
        return None


def _of_type(value: Any, kind: type) -> Any:
    if kind is int and isinstance(value, bool):
        return None
    return value if isinstance(value, kind) else None


def routes(service: Service) -> APIRouter:
    router = APIRouter(tags=["server"])
    info = describe(service)

    @router.get("/health", operation_id="health", summary="whether the server is up")
    async def health() -> Health:
        return Health(status="ok")

    @router.get("/info", operation_id="info", summary="the generator: classes, sizes, provenance, request limits")
    async def about() -> Info:
        return info

    return router
