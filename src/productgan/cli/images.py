"""The commands that write a trained generator's output: ``generate`` (images to a file or folder) and
``export`` (the generator again from a checkpoint, or as ONNX)."""

from __future__ import annotations

from typing import Literal, Optional

from jsonargparse import ArgumentParser

from productgan import run
from productgan.cli.common import (
    BACKGROUND_HELP,
    CROP_HELP,
    DEVICE_HELP,
    SOURCE_HELP,
    TEMPERATURE_HELP,
    Command,
    call,
    new_parser,
    parse,
)
from productgan.errors import UsageError
from productgan.generator.latents import chosen_label
from productgan.generator.onnx import CHECK_IMAGES
from productgan.generator.output import generate_to_path
from productgan.generator.sampler import load_generator

GENERATE = "make images from a run directory or an exported generator"
EXPORT = "export a run's generator again from a checkpoint, or as ONNX (--format onnx)"


def _generate_parser() -> ArgumentParser:
    parser = new_parser("generate", GENERATE)
    parser.add_argument("source", type=str, help=SOURCE_HELP)
    parser.add_argument("--n", type=int, default=64, help="Number of images.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random vectors: same seed, same images.")
    parser.add_argument(
        "--out",
        type=str,
        required=True,
        help="NAME.npy (uint8 N x C x H x W), NAME.png (one grid) or a folder (one PNG per image).",
    )
    parser.add_argument(
        "--size",
        type=Literal["native", "training"],
        default="native",
        help="'native' (the dataset's own size, 28x28 for Fashion-MNIST) or 'training'.",
    )
    parser.add_argument("--device", type=str, default="cpu", help=DEVICE_HELP)
    parser.add_argument(
        "--label",
        type=str,
        default=None,
        help="Product category (name or index) for a class-conditional generator; by default every class in turn.",
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing output.")
    parser.add_argument("--temperature", type=float, default=1.0, help=TEMPERATURE_HELP)
    parser.add_argument(
        "--crop",
        type=Literal["none", "product"],
        default="none",
        help=CROP_HELP + " A .png grid centres them on one cell; not for .npy.",
    )
    parser.add_argument(
        "--background",
        type=Literal["keep", "transparent"],
        default="keep",
        help=BACKGROUND_HELP + " A .npy gets the alpha as a last channel (N x C+1 x H x W).",
    )
    parser.add_argument(
        "--edit",
        type=str,
        default=None,
        help="Move every image along the generator's directions: size=+1,hue=-0.5 (after `productgan directions "
        "RUN`; image i is then the image named SEED:i^EDITS).",
    )
    return parser


def run_generate(args: list[str]) -> int:
    with parse(_generate_parser(), args) as options:
        sampler = call(load_generator, options)
        path = call(generate_to_path, options, source=sampler)
        # The class's own name, whether it was given by index or in another case.
        label = chosen_label(options.label)
        what = "" if label is None else f" of class {sampler.class_names[sampler.class_index(label)]!r}"
        print(f"Wrote {options.n} images{what} to {path}")
    return 0


def _export_parser() -> ArgumentParser:
    parser = new_parser("export", EXPORT)
    parser.add_argument("run_dir", type=str, help="A run directory with checkpoints/last.pt.")
    parser.add_argument(
        "--checkpoint",
        type=Optional[Literal["last", "best"]],
        default=None,
        help="last.pt (the default for safetensors), or best.pt (the best validation score; needs "
        "--train.eval-every). It replaces RUN_DIR/generator/ as a whole, an earlier model.onnx included.",
    )
    parser.add_argument(
        "--format",
        type=Literal["safetensors", "onnx"],
        default="safetensors",
        help="safetensors: write RUN_DIR/generator/ from the checkpoint; onnx: add model.onnx (runs with "
        "onnxruntime alone) to the generator there, exported first from --checkpoint when one is given.",
    )
    parser.add_argument(
        "--onnx_output",
        type=Optional[Literal["uint8", "float"]],
        default=None,
        help="What model.onnx gives: uint8 images at the dataset's native size (default), or float at the "
        "training size in the generator's pixel range.",
    )
    return parser


def run_export(args: list[str]) -> int:
    with parse(_export_parser(), args) as options:
        if options.format == "safetensors" and options.onnx_output is not None:
            raise UsageError("--onnx-output applies to --format onnx; add --format onnx, or drop it.")
        if options.format == "safetensors" or options.checkpoint is not None:
            print(f"Exported generator to {call(run.export_run, options, checkpoint=options.checkpoint or 'last')}")
        if options.format == "onnx":
            written = call(run.export_run_onnx, options, output=options.onnx_output or "uint8")
            channels, height, width = written.shape
            what = f"{width}x{height}, {channels} channel{'s' if channels > 1 else ''}"
            print(
                f"Exported ONNX generator to {written.path} (opset {written.opset}; output {written.output} images "
                f"of {what}; largest difference from PyTorch on {CHECK_IMAGES} images: {written.max_difference:g})"
            )
    return 0


COMMANDS = [Command("generate", GENERATE, run_generate), Command("export", EXPORT, run_export)]
