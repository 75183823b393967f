"""One cell: what its folder needs (train, resume or reuse) and running it to completion; a failure
is recorded in the cell's failed.json and never raised."""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from vgrout import kernels
from vgrout.config import TrainConfig
from vgrout.experiments.sweep.folder import FAILED_FILE, RUNNING_FILE
from vgrout.experiments.sweep.spec import canonical_json
from vgrout.runfolder import RunFolder, atomic_write_text, kernels_mismatch

TrainFn = Callable[[TrainConfig, Path], dict]
ResumeFn = Callable[[Path], dict]


def config_differences(a: dict, b: dict) -> list[str]:
    """Fields whose values differ between two config dicts (notes ignored; defaults filled in)."""
    ca, cb = TrainConfig.from_dict(a).to_dict(), TrainConfig.from_dict(b).to_dict()
    return sorted(k for k in ca if k != "notes" and canonical_json(ca[k]) != canonical_json(cb[k]))


def cell_state(run_dir: Path, config: dict) -> str:
    """What a cell folder needs: `reuse` (finished), `resume` (killed), `train` (new).

    Raises ValueError if the folder holds a run with another config (never mix two runs)."""
    folder = RunFolder(run_dir)
    if not folder.config.is_file():
        return "train"
    try:
        diff = config_differences(json.loads(folder.config.read_text()), config)
    except (ValueError, json.JSONDecodeError) as e:
        raise ValueError(
            f"{run_dir}/config.json is unreadable ({e}); delete the folder to rerun"
        ) from e
    if diff:
        raise ValueError(
            f"{run_dir} holds a run with a different config (fields {', '.join(diff)}); "
            "delete that folder to rerun the cell, or use another sweep folder"
        )
    if not folder.provenance.is_file():
        # Runs started before provenance.json existed predate arm `none`'s change of meaning
        # (it was today's `plain`): the same config.json then named another experiment.
        raise ValueError(
            f"{run_dir} holds a run made by an older vgrout (no provenance.json; arm `none` "
            "meant today's `plain` then); delete that folder to rerun the cell"
        )
    mismatch = kernels_mismatch(run_dir)
    if mismatch:
        was, now = mismatch
        raise ValueError(
            f"{run_dir} holds a run made with {kernels.ENV}={was} but this sweep runs {now} "
            f"kernels (other numbers); set {kernels.ENV}={was}, or use another sweep folder"
        )
    return "reuse" if folder.summary.is_file() else "resume"


def execute_cell(
    task: dict,
    train_fn: TrainFn | None = None,
    resume_fn: ResumeFn | None = None,
    threads: int | None = None,
) -> dict:
    """Run one cell to completion (train, resume or reuse); never raises for a failed run.

    `task` = {"name", "dir", "config", optional "kernels" (the sweep's `VGROUT_CPU_KERNELS`)}.
    A failure writes `failed.json` (error + traceback) in the
    cell folder and returns status `failed`. This is the function shipped to Ray / a process pool:
    it must stay a module-level function of plain arguments."""
    t0 = time.time()
    run_dir = Path(task["dir"])
    name = task["name"]
    failed_path = run_dir / FAILED_FILE
    running_path = run_dir / RUNNING_FILE
    try:
        here = kernels.requested()
        if task.get("kernels", here) != here:
            raise RuntimeError(
                f"this worker runs {here} CPU kernels but the sweep asked for {task['kernels']}: "
                f"the worker did not get {kernels.ENV} (and the variables it sets) from the sweep"
            )
        state = cell_state(run_dir, task["config"])
        if state == "reuse":
            return {"name": name, "status": "reused", "seconds": 0.0, "error": None}
        if threads:
            import torch

            torch.set_num_threads(threads)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            running_path,
            json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}),
        )
        if state == "resume":
            (resume_fn or _default_resume)(run_dir)
            status = "resumed"
        else:
            (train_fn or _default_train)(TrainConfig.from_dict(task["config"]), run_dir)
            status = "done"
        if not RunFolder(run_dir).summary.is_file():
            raise RuntimeError(f"the run returned but wrote no summary.json in {run_dir}")
        failed_path.unlink(missing_ok=True)
        return {"name": name, "status": status, "seconds": time.time() - t0, "error": None}
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
        record_failure(run_dir, error, traceback.format_exc())
        return {"name": name, "status": "failed", "seconds": time.time() - t0, "error": error}
    finally:
        running_path.unlink(missing_ok=True)


def record_failure(run_dir: Path, error: str, trace: str = "") -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        doc = {
            "error": error,
            "traceback": trace,
            "host": socket.gethostname(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        atomic_write_text(run_dir / FAILED_FILE, json.dumps(doc, indent=2))
    except OSError:
        pass  # the status table still carries the error


def _default_train(cfg: TrainConfig, out: Path) -> dict:
    from vgrout.rl.train import train

    return train(cfg, out, progress=False)


def _default_resume(out: Path) -> dict:
    from vgrout.rl.train import resume

    return resume(out, progress=False)
