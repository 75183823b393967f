"""What a step logs: the phase timings, the metrics row, one parquet row per rollout, and the
progress bar.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch

from vgrout.config import TrainConfig
from vgrout.rl.rollouts import Rollout
from vgrout.routing.gates import ZONE_NAMES, GateOutput, gate_metrics

PHASES = ("generate", "grade", "gate", "update", "refresh")
"""Phases of a step timed into every metrics row as `time_<phase>` seconds."""


class PhaseClock:
    """`with clock("grade"): ...` adds the block's wall seconds to phase `grade`. On CUDA the device
    is synchronised before each reading: kernels run asynchronously and would be billed to
    whichever phase next waits for them."""

    def __init__(self, device: str):
        self.cuda = str(device).startswith("cuda")
        self.seconds = dict.fromkeys(PHASES, 0.0)

    @contextlib.contextmanager
    def __call__(self, phase: str):
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[phase] += time.perf_counter() - t0

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def metrics(self) -> dict:
        return {f"time_{k}": v for k, v in self.seconds.items()}


def rollout_records(
    step: int, rows: list[Rollout], kept_ids: set[int], gate: GateOutput | None, scores
) -> list[dict]:
    """One parquet row per rollout (labels are recorded for audit; they never routed)."""
    zone_of, score_of, norm_of = {}, {}, {}
    if gate is not None:
        kept_rows = [r for r in rows if id(r) in kept_ids]
        norms = gate.info.get("feature_norm")  # scoring arms: the raw feature's norm
        for i, r in enumerate(kept_rows):
            zone_of[id(r)] = ZONE_NAMES[int(gate.zones[i])]
            if scores is not None:
                score_of[id(r)] = float(scores[i])
            if norms is not None:
                norm_of[id(r)] = float(norms[i])
    out = []
    for r in rows:
        g = r.grade
        out.append({
            "step": step, "group": r.group, "problem_id": r.item.id, "mode": r.item.mode,
            "source": r.source, "sampled": r.sampled, "reward": g.reward, "train_reward": r.reward,
            "advantage": r.advantage, "flagged": r.flagged,
            "compiled": g.compiled, "gt_correct": g.gt_correct, "channel_fired": g.channel_fired,
            "exploited": g.exploited, "label": g.label, "kept": id(r) in kept_ids,
            "zone": zone_of.get(id(r), "skipped"), "score": score_of.get(id(r), float("nan")),
            "feature_norm": norm_of.get(id(r), float("nan")),
            "n_tokens": len(r.completion_ids), "completion": r.text,
        })  # fmt: skip
    return out


def step_metrics(
    step: int, rows: list[Rollout], kept: list[Rollout], gate, scores, upd: dict, seconds: float
) -> dict:
    students = [r for r in rows if r.source == "student"]
    gen_tokens = sum(len(r.completion_ids) for r in students)
    m = {
        "step": step,
        "seconds": seconds,
        "gen_tokens": gen_tokens,
        "gen_tokens_per_s": gen_tokens / upd["time_generate"] if upd.get("time_generate") else 0.0,
        "reward": float(np.mean([r.grade.reward for r in students])) if students else float("nan"),
        "hack": float(np.mean([r.grade.exploited for r in students])) if students else float("nan"),
        "solve": float(np.mean([r.grade.gt_correct for r in students]))
        if students
        else float("nan"),
        "teacher_rows": sum(r.source == "teacher" for r in rows),
        "kept_rows": len(kept),
        "rows": len(rows),
        **upd,
    }
    if gate is not None and kept:
        zones = gate.zones
        for code, name in enumerate(ZONE_NAMES):
            m[f"share_{name}"] = float((zones == code).float().mean())
        if scores is not None:
            gm = gate_metrics(
                scores, zones, [r.grade.exploited for r in kept], [r.advantage for r in kept]
            )
            m["auroc"] = gm.get("auroc", float("nan"))
            m["f05"] = gm.get("f05", float("nan"))
        for k in ("lo", "hi"):
            if k in gate.info:
                m[f"band_{k}"] = float(gate.info[k])
    return m


# --------------------------------------------------------------------------------- progress
class _Bar:
    def __init__(self, progress, task):
        self.progress, self.task = progress, task

    def update(self, m: dict) -> None:
        if self.progress is None:
            return
        desc = f"reward {m['reward']:.2f} hack {m['hack']:.2f} solve {m['solve']:.2f}"
        self.progress.update(self.task, advance=1, stats=desc)


@contextlib.contextmanager
def progress_bar(enabled: bool, cfg: TrainConfig, start: int):
    if not enabled:
        yield _Bar(None, None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(f"[bold]{cfg.arm}[/] seed {cfg.seed}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("{task.fields[stats]}"),
    ) as p:  # fmt: skip
        task = p.add_task("train", total=cfg.steps, completed=start, stats="")
        yield _Bar(p, task)
