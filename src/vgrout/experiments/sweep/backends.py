"""Where cells run: in this process, in a local pool of spawned processes, or as Ray tasks; each
backend is a generator of events."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from vgrout.config import TrainConfig
from vgrout.experiments.sweep.cells import ResumeFn, TrainFn, execute_cell, record_failure

# Each backend yields ("start", name) when it starts a cell it runs itself, ("done", result) when a
# cell ends, and ("tick", None) about once a second while waiting (the display polls running.json).
Event = tuple[str, dict | str | None]


def local_threads(jobs: int) -> int:
    """Torch threads per cell when `jobs` cells share this machine's CPUs."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def run_local(
    tasks: list[dict],
    jobs: int = 1,
    threads: int | None = None,
    train_fn: TrainFn | None = None,
    resume_fn: ResumeFn | None = None,
) -> Iterator[Event]:
    """The local backend: `execute_cell` on each task, `jobs` at a time in spawned processes
    (1 = in this process). A generator of events; nothing starts until it is iterated."""
    if jobs == 1:
        return _run_sequential(tasks, train_fn, resume_fn, threads)
    return _run_process_pool(tasks, jobs, train_fn, resume_fn, threads)


def _run_sequential(tasks: list[dict], train_fn, resume_fn, threads) -> Iterator[Event]:
    for t in tasks:
        yield ("start", t["name"])
        yield ("done", execute_cell(t, train_fn, resume_fn, threads))


def exit_with_parent(parent_pid: int, poll_seconds: float = 1.0) -> None:
    """In a pool worker: a daemon thread that ends this process (its sandboxes die with it) once
    `parent_pid` is no longer its parent, i.e. the sweep process died. The cell it was running is
    left as a killed run, which the next sweep resumes."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="vgrout-exit-with-parent", daemon=True).start()


def _run_process_pool(
    tasks: list[dict], jobs: int, train_fn, resume_fn, threads
) -> Iterator[Event]:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    # spawn, not fork: torch and thread pools do not survive a fork. A worker whose sweep process
    # is killed exits too, rather than finish its cell into a folder that may have moved on.
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=get_context("spawn"),
        initializer=exit_with_parent,
        initargs=(os.getpid(),),
    ) as ex:
        pending = {ex.submit(execute_cell, t, train_fn, resume_fn, threads): t for t in tasks}
        while pending:
            done, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            if not done:
                yield ("tick", None)
            for f in done:
                t = pending.pop(f)
                try:
                    yield ("done", f.result())
                except Exception as e:  # the worker process died (e.g. killed, out of memory)
                    error = f"{type(e).__name__}: {e}"
                    record_failure(Path(t["dir"]), error)
                    yield (
                        "done",
                        {"name": t["name"], "status": "failed", "seconds": 0.0, "error": error},
                    )


def run_ray(
    tasks: list[dict],
    train_fn,
    resume_fn,
    *,
    address,
    num_cpus,
    cpus_per_task,
    gpus_per_task,
    retries,
    configs,
) -> Iterator[Event]:
    """The Ray backend: one Ray task per cell (`execute_cell`), a local Ray unless `address`."""
    try:
        import ray
    except ImportError as e:  # pragma: no cover - ray is a dependency
        raise RuntimeError("the Ray backend needs `ray` installed; or use backend='local'") from e

    from vgrout import kernels

    # workers compute with the driver's CPU kernels; Ray does not hand them its environment
    runtime_env = {"env_vars": kernels.environment()}
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False, runtime_env=runtime_env)
        else:
            ray.init(
                num_cpus=num_cpus or os.cpu_count(),
                include_dashboard=False,
                log_to_driver=False,
                runtime_env=runtime_env,
            )
    try:
        gpus = gpus_per_task if gpus_per_task is not None else _auto_gpus(ray, configs)
        remote = ray.remote(num_cpus=cpus_per_task, num_gpus=gpus, max_retries=retries)(
            execute_cell
        )
        threads = max(1, int(cpus_per_task))
        pending = {remote.remote(t, train_fn, resume_fn, threads): t for t in tasks}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            if not done:
                yield ("tick", None)
            for ref in done:
                t = pending.pop(ref)
                try:
                    yield ("done", ray.get(ref))
                except Exception as e:  # worker crash, node loss, unpicklable result
                    last_line = (str(e).strip().splitlines() or [""])[-1]
                    error = f"{type(e).__name__}: {last_line}"
                    record_failure(Path(t["dir"]), error, str(e))
                    yield (
                        "done",
                        {"name": t["name"], "status": "failed", "seconds": 0.0, "error": error},
                    )
    finally:
        if started_here:
            ray.shutdown()


def _auto_gpus(ray, configs: list[TrainConfig]) -> float:
    """One GPU per task when a cell asks for CUDA, or asks `auto` on a cluster that has GPUs
    (Ray hides GPUs from tasks that reserve none, so `auto` would silently fall back to CPU)."""
    if any(c.device.startswith("cuda") for c in configs):
        return 1
    if any(c.device == "auto" for c in configs) and ray.cluster_resources().get("GPU", 0) > 0:
        return 1
    return 0


def prebuild_toy_bases(configs: list[TrainConfig]) -> None:
    """Build the cached toy base once before workers start, so they do not all wait on its lock."""
    recipes = sorted({c.toy_recipe for c in configs if c.model == "toy"})
    if not recipes:
        return
    from vgrout.rl.components import toy_recipe
    from vgrout.toy.cache import toy_base

    for r in recipes:
        toy_base(toy_recipe(r))
