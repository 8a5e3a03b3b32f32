"""How fast ``productgan serve`` answers, and how much memory it holds, on this machine.

Starts ``productgan serve`` in a process of its own (the command as users run it), then, over one
kept-alive connection, times 200 requests to each endpoint and prints the median and the 95th
percentile; sends 1,000 more mixed requests and prints the server's resident memory (RSS) before
and after; finally sends a burst of 50 parallel requests for 1,024 images and prints how long
/health took meanwhile and how the burst was answered.

Without a run the generator is the ``fmnist-32`` preset's architecture (nz 100, ngf 32, 32x32
grey, 10 classes) with untrained weights: it costs what a trained one costs.

    python benchmarks/serve_latency.py                                  # the fmnist-32 architecture
    python benchmarks/serve_latency.py runs/00000-fashion-mnist-32      # a trained run
"""

from __future__ import annotations

import argparse
import http.client
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

import torch

from productgan.config import ModelConfig
from productgan.machine import cpu_model
from productgan.models import Generator, init_weights
from productgan.sampling import export_generator

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
]


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


def timed(connection: http.client.HTTPConnection, path: str) -> tuple[float, int]:
    start = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    return time.perf_counter() - start, response.status


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
            print(f"{'request':<34}{'median ms':>10}{'p95 ms':>10}")
            for endpoint in ENDPOINTS:
                seconds = []
                for i in range(args.requests):
                    elapsed, status = timed(connection, endpoint.format(i=i))
                    assert status == 200, (endpoint, status)
                    seconds.append(elapsed)
                p95 = statistics.quantiles(seconds, n=20)[-1]
                print(
                    f"{endpoint.replace('{i}', 'I'):<34}{statistics.median(seconds) * 1000:>10.1f}{p95 * 1000:>10.1f}"
                )
            timed_total = len(ENDPOINTS) * args.requests
            print(f"\nserver RSS after those {timed_total:,} requests: {rss_mib(server.pid):.0f} MiB")
            for i in range(args.mixed):
                timed(connection, ENDPOINTS[i % len(ENDPOINTS)].format(i=10_000 + i))
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
