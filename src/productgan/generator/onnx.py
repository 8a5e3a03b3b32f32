"""ONNX export: ``model.onnx`` beside the safetensors export, a generator that runs with ONNX
Runtime alone (numpy and onnxruntime; neither productgan nor torch).

The graph is the generator followed by what ``Sampler.from_noise`` does to its output, so the
file gives the Sampler's images. Inputs: ``z`` (float32, N x nz) and, for a class-conditional
generator, ``class_index`` (int64, N). Output ``images``: uint8 N x C x H x W at the dataset's
native size (``pixels.to_native`` then ``pixels.to_uint8``, as the Sampler's size="native"), or
with ``output="float"`` float32 N x C x S x S at the training size in the generator's pixel
range. The batch size N is free. Latent vectors drawn as ``noise`` draws them (numpy's
``default_rng(seed).standard_normal((n, nz), dtype=float32)``) give the images productgan gives
for that seed.

The export reads the exported generator folder (``Sampler.from_pretrained``), never a
checkpoint or the training code. It is traced by torch's dynamo exporter (``torch.export``;
the TorchScript one has no ONNX form of the antialiased resize that ``to_native`` uses) at
opset ``OPSET``, and the file is checked with ONNX Runtime against PyTorch before it replaces
an earlier one.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from productgan.data.pixels import to_native, to_uint8
from productgan.errors import ProductganError, UsageError, first_line
from productgan.files import write_atomic
from productgan.generator.export import ONNX_FILE, find_export
from productgan.generator.latents import balanced_labels, noise
from productgan.generator.sampler import Sampler, load_generator
from productgan.models import Generator

# Opset 18 is the first with Resize's antialias attribute (to_native's downscale); ONNX Runtime
# has run it since 1.14.
OPSET = 18
OUTPUTS = ("uint8", "float")
MISSING_EXTRA = (
    "productgan export --format onnx needs onnx, onnxruntime and onnxscript: pip install 'productgan[onnx]'."
)
# The check before the file is kept: images of this many latent vectors (of seed CHECK_SEED)
# from ONNX Runtime against PyTorch. Float outputs may differ by rounding in the convolutions'
# sums; a uint8 pixel whose float value sits within that of a rounding boundary may land one
# level off.
CHECK_IMAGES, CHECK_SEED = 4, 0
FLOAT_TOLERANCE = 1e-4
UINT8_TOLERANCE = 1


@dataclass
class OnnxExport:
    """What ``export_onnx`` wrote: the file, its output, and how far it is from PyTorch."""

    path: Path
    output: str  # "uint8" or "float"
    shape: tuple[int, int, int]  # C, H, W of each image
    max_difference: float  # largest |ONNX Runtime - PyTorch| over the check's images
    opset: int = OPSET


def require_onnx():
    """The modules of the onnx extra (onnx, onnxruntime), or one sentence naming the extra.
    onnxscript is not used here but torch's exporter needs it."""
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError:
        raise ProductganError(MISSING_EXTRA)
    return onnx, onnxruntime


class SamplerGraph(nn.Module):
    """A generator and the Sampler's conversion of its output, as one module to trace."""

    def __init__(self, sampler: Sampler, output: str):
        super().__init__()
        self.generator: Generator = sampler.generator
        self.info, self.output = sampler.info, output

    def images(self, z: torch.Tensor, class_index: torch.Tensor | None) -> torch.Tensor:
        images = self.generator(z, class_index).float()  # N x C x S x S in the pixel range
        if self.output == "float":
            return images
        return to_uint8(to_native(images, self.info), self.info["pixel_range"])  # N x C x H x W uint8


class _Unconditional(SamplerGraph):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.images(z, None)


class _Conditional(SamplerGraph):
    def forward(self, z: torch.Tensor, class_index: torch.Tensor) -> torch.Tensor:
        return self.images(z, class_index)


def check_output(output: str) -> str:
    if output not in OUTPUTS:
        raise UsageError(f"--onnx-output must be uint8 or float, not {output!r}.")
    return output


def export_onnx(source: str | os.PathLike, output: str = "uint8") -> OnnxExport:
    """Write ``model.onnx`` into the exported generator folder of ``source`` (a run directory or
    the folder), replacing an earlier one only once the new file matches PyTorch."""
    output = check_output(output)
    onnx, _ = require_onnx()
    folder = find_export(source)
    sampler = load_generator(folder)
    graph = (_Conditional if sampler.conditional else _Unconditional)(sampler, output).eval()
    inputs = check_inputs(sampler, 2)  # 2: a batch of 1 would fix the batch size in the graph
    names = list(inputs)
    batch = torch.export.Dim("batch", min=1)
    with _quiet_exporter():
        try:
            program = torch.onnx.export(
                graph,
                tuple(torch.from_numpy(value) for value in inputs.values()),
                dynamo=True,
                opset_version=OPSET,
                input_names=names,
                output_names=["images"],
                dynamic_shapes={name: {0: batch} for name in names},
                external_data=False,
                verbose=False,
            )
        except Exception as error:  # the exporter raises many types; none is the user's to fix
            raise ProductganError(f"torch could not export {folder} to ONNX ({first_line(error)}).")
    model = program.model_proto
    onnx.helper.set_model_props(model, metadata(sampler, output))
    checked: dict[str, float] = {}

    def write(tmp: Path) -> None:
        onnx.save_model(model, str(tmp))
        checked["difference"] = parity(tmp, sampler, output)

    path = write_atomic(folder / ONNX_FILE, write)
    channels, size = sampler.generator.channels, sampler.generator.image_size
    shape = (channels, *sampler.native_size) if output == "uint8" else (channels, size, size)
    return OnnxExport(path, output, shape, checked["difference"])


def metadata(sampler: Sampler, output: str) -> dict[str, str]:
    """What the file says about itself (ONNX metadata_props, read with onnxruntime's
    ``session.get_modelmeta().custom_metadata_map``)."""
    return {
        OUTPUT_KEY: output,
        "class_names": json.dumps(sampler.class_names),
        "nz": str(sampler.generator.config.nz),
        "pixel_range": json.dumps(sampler.info["pixel_range"]),
        "native_size": json.dumps(sampler.native_size),
        "image_size": str(sampler.generator.image_size),
        "step": json.dumps(sampler.info.get("step")),
        "dataset": json.dumps(sampler.info.get("dataset")),
    }


OUTPUT_KEY = "productgan_output"  # the metadata entry that says which output the file gives


def recorded_output(path: str | os.PathLike) -> str | None:
    """Which output ("uint8" or "float") the ONNX file at ``path`` says it gives, read from its
    metadata without the onnx package (the model card is written where it is not installed);
    None when the file or the entry cannot be read. ``metadata`` entries are protobuf
    StringStringEntryProto messages at the file's end: field 1 (tag 0x0A) the key, field 2 (tag
    0x12) the value, each a length byte and the text."""
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - 2**20))  # the metadata sits in the file's last bytes
            tail = file.read()
    except OSError:
        return None
    key = OUTPUT_KEY.encode()
    at = tail.rfind(b"\x0a" + bytes([len(key)]) + key)
    value = tail[at + 2 + len(key) :] if at >= 0 else b""
    if len(value) < 2 or value[0] != 0x12:
        return None
    text = value[2 : 2 + value[1]].decode("ascii", "replace")
    return text if text in OUTPUTS else None


def check_inputs(sampler: Sampler, n: int, seed: int = CHECK_SEED) -> dict[str, np.ndarray]:
    """The ONNX inputs for ``n`` images of ``seed``: productgan's latent vectors and, for a
    class-conditional generator, every class in turn (as the Sampler draws them)."""
    inputs = {"z": noise(n, sampler.generator.config.nz, seed).numpy()}
    if sampler.conditional:
        inputs["class_index"] = balanced_labels(n, sampler.generator.num_classes).numpy()
    return inputs


def run_onnx(path: str | os.PathLike, inputs: dict[str, np.ndarray], threads: int = 1) -> np.ndarray:
    """The ``images`` output of the ONNX file at ``path`` for ``inputs``, from ONNX Runtime."""
    _, onnxruntime = require_onnx()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(["images"], inputs)[0]


def torch_images(sampler: Sampler, inputs: dict[str, np.ndarray], output: str) -> np.ndarray:
    """What the Sampler makes of the same inputs: uint8 at native size, or float at training size."""
    z = torch.from_numpy(inputs["z"])
    labels = torch.from_numpy(inputs["class_index"]) if "class_index" in inputs else None
    if output == "uint8":
        return sampler.from_noise(z, size="native", labels=labels).numpy()
    with torch.no_grad():
        return sampler.generator(z, labels).float().numpy()


def parity(path: str | os.PathLike, sampler: Sampler, output: str) -> float:
    """The largest difference between ONNX Runtime's and PyTorch's images for the check's inputs,
    or one sentence when it is larger than the output allows."""
    inputs = check_inputs(sampler, CHECK_IMAGES)
    ours = torch_images(sampler, inputs, output)
    theirs = run_onnx(path, inputs)
    if theirs.shape != ours.shape or theirs.dtype != ours.dtype:
        raise ProductganError(
            f"The ONNX graph gives {theirs.dtype} {theirs.shape} where PyTorch gives {ours.dtype} {ours.shape}; "
            f"no {ONNX_FILE} was written."
        )
    difference = float(np.abs(theirs.astype(np.float64) - ours.astype(np.float64)).max())
    allowed = FLOAT_TOLERANCE if output == "float" else UINT8_TOLERANCE
    if difference > allowed:
        raise ProductganError(
            f"The ONNX graph's images differ from PyTorch's by up to {difference:g} (at most {allowed:g} is "
            f"allowed); no {ONNX_FILE} was written."
        )
    return difference


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence torch's exporter while it runs: its progress lines, and its warnings about
    optional packages (torchvision) and deprecations, are nothing the user can act on."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
