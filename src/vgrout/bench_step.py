"""`vgrout bench step`: seconds per training step of the toy preset for none, absorb and routeV.

Builds each arm's run in a temp folder, runs one warm-up step, then times `steps` training steps
(no evaluation, no checkpoint) and prints the median seconds per step; the last line is the ratio
routeV / none (target <= 1.6). Arms are timed interleaved step by step, so machine noise hits them
alike. Run it on an idle machine.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from vgrout.config import load_preset

ARMS = ("none", "absorb", "routeV")


def bench_step(steps: int = 4, preset: str = "toy") -> list[str]:
    from vgrout.env.sandbox import SandboxPool
    from vgrout.train import build_run, training_step

    lines = []
    with tempfile.TemporaryDirectory() as tmp, SandboxPool() as pool:
        runs = {}
        for arm in ARMS:
            cfg = load_preset(preset).override([f"arm={arm}", "teacher_off_step=1000"]).validate()
            runs[arm] = build_run(cfg, Path(tmp) / arm)
            training_step(runs[arm], 0, pool)  # warm-up
        times = {arm: [] for arm in ARMS}
        for k in range(1, steps + 1):
            for arm in ARMS:
                t0 = time.perf_counter()
                training_step(runs[arm], k, pool)
                times[arm].append(time.perf_counter() - t0)
        med = {arm: statistics.median(t) for arm, t in times.items()}
        for arm in ARMS:
            lines.append(
                f"{arm:8s} {med[arm]:.3f} s/step (median of {steps}; min {min(times[arm]):.3f})"
            )
        lines.append(f"routeV/none = {med['routeV'] / med['none']:.2f}x (target <= 1.6)")
    for line in lines:
        print(line)
    return lines
