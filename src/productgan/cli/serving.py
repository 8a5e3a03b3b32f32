"""The ``serve`` command: a web page and REST API over a trained generator."""

from __future__ import annotations

from typing import Optional

from jsonargparse import ArgumentParser

from productgan.cli.common import DEVICE_HELP, SOURCE_HELP, Command, call, new_parser, parse
from productgan.serve import serve
from productgan.serve.app import DEFAULT_MAX_IMAGES

SERVE = "a web page and REST API that make images from a trained generator"


def _serve_parser() -> ArgumentParser:
    parser = new_parser("serve", SERVE)
    parser.add_argument("source", type=str, help=SOURCE_HELP)
    parser.add_argument(
        "--host", type=str, default="127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)."
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", type=str, default="cpu", help=DEVICE_HELP)
    parser.add_argument(
        "--max_images", type=int, default=DEFAULT_MAX_IMAGES, help="The most images one request may ask for."
    )
    parser.add_argument(
        "--workers",
        type=Optional[int],
        default=None,
        help="Image requests made at a time (default: one per CPU, at most 4).",
    )
    parser.add_argument(
        "--queue",
        type=Optional[int],
        default=None,
        help="Image requests that may wait for a worker (default 8); more get 503 and Retry-After at once.",
    )
    parser.add_argument(
        "--request_timeout",
        type=Optional[float],
        default=None,
        help="Seconds a request has to arrive whole (default 10); a slower client's connection is closed.",
    )
    parser.add_argument(
        "--cors_origin",
        dest="cors_origins",
        metavar="CORS_ORIGIN",
        type=str,
        action="append",
        default=[],
        help="A web origin whose pages may call the API (https://shop.example.com); repeat for more. None by default.",
    )
    parser.add_argument(
        "--root_path", type=str, default="", help="The path prefix a proxy serves the server under, as /gan."
    )
    return parser


def run_serve(args: list[str]) -> int:
    with parse(_serve_parser(), args) as options:
        call(serve, options)
    return 0


COMMANDS = [Command("serve", SERVE, run_serve)]
