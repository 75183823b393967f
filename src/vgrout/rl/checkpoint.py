"""Checkpoints of a run: the adapter (safetensors) and the optimizer and router state, saved
every `checkpoint_every` updates and loaded to resume or evaluate; resuming also cuts the run
folder's logs back to the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vgrout.rl.run import Run


def save_checkpoint(run: Run, step: int, rollouts: list[dict]) -> None:
    """`step` = updates done. Adapter (safetensors) + optimizer/scheduler/router state."""

    def write(tmp: Path) -> None:
        run.policy.adapter.save(tmp / "adapter.safetensors", {"step": step, "arm": run.cfg.arm})
        torch.save(
            {"step": step, "opt": run.opt.state_dict(), "router": run.router.state_dict()},
            tmp / "trainer.pt",
        )

    run.folder.write_rollouts(rollouts)
    run.folder.save_checkpoint(step, write)


def load_checkpoint(run: Run, path: Path) -> int:
    run.policy.adapter.load_state(
        path / "adapter.safetensors"
    )  # in place: the optimizer keeps its params
    state = torch.load(path / "trainer.pt", weights_only=False)
    run.opt.load_state_dict(state["opt"])
    run.router.load_state_dict(state["router"])
    return int(state["step"])


def restore_latest(run: Run) -> tuple[int, list[dict]]:
    """Resume: load the last checkpoint (if any) and cut the logs back to it. Returns (updates
    done, the rollout records before them)."""
    folder = run.folder
    start = 0
    latest = folder.latest_checkpoint()
    if latest is not None:
        start = load_checkpoint(run, latest[1])
    folder.truncate_jsonl(folder.metrics, lambda r: r["step"] < start)
    folder.truncate_jsonl(folder.evals, lambda r: r["kind"] == "periodic" and r["step"] <= start)
    rollouts = [r for r in folder.read_rollouts() if r["step"] < start]
    folder.summary.unlink(missing_ok=True)
    return start, rollouts
