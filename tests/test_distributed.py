"""torchrun / DistributedDataParallel on the CPU: 2 processes over gloo, each test with a timeout
so that a hang fails fast instead of stalling the suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import TINY_FLAGS

from productgan.checkpoint import load_checkpoint
from productgan.cli import main

TIMEOUT_S = 180
TINY = [*TINY_FLAGS, "--train.threads", "1"]

WORKER = textwrap.dedent("""
    import os, signal, sys, torch
    from pathlib import Path
    from productgan.config import ModelConfig, RunConfig, TrainConfig, resolve
    from productgan.data import open_dataset
    from productgan.train import Trainer, distributed

    data, out, steps, poison_rank = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    how = sys.argv[5] if len(sys.argv) > 5 else "nan"  # what happens to poison_rank at step 3
    context = distributed.from_environment()
    config = RunConfig(data=data, out=str(out / "run"), batch_size=16, steps=steps,
                       model=ModelConfig(nz=8, ngf=4, ndf=4),
                       train=TrainConfig(precision="fp32", log_every=2, sample_every=2, checkpoint_every=2,
                                         grid_size=4, threads=1))
    dataset = open_dataset(data)
    resolve(config, dataset, context.world_size)
    # Rank 1 is handed a folder of its own: if it wrote anything, the folder would appear.
    run_dir = out / "run" if context.rank == 0 else out / f"rank{context.rank}-must-stay-empty"
    trainer = Trainer(config, run_dir, dataset, context=context)
    if context.rank == poison_rank:
        original = trainer.train_step
        def poisoned(stats):
            original(stats)
            if trainer.step == 3 and how == "signal":
                os.kill(os.getpid(), signal.SIGTERM)
            elif trainer.step == 3:
                with torch.no_grad():
                    for p in trainer.D.parameters():
                        p.fill_(float("nan"))
        trainer.train_step = poisoned
    summary = {}
    try:
        summary = trainer.fit(progress=False)
    finally:
        torch.save({"G": trainer.G.state_dict(), "D": trainer.D.state_dict(),
                    "G_ema": trainer.ema.model.state_dict(), "step": trainer.step,
                    "stopped_by": summary.get("stopped_by"), "signal": summary.get("signal")},
                   out / f"state-rank{context.rank}.pt")
        distributed.shutdown()
""")


def torchrun(*args, nproc: int = 2, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


@pytest.fixture
def worker(tmp_path):
    path = tmp_path / "worker.py"
    path.write_text(WORKER)
    return path


def test_two_ranks_keep_identical_weights_and_only_rank0_writes(worker, fake_packed, tmp_path):
    result = torchrun(str(worker), str(fake_packed), str(tmp_path), "6", "-1")
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"state-rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0["step"] == rank1["step"] == 6
    for net in ("G", "D", "G_ema"):
        for key, value in rank0[net].items():
            if "running" in key or "num_batches" in key:
                continue  # BatchNorm statistics are per rank (broadcast_buffers=False)
            assert torch.equal(value, rank1[net][key]), f"{net}.{key}"
    assert not (tmp_path / "rank1-must-stay-empty").exists()
    run = tmp_path / "run"
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "generator" / "model.safetensors").is_file()
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]  # one writer: no line twice


def test_non_finite_loss_on_one_rank_stops_both(worker, fake_packed, tmp_path):
    result = torchrun(str(worker), str(fake_packed), str(tmp_path), "10", "1")
    assert result.returncode != 0
    assert "non-finite" in result.stderr
    for rank in (0, 1):
        assert torch.load(tmp_path / f"state-rank{rank}.pt", weights_only=True)["step"] == 4
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2


def test_a_signal_to_one_rank_stops_both_with_its_number(worker, fake_packed, tmp_path):
    result = torchrun(str(worker), str(fake_packed), str(tmp_path), "10", "1", "signal")
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):  # the ranks agree at the next log interval (every 2 steps)
        state = torch.load(tmp_path / f"state-rank{rank}.pt", weights_only=True)
        assert (state["step"], state["stopped_by"], state["signal"]) == (4, "signal", 15)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 4


def test_cli_under_torchrun_then_resume_with_one_process(fake_packed, tmp_path):
    run = tmp_path / "run"
    result = torchrun(
        "-m",
        "productgan",
        "train",
        "--data",
        str(fake_packed),
        "--out",
        str(run),
        "--batch-size",
        "16",
        "--steps",
        "4",
        *TINY,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Training finished") == 1  # rank 0 alone reports
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4

    assert main(["train", "--resume", str(run), "--steps", "6", "--no-progress"]) == 0
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 6 and state["images_seen"] == 6 * 16


def test_two_processes_train_like_one(fake_packed, tmp_path):
    """Same global batch, same data order, same initial weights; only the noise draws and the
    per-rank BatchNorm batches differ, so the losses agree closely but not exactly."""
    common = ["--data", str(fake_packed), "--batch-size", "32", "--steps", "10", *TINY]
    result = torchrun("-m", "productgan", "train", "--out", str(tmp_path / "two"), *common)
    assert result.returncode == 0, result.stderr[-3000:]
    assert main(["train", "--out", str(tmp_path / "one"), *common]) == 0

    def losses(run):
        return [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    one, two = losses("one"), losses("two")
    assert [r["images_seen"] for r in one] == [r["images_seen"] for r in two]
    for a, b in zip(one, two):
        assert a["loss_d"] == pytest.approx(b["loss_d"], abs=0.25)
        assert a["loss_g"] == pytest.approx(b["loss_g"], abs=0.5)
        assert a["loss_d"] != b["loss_d"]  # different noise: were these equal, ranks would not be sharded


def test_global_batch_must_divide(fake_packed, tmp_path):
    result = torchrun(
        "-m",
        "productgan",
        "train",
        "--data",
        str(fake_packed),
        "--out",
        str(tmp_path / "run"),
        "--batch-size",
        "15",
        "--steps",
        "2",
        *TINY,
    )
    assert result.returncode != 0
    assert "must divide evenly among 2 processes" in result.stderr


def test_sync_batchnorm_on_cpu_processes_is_one_sentence(fake_packed, tmp_path, monkeypatch):
    from helpers import tiny_config

    from productgan.config import resolve
    from productgan.data import open_dataset
    from productgan.errors import UsageError
    from productgan.train import Trainer, distributed

    monkeypatch.setattr(distributed, "init", lambda context, device: torch.device("cpu"))  # no process group needed
    config = tiny_config(fake_packed, tmp_path / "run")
    config.train.sync_batchnorm = True
    with pytest.raises(UsageError, match="SyncBatchNorm runs on CUDA only"):
        dataset = open_dataset(str(fake_packed))
        Trainer(resolve(config, dataset, 2), tmp_path / "run", dataset, context=distributed.Context(0, 2, 0))


def test_validation_is_sharded_and_gathered(fake_packed, tmp_path):
    run = tmp_path / "run"
    result = torchrun(
        "-m",
        "productgan",
        "train",
        "--data",
        str(fake_packed),
        "--out",
        str(run),
        "--batch-size",
        "16",
        "--steps",
        "4",
        "--train.eval-every",
        "2",
        "--train.eval-n",
        "21",
        *TINY,
        env={"PRODUCTGAN_CACHE": str(tmp_path / "cache")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    val = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "val_n" in line]
    assert [(v["step"], v["val_n"]) for v in val] == [(2, 21), (4, 21)]  # 11 + 10 images, all gathered
    assert (run / "checkpoints" / "best.pt").is_file()


RESTARTING_WORKER = textwrap.dedent("""
    import os, sys
    from productgan.config import ModelConfig, RunConfig, TrainConfig
    from productgan.train import Trainer, train

    if os.environ["RANK"] == "1" and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0":
        original = Trainer.train_step
        def crash_once(self, stats):
            original(self, stats)
            if self.step == 5:
                raise RuntimeError("simulated crash of rank 1")
        Trainer.train_step = crash_once
    config = RunConfig(data=sys.argv[1], out=sys.argv[2], batch_size=16, steps=8,
                       model=ModelConfig(nz=8, ngf=4, ndf=4),
                       train=TrainConfig(precision="fp32", log_every=1, checkpoint_every=2, grid_size=4, threads=1))
    train(config, progress=False)
""")


def test_torchrun_restart_resumes_from_the_last_checkpoint(fake_packed, tmp_path):
    script = tmp_path / "restarting.py"
    script.write_text(RESTARTING_WORKER)
    run = tmp_path / "run"
    result = torchrun("--max-restarts", "1", str(script), str(fake_packed), str(run))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "simulated crash of rank 1" in result.stderr
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 8
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))  # lines after the step-4 checkpoint were trimmed and rewritten


LR_WORKER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from productgan.config import ModelConfig, OptimConfig, RunConfig, TrainConfig, resolve
    from productgan.data import open_dataset
    from productgan.train import Trainer, distributed

    data, out = sys.argv[1], Path(sys.argv[2])
    context = distributed.from_environment()
    config = RunConfig(data=data, out=str(out / "run"), batch_size=16, steps=5, minutes=10.0,
                       model=ModelConfig(nz=8, ngf=4, ndf=4), optim=OptimConfig(lr_decay="linear"),
                       train=TrainConfig(precision="fp32", log_every=4, sample_every=100, checkpoint_every=100,
                                         grid_size=4, threads=1))
    dataset = open_dataset(data)
    trainer = Trainer(resolve(config, dataset, context.world_size), out / "run", dataset, context=context)
    # As a resume restores them: step 3 (between two log intervals), 7.5 of the 10 minutes spent.
    trainer.step, trainer.elapsed_s = 3, 450.0
    used = []
    original = trainer.train_step
    def recording(stats):
        used.append(trainer.opt_g.param_groups[0]["lr"])
        original(stats)
    trainer.train_step = recording
    trainer.fit(progress=False)
    (out / f"lr-rank{context.rank}.json").write_text(json.dumps(used))
    distributed.shutdown()
""")


def test_lr_decay_after_a_resume_follows_the_saved_clock_on_every_rank(fake_packed, tmp_path):
    script = tmp_path / "lr_worker.py"
    script.write_text(LR_WORKER)
    result = torchrun(str(script), str(fake_packed), str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"lr-rank{r}.json").read_text()) for r in (0, 1))
    assert len(rank0) == 2 and rank0 == rank1
    # Step 3 of 5: the saved clock's 75% outweighs the steps' 60%; step 4: the steps' 80% lead.
    assert rank0[0] == pytest.approx(0.25 * 2e-4, rel=1e-3)
    assert rank0[1] == pytest.approx(0.2 * 2e-4, rel=1e-3)
