"""kill -9 of real training and export processes, resumed: a short version of
benchmarks/kill_campaign.py (which repeats it at random moments, many times); the machinery of
both is tests/kill.py."""

from __future__ import annotations

import random
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kill import Campaign, ChainSpec, Plan, state_differences, temporaries

from productgan.checkpoint import load_checkpoint

# Each landing that a temporary of the killed process proves was inside a write.
INSIDE_A_WRITE = ("checkpoint write", "sample grid write", "export: ")


def test_sigkill_anywhere_resumes_to_the_same_bytes(tmp_path):
    campaign = Campaign(tmp_path, steps=10, grid_size=4, log=None)
    campaign.reference()
    assert campaign.failures == []
    rng = random.Random(0)
    specs = [
        # Killed in start-up, in a sample grid write, in a checkpoint write; resumed each time.
        ChainSpec(
            [
                Plan("early", rng.uniform(0.02, 0.1)),
                Plan("samples", 0.0, rng.uniform(0.0, 0.0005)),
                Plan("checkpoint", 0.0, rng.uniform(0.0, 0.0005)),
            ]
        ),
        # Killed in the final export of training (a resume writes it), then in an export of its own.
        ChainSpec([Plan("export", 0.0, rng.uniform(0.0, 0.002))], [Plan("export", 0.0, rng.uniform(0.0, 0.002))]),
    ]
    # Both chains run at once; each one's watcher must see a write within its few milliseconds,
    # so neither may hold the interpreter for the default 5 ms while the other checks its run.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        with ThreadPoolExecutor(len(specs)) as pool:
            results = list(pool.map(campaign.chain, range(len(specs)), specs))
    finally:
        sys.setswitchinterval(previous)

    for result in results:
        assert result.failures == [], result.failures
        assert result.kills >= 2, result.commands
        run_dir = Path(result.run_dir)
        assert (run_dir / "generator" / "model.safetensors").read_bytes() == campaign.ref_weights
        last_pt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
        assert state_differences(last_pt, campaign.ref_state) == []
        assert temporaries(run_dir) == []
        last = result.commands[-1]
        assert not last.killed and last.returncode == 0
    landings = [c.landed for r in results for c in r.commands if c.killed]
    assert any(landing.startswith(INSIDE_A_WRITE) for landing in landings), landings
    assert results[1].count("export", killed=True) == 1
