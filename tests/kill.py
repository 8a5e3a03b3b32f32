"""SIGKILL real training and export processes, resume them, and check that every interrupted
run ends where an uninterrupted one does: the machinery of tests/test_kill.py (a few kills) and
benchmarks/kill_campaign.py (many, at seeded-random moments).

A ``Campaign`` makes a tiny packed dataset (seeded noise shaped like Fashion-MNIST: no download)
and trains an uninterrupted reference run. ``Campaign.chain`` starts the same run in a fresh
folder, kills it as each ``Plan`` says, resumes it with ``productgan train --resume RUN`` (no
budget: the run's own), kills again, until a resume finishes; a chain may also kill
``productgan export RUN`` mid-way and run it again. After every kill it checks what DESIGN.md
promises:

- checkpoints/last.pt loads, or is absent; it never goes back to an earlier step, and at most one
  checkpoint interval of the steps logged is lost;
- generator/ is absent or whole (it loads, and its weights are the reference's);
- config.yaml loads, every PNG decodes, metrics.jsonl lines are JSON (the last may be cut short);

after every command that ends by itself, that no temporary file (``.NAME.tmp-HOST-PID-...``,
``.NAME.old-...``) is left in the run folder; and at the end of each chain, that
generator/model.safetensors is byte-identical to the reference's, that last.pt holds the same
tensors and values, that metrics.jsonl has every step once, in order, with the reference's values,
and that every sample grid present is the reference's. Where each kill landed is told by the
killed process's temporary files and by which files changed.

Kill moments follow each command's progress, not the clock (the machine's load varies): a share
of start-up, a share of the steps left, or the first checkpoint, sample grid or export write after
that share, seen by polling the run folder for the process's temporaries. A run killed before its
first checkpoint is deleted and started again, after checking that ``train --out`` refuses it
with that advice. A resume after the export was complete is refused (exit 2, the budget is spent);
the chain then exports. The commands are ``python -m productgan``: what this interpreter imports
(an editable install's working tree; set PYTHONPATH to a checkout's src/ to test that one).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from productgan.checkpoint import load_checkpoint
from productgan.data import prepare
from productgan.errors import ProductganError
from productgan.generator.sampler import load_generator
from productgan.run import (
    CONFIG_FILE,
    GENERATOR_DIR,
    LAST_CHECKPOINT,
    LOCK_FILE,
    METRICS_FILE,
    SAMPLES_DIR,
    load_run_config,
)

CHECKPOINT_EVERY = 2
SAMPLE_EVERY = 3
WEIGHTS = Path(GENERATOR_DIR) / "model.safetensors"
# Any temporary a writer leaves beside its target, and the process that owns it.
TEMPORARY = re.compile(r"^\.(?P<name>.+?)\.(?P<kind>tmp|old)-")
OWNER = re.compile(r"-(?P<pid>\d+)-[^-]*$")
TIMING_KEYS = ("elapsed_s", "images_per_s")
POLL_S = 0.0005
SLOW_POLL_S = 0.01
LANDINGS = {
    "checkpoint": "checkpoint write",
    "samples": "sample grid write",
    "reals": "reals grid write",
    "config": "config.yaml write",
    "metrics": "metrics.jsonl trim",
}


@dataclass
class Plan:
    """When to kill one command, told by its progress rather than the clock (the machine's load
    varies). ``trigger`` "early": after a share ``at`` of the reference's start-up time (inside
    the interpreter's imports, mostly). "delay": once the command has done a share ``at`` of the
    steps it has left (0: as soon as it holds the run), ``extra_s`` seconds later. "checkpoint",
    "samples", "export": from that point on, at the first such write of the process,
    ``extra_s`` seconds after the write is seen to begin."""

    trigger: str
    at: float
    extra_s: float = 0.0

    def describe(self) -> str:
        if self.trigger == "early":
            return f"{self.at:.0%} into start-up"
        if self.trigger == "delay":
            return f"{self.at:.0%} of the steps +{self.extra_s * 1000:.0f} ms"
        return f"{self.trigger} write after {self.at:.0%}, +{self.extra_s * 1000:.1f} ms"


@dataclass
class ChainSpec:
    """The kills of one chain: those of its training commands, then those of its exports."""

    train: list[Plan]
    export: list[Plan] = field(default_factory=list)


@dataclass
class Command:
    kind: str  # train, resume, export
    plan: str | None
    seconds: float
    returncode: int
    killed: bool
    landed: str | None = None
    step_logged: int | None = None
    checkpoint_step: int | None = None
    note: str | None = None


@dataclass
class ChainResult:
    index: int
    run_dir: str
    commands: list[Command] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def kills(self) -> int:
        return sum(c.killed for c in self.commands)

    def count(self, kind: str, killed: bool | None = None) -> int:
        return sum(c.kind == kind and (killed is None or c.killed == killed) for c in self.commands)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kills": self.kills}


def encode_idx(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes() + array.tobytes()


def make_dataset(folder: Path, n_train: int = 200, n_test: int = 50, seed: int = 0) -> Path:
    """Seeded 28x28 noise with labels 0..9 as gzipped Fashion-MNIST idx files, packed at 32x32
    (180 train, 20 val, 50 test), as the tests' fixtures make it."""
    source = folder / "idx"
    source.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for name, array in arrays.items():
        (source / f"{name}.gz").write_bytes(gzip.compress(encode_idx(array), mtime=0))
    return prepare(source, folder / "packed", image_size=32, val_size=20, seed=0)


def productgan(*args: object) -> list[str]:
    return [sys.executable, "-m", "productgan", *map(str, args)]


def temporaries(run_dir: Path) -> list[Path]:
    """Every temporary file or folder anywhere in ``run_dir``."""
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.rglob(".*") if TEMPORARY.match(p.name))


def write_kind(name: str) -> str:
    """What a temporary is the making of: checkpoint, samples, reals, export, config, metrics."""
    if name in ("last.pt", "best.pt"):
        return "checkpoint"
    if name.startswith("step-"):
        return "samples"
    if name == GENERATOR_DIR:
        return "export"
    if name == "reals.png":
        return "reals"
    return name.split(".")[0]


def writes_of(run_dir: Path, pid: int) -> list[Path]:
    """The temporaries process ``pid`` has open now (the run folder and the folders it writes in)."""
    found = []
    for folder in (run_dir, run_dir / "checkpoints", run_dir / SAMPLES_DIR):
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if TEMPORARY.match(entry.name) and (owner := OWNER.search(entry.name)) and int(owner["pid"]) == pid:
                        found.append(Path(entry.path))
        except FileNotFoundError:
            continue
    return found


def holds_lock(run_dir: Path, pid: int) -> bool:
    """Whether process ``pid`` has written itself into the run's lock (as the lock's holder does)."""
    try:
        return f"process {pid} " in (run_dir / LOCK_FILE).read_text()
    except OSError:
        return False


def logged_step(run_dir: Path, since: float) -> int | None:
    """The last step in metrics.jsonl, if the file was written after ``since`` (a resume first
    trims what an earlier command logged past the checkpoint)."""
    path = run_dir / METRICS_FILE
    try:
        if path.stat().st_mtime < since:
            return None
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 512))
            tail = f.read()
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def snapshot(run_dir: Path) -> dict[str, tuple[int, ...]]:
    """Every path in ``run_dir`` but the run's lock, with its inode (and size and time for
    files): what changed is where a process was."""
    state = {}
    if not run_dir.is_dir():
        return state
    for path in run_dir.rglob("*"):
        if path.name == LOCK_FILE:
            continue
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        key = str(path.relative_to(run_dir))
        state[key] = (st.st_ino,) if path.is_dir() else (st.st_ino, st.st_size, st.st_mtime_ns)
    return state


def metrics_lines(run_dir: Path) -> tuple[list[dict], list[str]]:
    """The records of metrics.jsonl and the problems with it (a last line cut short by a kill is
    none: resume drops it)."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return [], []
    text = path.read_text()
    lines = text.splitlines()
    records, problems = [], []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "step" not in record:
                raise ValueError("no step")
            records.append(record)
        except ValueError:
            if i == len(lines) - 1 and not text.endswith("\n"):
                continue
            problems.append(f"{METRICS_FILE} line {i + 1} is not a JSON record: {line[:60]!r}")
    return records, problems


def checkpoint_step(run_dir: Path) -> int | None:
    path = run_dir / LAST_CHECKPOINT
    return int(load_checkpoint(path)["step"]) if path.exists() else None


def state_differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where two checkpoint states differ: tensors bit for bit, plain values exactly (the wall time
    and the run folder differ by nature)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
        return [] if same and a.shape == b.shape and torch.equal(a, b) else [where]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where} (keys)"]
        return [d for k in a if k not in ("elapsed_s", "out") for d in state_differences(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where} (length)"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in state_differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [where]


class Campaign:
    """One dataset, one reference run, and the chains checked against it, all under ``work``."""

    def __init__(self, work: Path, steps: int = 120, grid_size: int = 16, log=print):
        self.work, self.steps, self.grid_size, self.log = Path(work), steps, grid_size, log or (lambda *_: None)
        self.work.mkdir(parents=True, exist_ok=True)
        self.data = make_dataset(self.work / "data")
        self.ref_dir = self.work / "reference"
        self.failures: list[str] = []
        self.train_s = self.start_up_s = 0.0

    def train_command(self, run_dir: Path) -> list[str]:
        return productgan(
            "train", "--data", self.data, "--out", run_dir, "--steps", self.steps, "--batch-size", 16,
            "--model.ngf", 8, "--model.ndf", 8, "--model.nz", 16, "--train.precision", "fp32",
            "--train.device", "cpu", "--train.checkpoint-every", CHECKPOINT_EVERY,
            "--train.sample-every", SAMPLE_EVERY, "--train.log-every", 1, "--train.threads", 1,
            "--train.grid-size", self.grid_size, "--no-progress",
        )  # fmt: skip

    # The reference -------------------------------------------------------------------------

    def reference(self) -> None:
        """Train the uninterrupted run, timing its start-up (until config.yaml appears) and the
        whole; the chains' kill moments are shares of these."""
        started = time.perf_counter()
        with open(self.work / "reference.log", "w") as out:
            process = subprocess.Popen(self.train_command(self.ref_dir), stdout=out, stderr=subprocess.STDOUT)
            while process.poll() is None and not (self.ref_dir / CONFIG_FILE).exists():
                time.sleep(0.005)
            self.start_up_s = time.perf_counter() - started
            process.wait()
        self.train_s = time.perf_counter() - started
        if process.returncode != 0:
            raise RuntimeError(f"the reference run failed:\n{(self.work / 'reference.log').read_text()}")
        self.ref_weights = (self.ref_dir / WEIGHTS).read_bytes()
        self.ref_state = load_checkpoint(self.ref_dir / LAST_CHECKPOINT)
        self.ref_metrics, problems = metrics_lines(self.ref_dir)
        self.failures += [f"reference: {p}" for p in problems]
        self.ref_samples = {p.name: p.read_bytes() for p in (self.ref_dir / SAMPLES_DIR).glob("step-*.png")}
        self.log(
            f"reference: {self.steps} steps in {self.train_s:.1f} s, {self.start_up_s:.1f} s of it start-up "
            f"({sys.executable} -m productgan)"
        )

    # Running and killing one command ---------------------------------------------------------

    def execute(self, command: list[str], run_dir: Path, plan: Plan | None, from_step: int, log_path: Path):
        """Run ``command``; kill it as ``plan`` says. Returns (seconds, returncode, pid, output,
        whether it outran ten times its expected time and was ended)."""
        if "export" in command:
            expected = 1.1 * self.start_up_s
        else:
            training = max(self.train_s - self.start_up_s, 0.1)
            expected = self.start_up_s + training * (self.steps - from_step) / self.steps
        timeout = max(120.0, 10 * expected)
        timed_out = False
        with open(log_path, "w") as out:
            started, started_wall = time.perf_counter(), time.time()
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
            try:
                if plan is not None:
                    self.kill_when(process, run_dir, plan, from_step, started_wall, started + timeout)
                process.wait(timeout=max(1.0, started + timeout - time.perf_counter()))
            except subprocess.TimeoutExpired:
                timed_out = True
                process.kill()
                process.wait()
            seconds = time.perf_counter() - started
        timed_out = timed_out or seconds > timeout
        return seconds, process.returncode, process.pid, log_path.read_text(), timed_out

    def kill_when(
        self, process: subprocess.Popen, run_dir: Path, plan: Plan, from_step: int, started_wall: float, deadline: float
    ) -> None:
        if plan.trigger == "early":
            try:
                process.wait(timeout=plan.at * self.start_up_s)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
            return
        # Watched loosely until the process has done its share of steps (seconds of imports
        # first), then closely: a write lasts milliseconds.
        target = from_step + int(plan.at * (self.steps - from_step))
        reached = False
        while process.poll() is None and time.perf_counter() < deadline:
            if not reached:
                if target == from_step:
                    reached = holds_lock(run_dir, process.pid)
                else:
                    reached = (logged_step(run_dir, since=started_wall) or 0) >= target
                if reached and plan.trigger == "delay":
                    time.sleep(plan.extra_s)
                    break
            elif any(
                write_kind(TEMPORARY.match(p.name)["name"]) == plan.trigger for p in writes_of(run_dir, process.pid)
            ):
                time.sleep(plan.extra_s)
                break
            time.sleep(POLL_S if reached else SLOW_POLL_S)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)

    # What a kill left ------------------------------------------------------------------------

    def landing(self, run_dir: Path, pid: int, before: dict, after: dict) -> str:
        """Where the kill landed, from the killed process's temporaries and what changed."""
        open_writes = writes_of(run_dir, pid)
        kinds = sorted({write_kind(TEMPORARY.match(p.name)["name"]) for p in open_writes})
        if "export" in kinds:
            staging = next(p for p in open_writes if write_kind(TEMPORARY.match(p.name)["name"]) == "export")
            if TEMPORARY.match(staging.name)["kind"] == "old":
                return "export: swapping the folders"
            if before.get(GENERATOR_DIR) != after.get(GENERATOR_DIR):
                return "export: clearing the replaced folder"
            inside = {p.name for p in staging.iterdir()} if staging.is_dir() else set()
            if {"model.safetensors", "config.json"} <= inside:
                return "export: staged, before the swap"
            return "export: writing the staged folder"
        if kinds:
            return " + ".join(LANDINGS.get(k, k) for k in kinds)
        changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
        if not changed:
            return "start-up (nothing written)"
        if any(p == GENERATOR_DIR or p.startswith(GENERATOR_DIR + os.sep) for p in changed):
            return "after the export"
        if changed <= {CONFIG_FILE, METRICS_FILE}:
            return "opening the run folder"
        return "training, between writes"

    def check_after_kill(self, run_dir: Path, before_step: int | None, had_generator: bool) -> list[str]:
        problems = []
        step = None
        try:
            step = checkpoint_step(run_dir)
        except ProductganError as error:
            problems.append(f"{LAST_CHECKPOINT} does not load: {error}")
        if before_step is not None and (step is None or step < before_step):
            problems.append(f"{LAST_CHECKPOINT} went from step {before_step} to {step}")
        records, bad = metrics_lines(run_dir)
        problems += bad
        logged = max((r["step"] for r in records), default=0)
        if logged - (step or 0) > CHECKPOINT_EVERY:
            problems.append(
                f"steps up to {logged} were logged but {LAST_CHECKPOINT} is at {step}: more than one interval lost"
            )
        generator = run_dir / GENERATOR_DIR
        if generator.exists():
            try:
                load_generator(generator)
                if (run_dir / WEIGHTS).read_bytes() != self.ref_weights:
                    problems.append(f"{WEIGHTS} differs from the reference's")
            except (ProductganError, OSError) as error:
                problems.append(f"{GENERATOR_DIR}/ is not whole: {error}")
        elif had_generator:
            problems.append(f"{GENERATOR_DIR}/ was there before the command and is gone")
        if (run_dir / CONFIG_FILE).exists():
            try:
                load_run_config(run_dir)
            except ProductganError as error:
                problems.append(str(error))
        for png in run_dir.rglob("*.png"):
            if TEMPORARY.match(png.name) or any(TEMPORARY.match(part) for part in png.relative_to(run_dir).parts):
                continue
            try:
                with Image.open(png) as image:
                    image.load()
            except OSError as error:
                problems.append(f"{png.relative_to(run_dir)} does not decode: {error}")
        return problems

    def check_no_temporaries(self, run_dir: Path) -> list[str]:
        left = temporaries(run_dir)
        return [f"temporaries left: {', '.join(str(p.relative_to(run_dir)) for p in left)}"] if left else []

    def check_final(self, run_dir: Path) -> tuple[list[str], list[str]]:
        """The failures and the notes of a finished chain, against the reference."""
        problems, notes = [], []
        weights = run_dir / WEIGHTS
        if not weights.is_file() or weights.read_bytes() != self.ref_weights:
            problems.append(f"{WEIGHTS} is not byte-identical to the reference's")
        else:
            try:
                load_generator(run_dir / GENERATOR_DIR)
            except ProductganError as error:
                problems.append(f"{GENERATOR_DIR}/ does not load: {error}")
        try:
            differences = state_differences(load_checkpoint(run_dir / LAST_CHECKPOINT), self.ref_state)
            if differences:
                problems.append(f"{LAST_CHECKPOINT} differs from the reference's at {', '.join(differences[:5])}")
        except ProductganError as error:
            problems.append(str(error))
        records, bad = metrics_lines(run_dir)
        problems += bad
        steps = [r["step"] for r in records]
        if steps != [r["step"] for r in self.ref_metrics]:
            problems.append(f"{METRICS_FILE} steps are {steps[:8]}..., not each of 1..{self.steps} once in order")
        else:

            def values(r):
                return {k: v for k, v in r.items() if k not in TIMING_KEYS}

            differing = [a["step"] for a, b in zip(records, self.ref_metrics) if values(a) != values(b)]
            if differing:
                problems.append(f"{METRICS_FILE} values differ from the reference's at steps {differing[:8]}")
        for name, data in self.ref_samples.items():
            path = run_dir / SAMPLES_DIR / name
            if not path.exists():
                notes.append(f"{SAMPLES_DIR}/{name} is missing (the run was killed while writing it, or after)")
            elif path.read_bytes() != data:
                problems.append(f"{SAMPLES_DIR}/{name} differs from the reference's")
        problems += self.check_no_temporaries(run_dir)
        return problems, notes

    # A chain ---------------------------------------------------------------------------------

    def chain(self, index: int, spec: ChainSpec) -> ChainResult:
        run_dir = self.work / f"chain-{index:02d}"
        logs = self.work / "logs" / run_dir.name
        logs.mkdir(parents=True, exist_ok=True)
        result = ChainResult(index, str(run_dir))
        train_plans, export_plans = list(spec.train), list(spec.export)

        def step_of() -> int:
            try:
                return checkpoint_step(run_dir) or 0
            except ProductganError:
                return 0

        def run(kind: str, plan: Plan | None) -> tuple[Command, str, int]:
            command = {
                "train": self.train_command(run_dir),
                "resume": productgan("train", "--resume", run_dir, "--no-progress"),
                "export": productgan("export", run_dir),
            }[kind]
            before = snapshot(run_dir)
            before_step = step_of()
            had_generator = (run_dir / GENERATOR_DIR).is_dir()
            log_path = logs / f"{len(result.commands):02d}-{kind}.log"
            seconds, code, pid, output, timed_out = self.execute(command, run_dir, plan, before_step, log_path)
            if timed_out:
                result.failures.append(f"command {len(result.commands)} ({kind}) ran {seconds:.0f} s and was ended")
            killed = code == -signal.SIGKILL and not timed_out
            record = Command(kind, plan.describe() if plan else None, round(seconds, 3), code, killed)
            if killed:
                record.landed = self.landing(run_dir, pid, before, snapshot(run_dir))
            problems = self.check_after_kill(run_dir, before_step or None, had_generator)
            if code == 0:  # a command that ends by itself leaves no temporaries, its own or a killed one's
                problems += self.check_no_temporaries(run_dir)
            how = "killed" if killed else f"exit {code}"
            result.failures += [f"after command {len(result.commands)} ({kind}, {how}): {p}" for p in problems]
            records, _ = metrics_lines(run_dir)
            record.step_logged = max((r["step"] for r in records), default=None)
            try:
                record.checkpoint_step = checkpoint_step(run_dir)
            except ProductganError:
                record.checkpoint_step = None
            result.commands.append(record)
            how = f"killed ({record.landed})" if killed else f"exit {code}"
            self.log(
                f"  chain {index:2d} #{len(result.commands) - 1:<2d} {kind:6s} from step {before_step:<4d} "
                f"{record.plan or 'no kill':38s} {seconds:5.1f} s  {how}; last.pt at {record.checkpoint_step}"
            )
            return record, output, code

        kind = "train"
        while True:
            record, output, code = run(kind, train_plans.pop(0) if train_plans else None)
            if record.killed:
                if (run_dir / LAST_CHECKPOINT).exists():
                    kind = "resume"
                elif (run_dir / CONFIG_FILE).exists():
                    # Stopped before its first checkpoint: the product refuses to start over in the
                    # folder and says to delete it, which is what a user would do next.
                    refused, output, code = run("train", None)
                    if code == 0 or "before its first checkpoint" not in output:
                        result.failures.append(f"train into a run with no checkpoint did not refuse: {output[-300:]}")
                        return self.finish(result)
                    refused.note = "refused: no checkpoint yet; folder deleted, run started again"
                    shutil.rmtree(run_dir)
                    kind = "train"
                else:
                    kind = "train"
                continue
            if code == 0:
                break
            if kind == "resume" and "past the budget given" in output:
                # Killed once the export was written: the run is done, and the refusal says to export again.
                record.note = "refused: the run was finished; exporting again"
                if not export_plans:
                    export_plans = [None]
                break
            result.failures.append(f"{kind} exited {code}: {output.strip().splitlines()[-1:]}")
            return self.finish(result)

        while export_plans:
            plan = export_plans.pop(0)
            record, output, code = run("export", plan)
            if record.killed:
                export_plans = export_plans or [None]
            elif code != 0:
                result.failures.append(f"export exited {code}: {output.strip().splitlines()[-1:]}")
                return self.finish(result)
        return self.finish(result)

    def finish(self, result: ChainResult) -> ChainResult:
        problems, notes = self.check_final(Path(result.run_dir))
        result.failures += [f"at the end: {p}" for p in problems]
        result.notes += notes
        return result
