"""What every route of the server shares: the sampler, the limits, the work queues, and the one way
to answer a request for images (checked, cached by ETag, made by a worker).

Heavy work goes through three queues (serve/work.py), lanes that never wait for one another: single
images (``quick``: a gallery's thumbnails, milliseconds each), everything else that makes images or
searches the training images (``work``: grids up to --max-images, walks, zips, neighbours), and
projections (``projections``: seconds each, within a time budget, stopped when their client goes).

An image request is a pure function of its query and of the generator's weights, so its answer
carries a strong ETag (a hash of both) and may be cached; a client that sends the ETag back in
``If-None-Match`` gets 304 without any image being made.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import math
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import Response

from productgan.errors import ProductganError, UsageError, first_line
from productgan.explore.names import Point, point
from productgan.explore.neighbours import BuildStopped, NeighbourIndex
from productgan.generator.cutout import Cutout, background_share, plan_cutout
from productgan.generator.directions import LONGEST_EDITS
from productgan.generator.latents import MAX_TEMPERATURE, balanced_labels, check_temperature, noise_row
from productgan.generator.sampler import Sampler
from productgan.serve.middleware import MAX_QUERY_BYTES
from productgan.serve.patterns import (
    MAX_VARIANT_DEPTH,
    NAME_PARAMETER_BYTES,
    encoded_length,
    label_pattern,
    name_pattern,
)
from productgan.serve.problems import NotServed, shown_input
from productgan.serve.work import Closing, WorkQueue

# The page's default count of images (fewer when the server allows fewer).
DEFAULT_COUNT = 16
# Seeds are whole numbers that fit a signed 64-bit integer, the widest most client languages have.
MAX_SEED = 2**63 - 1
# Image `index` of a seed draws index + 1 latent vectors; a million is far beyond any grid, and
# the draw stays under a second.
MAX_INDEX = 999_999
# How long a client may keep an image before asking again (the ETag then makes that cheap).
CACHE_SECONDS = 3600
# The lane of single images: one worker (each takes milliseconds) and room for a few galleries' thumbnails.
QUICK_WORKERS, QUICK_QUEUE = 1, 32
# The lane of projections: one at a time (each takes every core for seconds), two more waiting.
PROJECTION_WORKERS, PROJECTION_QUEUE = 1, 2
# The seconds a projection's optimisation may run; then the best fit found so far is the answer.
PROJECTION_SECONDS = 30.0
# The longest spread and variation seed that pattern and the library read; a variant's index is below 1024.
LONGEST_SPREAD, LONGEST_VARIATION_SEED, LONGEST_VARIANT_INDEX = "0." + "9" * 30, str(2**63 - 1), "1023"
NEEDS_RUN = (
    "This server serves an exported generator; nearest training images and projection need the run "
    "directory (its training data and evaluator): serve it with productgan serve RUN_DIR."
)


@dataclass(frozen=True)
class Images:
    """One checked request for images: what names them, with the class as an index."""

    n: int
    seed: int
    label: int | None  # the class index; None: every class in turn
    size: str
    temperature: float

    def key(self, route: str, **extra: Any) -> dict[str, Any]:
        """The canonical query: equal for requests that give the same bytes at ``route``."""
        return {"route": route, **self.__dict__, "temperature": self.temperature.hex(), **extra}


@dataclass
class Service:
    """The generator behind the server, its request limits, and the queue its images are made in.

    ``expected`` maps each query parameter to what it must be, for the sentence a bad value gets;
    a route with a parameter of its own adds it there. ``run_dir``: the run directory when the
    server serves one (its training data and evaluator answer neighbours and projection), else None;
    ``max_projection_steps``: the most optimisation steps a projection request may ask for, and
    ``projection_seconds`` the time its optimisation may take. ``work``, ``quick`` and
    ``projections`` are the lanes (above); the last two default to QUICK_* and PROJECTION_*. The
    server's start-up calls ``start_warm_up`` (the neighbour index, built in a thread); the start of
    its shutdown ``stop`` (running projections stop at their next step, waiting jobs are dropped),
    and its end ``close`` (which also waits for an index build to stop within a batch).
    """

    sampler: Sampler
    max_images: int
    work: WorkQueue
    identity: str = ""
    expected: dict[str, str] = field(default_factory=dict)
    run_dir: Path | None = None
    max_projection_steps: int = 1000
    projection_seconds: float = PROJECTION_SECONDS
    quick: WorkQueue | None = None
    projections: WorkQueue | None = None

    def __post_init__(self) -> None:
        self.identity = self.identity or weights_identity(self.sampler)
        self.quick = self.quick or WorkQueue(QUICK_WORKERS, QUICK_QUEUE, "single images")
        self.projections = self.projections or WorkQueue(PROJECTION_WORKERS, PROJECTION_QUEUE, "projections")
        self.label_pattern = label_pattern(self.sampler)
        self._label_regex = re.compile(self.label_pattern)
        self.name_pattern = name_pattern(self.sampler)
        self._name_regex = re.compile(self.name_pattern)
        self._deeper_regex = re.compile(name_pattern(self.sampler, depth=None))  # for the sentence of a deeper one
        self._index: NeighbourIndex | None = None
        self._index_problem: str | None = None
        self._index_lock = threading.Lock()
        self._stop = threading.Event()  # set at shutdown: a build in progress ends at its next batch
        self._warm_up: threading.Thread | None = None
        self._background_share: float | None = None  # measured once, when the routes are declared
        self.expected = {
            "n": f"a whole number between 1 and {self.max_images}",
            "seed": f"a whole number between 0 and {MAX_SEED}",
            "index": f"a whole number between 0 and {MAX_INDEX}",
            "temperature": f"a number above 0 and at most {MAX_TEMPERATURE:g} (1: as trained)",
            "size": "'native' or 'training'",
            "crop": "'none' or 'product'",
            "background": "'keep' or 'transparent'",
            **self.expected,
        }

    @property
    def default_count(self) -> int:
        return min(DEFAULT_COUNT, self.max_images)

    def label_index(self, label: str | None) -> int | None:
        """The class a query's ``label`` names (None: every class in turn), or a UsageError.

        The API accepts what ``label_pattern`` describes, no more: a class name in any case, a
        class index as /info numbers it, or nothing."""
        if label is None or label == "":
            return None
        if not self._label_regex.fullmatch(label):
            self.sampler.class_index(label)  # the sampler's own sentence, when it has one
            raise UsageError(
                f"label {shown_input(label)} is neither a class name nor a class index; GET /info lists them."
            )
        return self.sampler.class_index(label)

    def point(self, name: str, parameter: str) -> Point:
        """The point an image name of the API stands for, or a UsageError that names ``parameter``.

        The API takes what ``name_pattern`` describes: ``SEED:INDEX[:CLASS][@TEMPERATURE]``,
        ``z:BASE64[:CLASS]``, and variants of either, ``NAME~SPREAD/SEED#INDEX[:CLASS]``, at most
        MAX_VARIANT_DEPTH deep, ending in edits when asked (``^size=1``); never the path of a file
        on the server, which the CLI's names allow."""
        if not self.accepts(name):
            if name.count("~") > MAX_VARIANT_DEPTH and self._deeper_regex.fullmatch(name):
                raise UsageError(
                    f"{parameter} {shown_input(name)} is a variant of variants {name.count('~')} deep, and this API "
                    f"reads them at most {MAX_VARIANT_DEPTH} deep; use the z: name /variants.json gives for a "
                    "variant that deep."
                )
            raise UsageError(
                f"{parameter} {shown_input(name)} names no image; write SEED:INDEX[:CATEGORY][@TEMPERATURE] "
                f"(for example 7:3, 7:3:{self.example_class}@0.8), a variant's name (7:3~0.5/0#2) or a z: name "
                "this API gave, each with edits last when wanted (7:3~0.5/0#2^size=1)."
            )
        return point(self.sampler, name, files=False)

    def accepts(self, name: str) -> bool:
        """Whether ``name`` is of the form the API reads (``name_pattern``); its numbers may still be
        out of range (a seed above 2**63 - 1, a vector of NaN), which ``point`` refuses."""
        return self._name_regex.fullmatch(name) is not None

    @property
    def example_class(self) -> str:
        return self.sampler.class_names[0] if self.sampler.conditional and self.sampler.class_names else "0"

    def query_cap(self, names: int) -> int:
        """The longest query, in bytes, of a route that takes ``names`` image names: MAX_QUERY_BYTES
        for the rest of it, and room for that many of the longest names, percent-encoded: a ``z:``
        name of this generator with its longest category, varied MAX_VARIANT_DEPTH times at the
        longest spread, variation seed and index, each in the longest category, then the longest
        edits."""
        longest = max(self.sampler.class_names, key=encoded_length) if self.sampler.conditional else None
        category = "" if longest is None else ":" + longest
        vector = "z:" + "A" * math.ceil(16 * self.sampler.generator.config.nz / 3) + category
        variant = f"~{LONGEST_SPREAD}/{LONGEST_VARIATION_SEED}#{LONGEST_VARIANT_INDEX}{category}"
        name = vector + variant * MAX_VARIANT_DEPTH + "^" + LONGEST_EDITS
        return MAX_QUERY_BYTES + names * (encoded_length(name) + NAME_PARAMETER_BYTES)

    @property
    def stopping(self) -> bool:
        """Whether the server is stopping: a running projection watches this, and stops."""
        return self._stop.is_set()

    def ready_index(self) -> NeighbourIndex | None:
        """The neighbour index when it is built, else None (without waiting for a build)."""
        return self._index

    def neighbour_index(self) -> NeighbourIndex:
        """The run's training images in the evaluator's feature space, built at the first call
        (in a worker: a minute at most for a large dataset, then cached); NotServed when the server
        serves an export, or when the index cannot be built, whatever the reason (one sentence,
        kept: the run folder is read again only by a new server); Closing once the server stops."""
        if self.run_dir is None:
            raise NotServed(NEEDS_RUN)
        with self._index_lock:
            if self._index is None and self._index_problem is None:
                if self._stop.is_set():
                    raise Closing()
                try:
                    self._index = NeighbourIndex.from_run(
                        self.run_dir, device=str(self.sampler.device), stop=self._stop
                    )
                    release_free_memory()
                except BuildStopped:
                    raise Closing()
                except Exception as error:  # noqa: BLE001 (a damaged run folder is a sentence, never a 500)
                    self._index_problem = (
                        f"The run's training images cannot be compared with ({index_problem(error)}); "
                        "nearest training images and projection are off."
                    )
        if self._index is None:
            raise NotServed(self._index_problem)
        return self._index

    def start_warm_up(self) -> None:
        """Build the neighbour index in a thread of its own, so that it is ready before the first
        request needs it (a server of a run directory, at start-up); ``close`` stops it."""
        self._stop.clear()
        if self.run_dir is None or (self._warm_up is not None and self._warm_up.is_alive()):
            return
        self._warm_up = threading.Thread(target=self._warm, name="productgan-neighbours")
        self._warm_up.start()

    def _warm(self) -> None:
        with contextlib.suppress(NotServed, Closing):  # a problem is answered to the requests that need it
            self.neighbour_index()

    def stop(self) -> None:
        """As the server starts to stop, before it waits for the requests in flight: drop the
        jobs in line (503), and tell running projections and an index build to stop."""
        self._stop.set()
        for lane in (self.work, self.quick, self.projections):
            lane.close()

    def close(self) -> None:
        """At shutdown: ``stop``, and wait for an index build to stop at its next batch. A thread
        still in torch's native code when the interpreter exits aborts the process ("terminate
        called without an active exception"), so it is always joined."""
        self.stop()
        if self._warm_up is not None:
            self._warm_up.join()

    def images(self, n: int, seed: int, label: str | None, size: str, temperature: float) -> Images:
        """A request's query, checked (the parameters' ranges are FastAPI's to check)."""
        if not 1 <= n <= self.max_images:  # also for callers that are not routes
            raise UsageError(f"n must be {self.expected['n']}, not {n}.")
        return Images(n, seed, self.label_index(label), size, check_temperature(temperature))

    def cutout(self, crop: str, background: str) -> Cutout:
        """The crop and background a query asks for, checked (``plan_cutout``: a UsageError, so a
        422, when refused). The plain-background share of this generator is measured on its own
        images at the first call (the routes ask at start-up, to describe what they accept), then kept."""

        def share(sampler: Sampler) -> float:
            if self._background_share is None:
                self._background_share = background_share(sampler)  # the same figure, whichever worker wins
            return self._background_share

        return plan_cutout(self.sampler, crop, background, share)

    def make(self, images: Images) -> np.ndarray:
        """The images of a checked request: uint8 N x C x H x W."""
        return self.sampler(
            n=images.n, seed=images.seed, size=images.size, label=images.label, temperature=images.temperature
        ).numpy()

    def make_one(self, images: Images, index: int) -> np.ndarray:
        """Image ``index`` of a checked request's seed, alone: uint8 C x H x W, the same pixels as
        row ``index`` of any larger request."""
        z = latent_row(self.sampler, images.seed, index, images.temperature)
        if images.label is None and self.sampler.conditional:  # every class in turn: image i is of class i mod k
            labels = balanced_labels(1, self.sampler.generator.num_classes, start=index)
        else:
            labels = self.sampler.labels(1, images.label)
        return self.sampler.from_noise(z, images.size, labels=labels).numpy()[0]

    def etag(self, key: dict[str, Any]) -> str:
        canonical = json.dumps(key, sort_keys=True, separators=(",", ":"))
        return '"' + hashlib.sha256(f"{self.identity}\n{canonical}".encode()).hexdigest()[:32] + '"'

    async def answer(
        self,
        key: dict[str, Any],
        media_type: str,
        make: Callable[[], bytes],
        if_none_match: str = "",
        lane: WorkQueue | None = None,
        disconnected: Callable[[], Awaitable[bool]] | None = None,
    ) -> Response:
        """The bytes ``make`` returns, made by a worker of ``lane`` (default: ``work``), with
        caching headers; 304 without any work when the client already holds them
        (``if_none_match``). ``disconnected``: the request's ``is_disconnected``, so that the job
        of a client that went away is dropped from the line."""
        etag = self.etag(key)
        headers = {"ETag": etag, "Cache-Control": f"public, max-age={CACHE_SECONDS}"}
        if if_none_match and etag_matches(if_none_match, etag):
            return Response(status_code=304, headers=headers)
        made = await (lane or self.work).run(make, disconnected)
        return Response(made, media_type=media_type, headers=headers)


def release_free_memory() -> None:
    """Give the heap memory freed after a one-off burst of work (the index build) back to the
    system. glibc keeps what a thread freed in its arena: without this the server rests at its
    peak, some 300 MiB above what it holds for Fashion-MNIST. Nothing where there is no glibc."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):
        return
    trim(0)


def index_problem(error: Exception) -> str:
    """Why the neighbour index could not be built, in a clause: the library's own sentence, or
    what any other exception says about the run folder."""
    if isinstance(error, ProductganError):
        return first_line(error)
    if isinstance(error, MemoryError):
        return "there is not enough free memory to build it"
    name, line = type(error).__name__, first_line(error)
    return f"the run folder seems damaged: {name if line == name else f'{name}: {line}'}"


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether an If-None-Match header names ``etag`` (weak comparison, as RFC 9110 asks)."""
    if if_none_match.strip() == "*":
        return True
    tags = (tag.strip() for tag in if_none_match.split(","))
    return etag in (tag[2:] if tag.startswith("W/") else tag for tag in tags)


def weights_identity(sampler: Sampler) -> str:
    """A hash of everything that decides the sampler's pixels: the weights and the description."""
    digest = hashlib.sha256()
    for name, tensor in sorted(sampler.generator.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name} {flat.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    digest.update(json.dumps(sampler.info, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def latent_row(sampler: Sampler, seed: int, index: int, temperature: float) -> torch.Tensor:
    """Latent vector ``index`` of ``seed`` (1 x nz), as ``sampler.latents(index + 1, ...)[index:]``
    gives it, without drawing the rows before it all at once (``noise_row``)."""
    sampler.latents(1, seed, temperature)  # the sampler's checks of the seed and the temperature
    z = noise_row(index, sampler.generator.config.nz, seed)[None]
    return z if temperature == 1.0 else z.mul_(temperature)
