"""`run_sweep`: every cell of a spec under SWEEP_DIR, in order, on a backend, then the summary."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from vgrout import kernels
from vgrout.experiments.sweep.backends import (
    Event,
    local_threads,
    prebuild_toy_bases,
    run_local,
    run_ray,
)
from vgrout.experiments.sweep.cells import ResumeFn, TrainFn, cell_state, record_failure
from vgrout.experiments.sweep.display import LiveStatus, print_final_status, status_counts
from vgrout.experiments.sweep.folder import (
    FAILED_FILE,
    RUNNING_FILE,
    RUNS,
    STATUS_FILE,
    write_or_check_sweep_file,
)
from vgrout.experiments.sweep.spec import Cell, SweepSpec, expand_by_grid
from vgrout.experiments.sweep.summary import finish
from vgrout.runfolder import RunFolder, atomic_write_text


def run_sweep(
    spec: SweepSpec,
    out: Path,
    *,
    backend: str = "ray",
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_task: float = 1,
    gpus_per_task: float | None = None,
    jobs: int = 1,
    retries: int = 1,
    force_grid: bool = False,
    progress: bool = True,
    n_resamples: int = 10_000,
    train_fn: TrainFn | None = None,
    resume_fn: ResumeFn | None = None,
) -> dict:
    """Run every cell of `spec` under OUT, then aggregate the finished ones.

    backend `ray`: one Ray task per cell (`address=None`: a local Ray with `num_cpus` CPUs, default
    all; `ray://host:port` or `auto`: a cluster), each reserving `cpus_per_task` CPUs (= its torch
    threads) and `gpus_per_task` GPUs (default: 1 if the cells ask for CUDA). backend `local`:
    `jobs` cells at a time in spawned processes (1 = in this process). `train_fn(cfg, out)` and
    `resume_fn(out)` replace the real trainer (tests).

    Returns {"cells": {name: status row}, "counts": {status: n}, "summary": the sweep summary,
    "dropped": names of cells that left the sweep (force_grid)}.
    """
    if backend not in ("ray", "local"):
        raise ValueError(f"backend={backend!r} is invalid: choose ray or local")
    if jobs < 1 or cpus_per_task <= 0:
        raise ValueError("jobs must be >= 1 and cpus_per_task > 0")
    out = Path(out).resolve()  # absolute: Ray workers do not share the driver's cwd
    by_grid = expand_by_grid(spec)
    cells = [c for _, c in by_grid]
    grid_of = {c.name: gi for gi, c in by_grid}
    dropped = write_or_check_sweep_file(out, spec, cells, force_grid)

    status = {
        c.name: {"status": "queued", "seconds": None, "error": None, "folder": c.folder}
        for c in cells
    }
    tasks = []
    for c in cells:
        run_dir = out / RUNS / c.folder
        (run_dir / RUNNING_FILE).unlink(missing_ok=True)  # stale marker of a killed invocation
        try:
            state = cell_state(run_dir, c.config.to_dict())
        except ValueError as e:
            status[c.name].update(status="failed", error=str(e))
            record_failure(run_dir, str(e))
            continue
        if state == "reuse":
            status[c.name].update(status="reused", seconds=_run_seconds(run_dir))
            (run_dir / FAILED_FILE).unlink(missing_ok=True)
            continue
        tasks.append(
            {
                "name": c.name,
                "dir": str(run_dir),
                "config": c.config.to_dict(),
                "kernels": kernels.requested(),
            }
        )

    # Grid by grid, and within a grid seed by seed (stable): a long sweep stopped early holds
    # whole seeds of its first grid (the main arms) rather than all seeds of a few cells, so
    # its main contrasts can already be paired; later grids (ablations) follow.
    tasks.sort(key=lambda t: (grid_of[t["name"]], t["config"]["seed"]))
    if tasks and train_fn is None and address is None:
        prebuild_toy_bases([c.config for c in cells])
    if backend == "local":
        threads = None if train_fn is not None else local_threads(jobs)
        events = run_local(tasks, jobs, threads, train_fn, resume_fn)
    else:
        events = run_ray(
            tasks, train_fn, resume_fn, address=address, num_cpus=num_cpus,
            cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task, retries=retries,
            configs=[c.config for c in cells],
        )  # fmt: skip
    if tasks:  # the backends are generators: nothing (not even Ray) starts without a task
        _consume(events, status, out, cells, progress)

    result = finish(out, n_resamples=n_resamples)
    atomic_write_text(out / STATUS_FILE, json.dumps(status, indent=2))  # grid order
    counts = status_counts(status)
    if progress:
        print_final_status(status, counts, result["sentences"])
    return {"cells": status, "counts": counts, "summary": result, "dropped": dropped}


def _run_seconds(run_dir: Path) -> float | None:
    """Wall time a finished run recorded in its summary.json (for the status table)."""
    try:
        return float(json.loads(RunFolder(run_dir).summary.read_text()).get("seconds"))
    except (OSError, ValueError, TypeError):
        return None


def _consume(
    events: Iterator[Event], status: dict, out: Path, cells: list[Cell], progress: bool
) -> None:
    live = LiveStatus(status, out, cells) if progress else None
    try:
        for kind, payload in events:
            if kind == "start":
                status[payload]["status"] = "running"
            elif kind == "done":
                status[payload["name"]].update(
                    status=payload["status"], seconds=payload["seconds"], error=payload["error"]
                )
            if live is not None:
                live.refresh()
    finally:
        if live is not None:
            live.stop()
