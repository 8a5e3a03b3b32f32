"""Training throughput: productgan's training step against a plain reference loop, same run.

    python benchmarks/throughput.py            # all cases, ~3 minutes on 2 CPU cores
    python benchmarks/throughput.py --steps 10 --cases default-fp32 reference-64
    python benchmarks/throughput.py --device cuda --steps 200   # on a GPU

The reference is the canonical DCGAN recipe as people usually run it: 64x64, 1 channel, nz 100,
ngf = ndf = 64, batch 64, eager float32, fed by a DataLoader whose dataset decodes and resizes one
PIL image per item. productgan's step runs on the packed uint8 array with batches gathered by
index. Each case runs in its own process (clean thread pool, its own peak memory). Beside
images/s each productgan case reports the arithmetic it does (FLOPs of one step, counted by
torch's FlopCounterMode) per second, and the run measures the device's float32 matrix-product
speed: how close a step comes to what the hardware can do. Prints a table and writes
benchmarks/results/throughput-<machine>.json (machine.machine_label: 'amd-epyc-2cpu-avx2',
'nvidia-h200').
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from productgan.machine import cpu_model, machine_label

RESULTS = Path(__file__).resolve().parent / "results"

CANONICAL = {"image_size": 64, "batch_size": 64, "model": {"nz": 100, "ngf": 64, "ndf": 64}}
CASES = {
    # name: (kind, image_size, settings)
    "reference-64": ("reference", 64, {}),
    "canonical-fp32": ("productgan", 64, {"precision": "fp32"}),
    "canonical-bf16": ("productgan", 64, {"precision": "bf16"}),
    "default-fp32": ("productgan", 32, {"precision": "fp32", "default": True}),
    "preset-fp32": ("productgan", 32, {"precision": "fp32", "default": True, "preset": "fmnist-32"}),
    "default-bf16": ("productgan", 32, {"precision": "bf16", "default": True}),
    "preset-bf16": ("productgan", 32, {"precision": "bf16", "default": True, "preset": "fmnist-32"}),
    # --train.precision auto: the calibration's cost (fresh and cached), its choice, and the step's
    # speed in that choice, to hold against preset-fp32 and preset-bf16 of the same run.
    "preset-auto": ("productgan", 32, {"precision": "auto", "default": True, "preset": "fmnist-32"}),
    # The default thread count (torch's: one per core) against one thread.
    "preset-fp32-1thread": (
        "productgan",
        32,
        {"precision": "fp32", "default": True, "preset": "fmnist-32", "threads": 1},
    ),
    "canonical-fp32-1thread": ("productgan", 64, {"precision": "fp32", "threads": 1}),
    "canonical-auto": ("productgan", 64, {"precision": "auto"}),
    "default-compile": ("productgan", 32, {"precision": "fp32", "default": True, "compile": True}),
    "canonical-compile": ("productgan", 64, {"precision": "fp32", "compile": True}),
}
# Cases that only say something on a GPU.
GPU_CASES = {
    # The step as one CUDA graph (train/graphs.py; on by default where it can be) against eager.
    "canonical-bf16-eager": ("productgan", 64, {"precision": "bf16", "cuda_graph": "off"}),
    "canonical-fp32-eager": ("productgan", 64, {"precision": "fp32", "cuda_graph": "off"}),
    # The photo presets at growing batches: the share of the card's peak at the best one.
    **{
        f"products{size}-bf16-b{batch}": (
            "productgan",
            size,
            {"precision": "bf16", "default": True, "preset": f"products-{size}", "batch_size": batch},
        )
        for size, batches in ((64, (64, 256, 1024)), (128, (64, 256)))
        for batch in batches
    },
    "canonical-fp32-nobench": ("productgan", 64, {"precision": "fp32", "cudnn_benchmark": False}),
    "canonical-bf16-b256": ("productgan", 64, {"precision": "bf16", "batch_size": 256}),
    "default-bf16-b512": ("productgan", 32, {"precision": "bf16", "default": True, "batch_size": 512}),
    "default-compile-nchw": (
        "productgan",
        32,
        {"precision": "fp32", "default": True, "compile": True, "channels_last": False},
    ),
}


# Dense bfloat16 tensor-core peaks from the makers' data sheets (TFLOP/s, without sparsity), by
# a piece of the name torch reports; the first match wins, so the longer names come first.
CARD_BF16_PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("H200", 989.4),
    ("A100", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
)


def card_bf16_peak_tflops(name: str) -> float | None:
    """The data-sheet bfloat16 peak of the GPU named ``name``, or None for a card not listed."""
    return next((peak for part, peak in CARD_BF16_PEAK_TFLOPS if part in name), None)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_productgan(image_size: int, settings: dict, steps: int, warmup: int, device: str) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from productgan.config import ModelConfig, RunConfig, from_dict, preset_settings, resolve
    from productgan.data import open_dataset
    from productgan.train import Trainer
    from productgan.train.logs import StepStats

    train = {
        "precision": settings["precision"],
        "device": device,
        "compile": settings.get("compile", False),
        "channels_last": settings.get("channels_last", True),
        "cudnn_benchmark": settings.get("cudnn_benchmark", True),
        "cuda_graph": settings.get("cuda_graph", "auto"),
        "threads": settings.get("threads", 0),
    }
    config = from_dict(RunConfig, preset_settings(settings.get("preset") or None, {"out": "unused", "train": train}))
    if not settings.get("default"):
        config.batch_size = CANONICAL["batch_size"]
        config.model = ModelConfig(**CANONICAL["model"])
    config.batch_size = settings.get("batch_size", config.batch_size)
    dataset = open_dataset("fashion-mnist", image_size=image_size)
    resolve(config, dataset)
    auto = calibrate(config, dataset) if config.train.precision == "auto" else {}
    trainer = Trainer(config, Path("/nonexistent"), dataset)
    stats = StepStats.zeros(trainer.device)
    # The arithmetic of one step, forward and backward, counted on an eager step (a graph's
    # replay dispatches nothing to count); it is the first warm-up step.
    with FlopCounterMode(display=False) as counter:
        trainer.train_step(stats)
    if trainer.graph is not None:
        warmup = max(warmup, trainer.graph.steps_before_replay)  # time replays only
    for _ in range(warmup):
        trainer.train_step(stats)
    stats.means()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(stats)
    values = stats.means()  # the one host sync, as in the loop
    seconds = time.perf_counter() - start
    images_per_s = steps * config.batch_size / seconds
    gflop_per_image = counter.get_total_flops() / config.batch_size / 1e9
    return {
        "images_per_s": images_per_s,
        "batch_size": config.batch_size,
        "model": vars(config.model),
        "autocast": str(trainer.precision.dtype),
        "loss_d": values["loss_d"],
        "gflop_per_image": gflop_per_image,
        "gflop_per_s": gflop_per_image * images_per_s,
        "cuda_graph": trainer.graph is not None and trainer.graph.active,
        "cuda_graph_dropped": trainer.graph.dropped if trainer.graph is not None else None,
        **auto,
    }


def calibrate(config, dataset) -> dict:
    """--train.precision auto as a run decides it, in an empty cache (the cost of measuring) and
    again (the cost of a cache hit); ``config`` takes the choice."""
    import os
    import tempfile

    import torch

    from productgan.train.calibration import choose_precision

    with tempfile.TemporaryDirectory() as cache:
        os.environ["PRODUCTGAN_CACHE"] = cache
        start = time.perf_counter()
        record = choose_precision(config, dataset, torch.device(config.train.device))
        measured_s = time.perf_counter() - start
        config.train.precision = "auto"
        start = time.perf_counter()
        again = choose_precision(config, dataset, torch.device(config.train.device))
        cached_s = time.perf_counter() - start
    assert again["cached"] and again["chosen"] == record["chosen"]
    return {
        "auto_chosen": record["chosen"],
        "auto_measured_images_per_s": record["images_per_s"],
        "auto_probe_images_per_s": record["probe_images_per_s"],
        "calibration_s": measured_s,
        "calibration_cached_s": cached_s,
    }


def run_reference(steps: int, warmup: int, device: str) -> dict:
    """The canonical eager recipe of reference.py (20,000 PNG-encoded training images)."""
    from reference import NDF, NGF, NZ, ReferenceTrainer

    from productgan.data import load_fashion_mnist

    trainer = ReferenceTrainer(load_fashion_mnist().train_images[:20000], device=device)
    for _ in range(warmup):
        trainer.step()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    seconds = time.perf_counter() - start
    return {
        "images_per_s": steps * 64 / seconds,
        "batch_size": 64,
        "model": {"nz": NZ, "ngf": NGF, "ndf": NDF},
        "autocast": "None",
    }


def matmul_gflop_per_s(device: str, size: int = 2048, repeats: int = 10, dtype: str = "float32") -> float:
    """Matrix-product speed in ``dtype``: the ceiling a convolution-bound training step in that
    precision can approach. Where one 512 x 512 product already takes over 50 ms (an emulated
    precision), that size is measured instead of ``size``: the ceiling is then far below any
    step worth running, and the full size would take minutes."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    kind = getattr(torch, dtype)

    def best_seconds(n: int, times: int) -> float:
        a, b = (torch.randn(n, n, device=device, dtype=kind) for _ in range(2))
        a @ b
        best = float("inf")
        for _ in range(times):
            sync()
            start = time.perf_counter()
            a @ b
            sync()
            best = min(best, time.perf_counter() - start)
        return best

    if best_seconds(512, 1) > 0.05:
        size = 512
    return 2 * size**3 / best_seconds(size, repeats) / 1e9


def run_case(name: str, steps: int, warmup: int, device: str) -> dict:
    kind, image_size, settings = {**CASES, **GPU_CASES}[name]
    from productgan.train.precision import cpu_has_native_bf16

    if device == "cpu" and settings.get("precision") == "bf16" and not cpu_has_native_bf16():
        steps, warmup = min(steps, 4), 1  # emulated bf16 is so slow that a few steps tell enough
    if kind == "reference":
        result = run_reference(steps, warmup, device)
    else:
        result = run_productgan(image_size, settings, steps, warmup, device)
    return {"case": name, "image_size": image_size, "steps": steps, **result, "peak_rss_mib": peak_rss_mib()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="Timed steps per case.")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=[*CASES, *GPU_CASES],
        help="Default: every case (on a GPU also the GPU-only ones).",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda when one is visible).")
    parser.add_argument("--results", help="Where the JSON goes (default: results/throughput-<machine>.json).")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run one case in this process
    args = parser.parse_args()

    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.cases is None:
        args.cases = list(CASES) + (list(GPU_CASES) if args.device.startswith("cuda") else [])
    if args.one:
        print(json.dumps(run_case(args.one, args.steps, args.warmup, args.device)))
        return

    from productgan.train.precision import cpu_has_native_bf16

    RESULTS.mkdir(exist_ok=True)
    gpu = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else None
    path = Path(args.results) if args.results else RESULTS / f"throughput-{machine_label(gpu)}.json"
    rows = []
    for name in args.cases:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                name,
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
                "--device",
                args.device,
            ],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            print(f"{name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        write_results(path, {"device": args.device, "incomplete": True}, args.steps, rows)  # kept if cut short
        print(
            f"{name:<22} {rows[-1]['images_per_s']:8.0f} img/s   peak RSS {rows[-1]['peak_rss_mib']:6.0f} MiB",
            flush=True,
        )

    size = 8192 if args.device.startswith("cuda") else 2048  # a GPU needs a large product to fill it
    peak = matmul_gflop_per_s(args.device, size=size)
    native_bf16 = cpu_has_native_bf16()  # recorded beside the figures; it decides nothing
    peak_bf16 = matmul_gflop_per_s(args.device, size=size, dtype="bfloat16", repeats=3)
    card_peak = card_bf16_peak_tflops(gpu) if gpu else None
    ceiling = {"torch.float32": peak, "None": peak, "torch.bfloat16": peak_bf16}
    reference = next((r["images_per_s"] for r in rows if r["case"] == "reference-64"), None)
    print(
        f"\n{'case':<22} {'size':>4} {'img/s':>8} {'x reference':>12} {'precision':>10} {'GFLOP/s':>8} "
        f"{'of ceiling':>10} {'peak MiB':>9}" + (f" {'of card bf16':>12} {'graph':>5}" if gpu else "")
    )
    for r in rows:
        ratio = f"{r['images_per_s'] / reference:.2f}" if reference else "-"
        flops = f"{r['gflop_per_s']:.0f}" if "gflop_per_s" in r else "-"
        top = ceiling.get(r.get("autocast", "None"))
        r["share_of_ceiling"] = r["gflop_per_s"] / top if top and "gflop_per_s" in r else None
        share = f"{r['share_of_ceiling']:.0%}" if r["share_of_ceiling"] is not None else "-"
        dtype = {"None": "fp32", "torch.float32": "fp32"}.get(r["autocast"], r["autocast"].replace("torch.", ""))
        card = ""
        if gpu:
            r["share_of_card_bf16_peak"] = (
                r["gflop_per_s"] / (card_peak * 1000) if card_peak and "gflop_per_s" in r else None
            )
            of_card = f"{r['share_of_card_bf16_peak']:.1%}" if r["share_of_card_bf16_peak"] is not None else "-"
            card = f" {of_card:>12} {'yes' if r.get('cuda_graph') else 'no':>5}"
        print(
            f"{r['case']:<22} {r['image_size']:>4} {r['images_per_s']:>8.0f} {ratio:>12} {dtype:>10} {flops:>8} "
            f"{share:>10} {r['peak_rss_mib']:>9.0f}" + card
        )
        if r.get("cuda_graph_dropped"):
            print(f"    {r['case']}: no CUDA graph, {r['cuda_graph_dropped']}")
    print(f"float32 matrix product on this device: {peak:.1f} GFLOP/s")
    print(f"bfloat16 matrix product on this device: {peak_bf16:.1f} GFLOP/s")
    if gpu:
        sheet = f"{card_peak:,.0f} TFLOP/s" if card_peak else "not listed in CARD_BF16_PEAK_TFLOPS"
        print(f"{gpu}: bfloat16 peak on its data sheet {sheet}")
    for r in rows:
        if "auto_chosen" in r:
            family = r["case"].rsplit("-", 1)[0]
            forced = {x["case"]: x["images_per_s"] for x in rows if x["case"] in (f"{family}-fp32", f"{family}-bf16")}
            best = max(forced.values(), default=None)
            against = f"; {r['images_per_s'] / best:.0%} of the faster forced precision" if best else ""
            print(
                f"{r['case']}: auto chose {r['auto_chosen']} (measured "
                + ", ".join(
                    f"{p} {v:.0f}" if v else f"{p} ruled out by its probe ({r['auto_probe_images_per_s'][p]:.1f})"
                    for p, v in r["auto_measured_images_per_s"].items()
                )
                + f" images/s) in {r['calibration_s']:.1f} s, {r['calibration_cached_s'] * 1000:.0f} ms from the cache"
                + against
            )

    machine = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "native_bf16": native_bf16,
        "device": args.device,
        "matmul_fp32_gflop_per_s": peak,
        "matmul_bf16_gflop_per_s": peak_bf16,
    }
    machine["label"] = machine_label(gpu)
    if gpu:
        machine["gpu"] = gpu
        machine["card_bf16_peak_tflops"] = card_peak
    write_results(path, machine, args.steps, rows)
    print(f"\nwritten to {path}")


def write_results(path: Path, machine: dict, steps: int, rows: list[dict]) -> None:
    record = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "steps": steps,
        "results": rows,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
