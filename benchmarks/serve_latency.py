"""How fast ``productgan serve`` answers, and how much memory it holds, on this machine.

Starts ``productgan serve`` in a process of its own (the command as users run it), then, over one
kept-alive connection, times 200 requests to each endpoint and prints the median and the 95th
percentile; sends 1,000 more mixed requests and prints the server's resident memory (RSS) before
and after; finally sends a burst of 50 parallel requests for 1,024 images and prints how long
/health took meanwhile and how the burst was answered.

Without a run the generator is the ``fmnist-32`` preset's architecture (nz 100, ngf 32, 32x32
grey, 10 classes) with untrained weights: it costs what a trained one costs. The latent tools
(named images, walks, variants, zips) are timed either way; nearest training images and
projection need a run directory (its data and evaluator), and are timed only when one is given:
the training split's features are computed once first, projection is timed over fewer requests
(``--projections``, at the API's default of 300 steps and 4 starts).

    python benchmarks/serve_latency.py                                  # the fmnist-32 architecture
    python benchmarks/serve_latency.py runs/00000-fashion-mnist-32      # a trained run
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from productgan.config import ModelConfig
from productgan.generator.export import write_export as export_generator
from productgan.machine import cpu_model
from productgan.models import Generator, init_weights

FASHION_MNIST = {
    "class_names": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
    "native_size": [28, 28],
    "fit": "pad",
    "padded_size": [32, 32],
    "pad": [2, 2, 2, 2],
    "background": 0,
    "dataset": "fashion-mnist",
}
ENDPOINTS = [
    "/health",
    "/info",
    "/?n=16",
    "/images.png?n=16&seed={i}",
    "/images.npy?n=16&seed={i}",
    "/images.png?n=256&seed={i}",
    "/image.png?seed={i}&index=1000",
    "/openapi.json",
    "/docs",
    "/named.png?name={i}:3",
    "/named.png?name={i}:3&scale=8",
    "/walk.gif?from={i}:0&to={i}:1&frames=24&scale=4",
    "/walk.webp?from={i}:0&to={i}:1&frames=24&scale=4",
    "/walk.png?from={i}:0&to={i}:1&frames=24",
    "/walk.npy?from={i}:0&to={i}:1&frames=24",
    "/variants.png?of={i}:3&n=16",
    "/variants.json?of={i}:3&n=16",
    "/images.zip?n=16&seed={i}",
    "POST /selection.zip",
]
# Timed only when the server serves a run directory.
RUN_ENDPOINTS = ["/neighbours.json?of={i}:3&k=4", "/neighbours.png?of={i}:3&k=4", "/training/{t}.png"]


def untrained_export(folder: Path) -> Path:
    torch.manual_seed(0)
    generator = Generator(ModelConfig(conditional=True, ndf=32), 32, 1, num_classes=10)
    init_weights(generator)
    return export_generator(generator.eval(), folder, FASHION_MNIST)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(connection: http.client.HTTPConnection, path: str, i: int = 0, training: list[int] = ()) -> tuple[float, int]:
    """Seconds one request took, and its status: GET of ``path`` with {i} (and {t}, a training
    image's index) filled in, or a POST of its body (16 names, or a photo)."""
    method, body, headers = "GET", None, {}
    if path == "POST /selection.zip":
        method, path = "POST", "/selection.zip"
        body = json.dumps({"names": [f"{i}:{k}" for k in range(16)]}).encode()
        headers = {"Content-Type": "application/json"}
    elif path == "POST /project":
        method, path = "POST", "/project"
        body, headers = photo_form(i)
    else:
        path = path.format(i=i, t=training[i % len(training)] if training else 0)
    start = time.perf_counter()
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    response.read()
    return time.perf_counter() - start, response.status


def photo_form(i: int) -> tuple[bytes, dict[str, str]]:
    """A multipart form holding a 600 x 800 JPEG photo (a light product shape on dark, seeded)."""
    rng = np.random.default_rng(i)
    picture = np.zeros((800, 600), np.uint8)
    top, left = rng.integers(100, 300, 2)
    picture[top : top + 400, left : left + 250] = rng.integers(150, 255)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG", quality=90)
    boundary = "productgan-benchmark"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="photo.jpg"\r\n'
    head += "Content-Type: image/jpeg\r\n\r\n"
    body = head.encode() + buffer.getvalue() + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def one_request(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        return timed(connection, path)[1]
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "source", nargs="?", help="A run directory or exported generator (default: untrained fmnist-32)."
    )
    parser.add_argument("--requests", type=int, default=200, help="Requests timed per endpoint.")
    parser.add_argument("--mixed", type=int, default=1000, help="Mixed requests before memory is read again.")
    parser.add_argument("--projections", type=int, default=20, help="Projections timed (a run directory only).")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        source = args.source or str(untrained_export(Path(scratch) / "generator"))
        port = free_port()
        command = [sys.executable, "-m", "productgan", "serve", source, "--port", str(port)]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            print(server.stdout.readline().strip())
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            for _ in range(100):
                try:
                    timed(connection, "/health")
                    break
                except OSError:
                    connection.close()
                    time.sleep(0.1)
            print(f"{cpu_model()}, {os.cpu_count()} CPUs; torch {torch.__version__}")
            print(f"server RSS after start-up: {rss_mib(server.pid):.0f} MiB\n")
            endpoints = [(endpoint, args.requests) for endpoint in ENDPOINTS]
            training: list[int] = []
            if args.source and Path(args.source, "config.yaml").is_file():
                first, status = timed(connection, "/neighbours.json?of=0:0&k=1")
                assert status == 200, status
                print(f"first neighbours request (the training split's features, once): {first:.1f} s")
                connection.request("GET", "/neighbours.json?" + "&".join(f"of=0:{k}" for k in range(16)) + "&k=16")
                answer = json.loads(connection.getresponse().read())
                training = sorted({n["index"] for image in answer["images"] for n in image["neighbours"]})
                endpoints += [(endpoint, args.requests) for endpoint in RUN_ENDPOINTS]
                endpoints.append(("POST /project", args.projections))
            print(f"{'request':<52}{'median ms':>10}{'p95 ms':>10}")
            for endpoint, count in endpoints:
                seconds = []
                for i in range(count):
                    elapsed, status = timed(connection, endpoint, i, training)
                    assert status == 200, (endpoint, status)
                    seconds.append(elapsed)
                p95 = statistics.quantiles(seconds, n=20)[-1]
                shown = endpoint.replace("{i}", "I").replace("{t}", "T") + (
                    "" if count == args.requests else f" ({count})"
                )
                print(f"{shown:<52}{statistics.median(seconds) * 1000:>10.1f}{p95 * 1000:>10.1f}")
            timed_total = sum(count for _, count in endpoints)
            print(f"\nserver RSS after those {timed_total:,} requests: {rss_mib(server.pid):.0f} MiB")
            for i in range(args.mixed):
                timed(connection, ENDPOINTS[i % len(ENDPOINTS)], 10_000 + i)
            print(f"server RSS after {args.mixed:,} more, mixed: {rss_mib(server.pid):.0f} MiB")

            with ThreadPoolExecutor(50) as pool:
                burst = [pool.submit(one_request, port, f"/images.png?n=1024&seed={i}") for i in range(50)]
                time.sleep(0.3)
                health = [timed(connection, "/health")[0] for _ in range(10)]
                answers = Counter(future.result() for future in burst)
            print(
                f"/health during 50 parallel requests for 1,024 images: median "
                f"{statistics.median(health) * 1000:.1f} ms, at most {max(health) * 1000:.1f} ms; "
                f"the burst got {dict(sorted(answers.items()))}"
            )
            print(f"server RSS after the burst: {rss_mib(server.pid):.0f} MiB")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
