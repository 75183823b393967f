"""`vgrout bench step`: seconds per training step, with the phase breakdown, per arm.

Builds each arm's run in a temp folder, runs `warmup` untimed steps, then times `steps` training
steps (no evaluation, no checkpoint). Arms are timed interleaved step by step, so machine noise hits
them alike. Per arm it prints the median seconds per step and the mean seconds of each phase
(generate, grade, gate, update, refresh; as logged in metrics.jsonl), generated tokens/s and, on
CUDA, the peak memory of its steps; the last line is the ratio routeV / none.

- `--preset toy` (default): the toy on CPU, arms none (structure-matched control), plain
  (unmasked rank-2r control), absorb and routeV. Run it on an idle machine.
- `--preset leetcode-qwen3-4b --random-weights`: the real scale without a hub: random weights of
  Qwen3-4B's published shape built on the device, a locally trained byte-level tokenizer (speed
  figures only), the preset's batch and lengths, arms none and routeV. Needs the preset's problem
  files (or `--set problems=... eval_problems=...`).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from vgrout.presets import load_preset

TARGET = 1.3
TOY_ARMS = ("none", "plain", "absorb", "routeV")
SCALE_ARMS = ("none", "routeV")
RANDOM_SHAPES = {"leetcode-qwen3-4b": "qwen3-4b"}
PHASES = ("generate", "grade", "gate", "update", "refresh")


def bench_configs(
    preset: str, random_weights: bool, shape: str | None, overrides, arms
) -> dict[str, object]:
    """{arm: validated config} for the benchmark (teachers stay on, so groups always train)."""
    base = load_preset(preset)
    sets = ["teacher_off_step=1000", *overrides]
    if random_weights:
        if base.model == "toy":
            raise ValueError("--random-weights is for hub models; the toy base is built locally")
        sets.append(f"model=random:{shape or RANDOM_SHAPES.get(preset, 'qwen3-4b')}")
        # a random model earns no reward, so every group would be flat and skipped: no gate, no
        # update. Train every row instead (zero advantages still cost the full forward/backward).
        sets.append("skip_flat_groups=false")
    elif shape:
        raise ValueError("--shape needs --random-weights")
    arms = arms or (TOY_ARMS if base.model == "toy" else SCALE_ARMS)
    if "none" not in arms or "routeV" not in arms:
        raise ValueError("bench step reports routeV/none: its arms must include none and routeV")
    return {arm: base.override([*sets, f"arm={arm}"]).validate() for arm in arms}


def bench_step(
    steps: int = 4,
    preset: str = "toy",
    *,
    random_weights: bool = False,
    shape: str | None = None,
    overrides: tuple[str, ...] = (),
    arms: tuple[str, ...] | None = None,
    warmup: int = 1,
) -> list[str]:
    import torch

    from vgrout.env.sandbox import SandboxPool
    from vgrout.rl.run import build_run
    from vgrout.rl.train import training_step

    configs = bench_configs(preset, random_weights, shape, overrides, arms)
    lines = []
    with tempfile.TemporaryDirectory() as tmp, SandboxPool() as pool:
        runs = {arm: build_run(cfg, Path(tmp) / arm) for arm, cfg in configs.items()}
        cuda = any(str(r.policy.device).startswith("cuda") for r in runs.values())
        for arm in runs:
            for k in range(warmup):
                t0 = time.perf_counter()
                training_step(runs[arm], k, pool)
                _progress(f"{arm} warm-up step {k}: {time.perf_counter() - t0:.1f} s")
        seconds = {arm: [] for arm in runs}
        phases = {arm: [] for arm in runs}
        peak = dict.fromkeys(runs, 0)
        for k in range(warmup, warmup + steps):
            for arm, run in runs.items():
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                rows, *_, upd = training_step(run, k, pool)  # its phase clock syncs CUDA last
                seconds[arm].append(time.perf_counter() - t0)
                tokens = sum(len(r.completion_ids) for r in rows if r.source == "student")
                phases[arm].append({**upd, "gen_tokens": tokens})
                _progress(f"{arm} step {k}: {seconds[arm][-1]:.1f} s")
                if cuda:
                    peak[arm] = max(peak[arm], torch.cuda.max_memory_allocated())
        cfg = next(iter(configs.values()))
        lines.append(
            f"preset {preset} ({cfg.model}): {cfg.prompts_per_step} prompts x {cfg.group_size} "
            f"rollouts, <= {cfg.max_new_tokens} new tokens; {steps} timed steps per arm, "
            f"interleaved, after {warmup} warm-up"
        )
        for arm in runs:
            lines.append(arm_line(arm, seconds[arm], phases[arm], peak[arm]))
        ratio = statistics.median(seconds["routeV"]) / statistics.median(seconds["none"])
        lines.append(f"routeV/none = {ratio:.2f}x (target <= {TARGET})")
    for line in lines:
        print(line)
    return lines


def _progress(text: str) -> None:
    """Each step as it ends, on stderr: a run cut short (a device's time limit) still says how far
    it got; stdout keeps only the result lines."""
    print(f"  bench step: {text}", file=sys.stderr, flush=True)


def arm_line(arm: str, seconds: list[float], phases: list[dict], peak_bytes: int) -> str:
    """`none  1.234 s/step (median of 4; min 1.100) | generate 0.50 ... | 900 gen tok/s`."""
    med = statistics.median(seconds)
    parts = []
    for p in PHASES:
        mean = statistics.fmean(u[f"time_{p}"] for u in phases)
        parts.append(f"{p} {mean:.2f} ({mean / med:.0%})" if med > 0 else f"{p} {mean:.2f}")
    tokens = statistics.fmean(u["gen_tokens"] / max(u["time_generate"], 1e-9) for u in phases)
    text = (
        f"{arm:8s} {med:.3f} s/step (median of {len(seconds)}; min {min(seconds):.3f}) | "
        + ", ".join(parts)
        + f" | {tokens:.0f} gen tok/s"
    )
    if peak_bytes:
        text += f" | peak {peak_bytes / 2**30:.1f} GiB"
    return text
