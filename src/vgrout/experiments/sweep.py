"""Sweeps: a preset + grids over config fields, one run folder per cell, run on Ray or locally.

    SWEEP_DIR/sweep.json           the spec and the expanded grid (each cell's name, folder, config)
    SWEEP_DIR/runs/<cell folder>/  an ordinary run folder (config.json ... summary.json)
                   failed.json     the error of the cell's last failed attempt (removed on success)
                   running.json    host/pid of a cell being run right now
    SWEEP_DIR/status.json          each cell's status after the last invocation
    SWEEP_DIR/sweep_summary.json   `vgrout.experiments.aggregate`: means, bootstrap intervals, paired contrasts

A spec is a preset, fixed overrides (`--set steps=40`) and one or more grids; a grid is a cartesian
product over config fields (`--grid arm=none,routeV --grid seed=0,1,2`), the last axis varying
fastest. Values are split on `;` when the string holds one (so a tuple field can take several
values: `--grid "modes=run_tests,sentinel;exit_code"`), else on `,`. A spec file (TOML or JSON)
may join several grids, e.g. the real arms x seeds plus routeV x several placebo seeds:

    preset = "toy"
    set = {steps = 40}
    [[grids]]
    arm = ["none", "absorb", "routeV", "routeV_placebo"]
    seed = [0, 1, 2]

Arm names also include derived arms: `<arm>_placebo`, for any arm that scores rollouts against a
direction, is that arm with a Haar-random placebo direction, `placebo_seed = 1000 + seed` unless the
cell sets `placebo_seed` itself. This module is the one home of that convention and of running a
cell: `vgrout.experiments.decision` builds its arms with `cell_config` and runs them with `run_local`.

A cell is named by its grid values (`arm=routeV,seed=1`); its folder is the name plus a short hash
of (preset, overrides, cell values), so the same cell always lands in the same folder and different
overrides never share one.

Grids run in the spec's order and, within a grid, seed by seed (every cell's seed 0, then every
cell's seed 1, ...), so a sweep stopped early holds whole seeds of its first grids. Re-running a sweep skips finished cells (summary.json present), resumes killed ones (config.json
present, no summary), and retries failed ones; one failing cell never stops the others. A sweep
folder is tied to its grid: a different grid is refused unless `force_grid` (then cells whose
folder still matches are reused; the others' folders stay on disk but leave the sweep).

Ray is imported only when the Ray backend is used. On a cluster (`address="ray://..."`) every node
must have vgrout installed and SWEEP_DIR must be on a filesystem all nodes share.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import socket
import time
import tomllib
import traceback
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vgrout.config import ARMS, DIRECTION_ARMS, TrainConfig, load_preset, parse_value
from vgrout.experiments import aggregate as agg
from vgrout.runfolder import RunFolder, atomic_write_text

SWEEP_FILE = "sweep.json"
STATUS_FILE = "status.json"
SUMMARY_FILE = "sweep_summary.json"
FAILED_FILE = "failed.json"
RUNNING_FILE = "running.json"
RUNS = "runs"

PLACEBO_SUFFIX = agg.PLACEBO_SUFFIX
PLACEBO_SEED_OFFSET = 1000
"""Placebo Haar seed = 1000 + training seed (sweeps and `vgrout.experiments.decision` both read it here)."""
RESERVED_FIELDS = ("preset", "notes")
"""Set by the sweep itself: `preset` comes from the spec, `notes` records the cell."""
FINISHED = ("done", "resumed", "reused")

TrainFn = Callable[[TrainConfig, Path], dict]
ResumeFn = Callable[[Path], dict]


# --------------------------------------------------------------------------------- arms
def _takes_placebo(cfg: TrainConfig) -> bool:
    """Arms that score rollouts against a direction (a placebo direction is meaningful)."""
    return bool(getattr(cfg, "scores_rollouts", cfg.arm in DIRECTION_ARMS))


def placebo_arms() -> tuple[str, ...]:
    return tuple(a for a in ARMS if _takes_placebo(TrainConfig(arm=a)))


def derived_arms() -> dict[str, dict]:
    """Arm names beyond config.ARMS: `<arm>_placebo` -> its overrides (seed-free part)."""
    return {
        f"{a}{PLACEBO_SUFFIX}": {"arm": a, "placebo_seed": PLACEBO_SEED_OFFSET}
        for a in placebo_arms()
    }


def arm_names() -> tuple[str, ...]:
    return ARMS + tuple(derived_arms())


def arm_overrides(name: str, seed: int) -> dict:
    """Config fields an arm name stands for (a placebo arm's Haar seed follows the run seed)."""
    if name in ARMS:
        return {"arm": name}
    derived = derived_arms()
    if name not in derived:
        raise ValueError(
            f"config field arm={name!r} is invalid: choose one of {', '.join(arm_names())}"
        )
    over = dict(derived[name])
    over["placebo_seed"] += seed
    return over


def arm_label(cfg: TrainConfig) -> str:
    """The arm a run belongs to for pooling: routeV with a placebo seed is `routeV_placebo`."""
    if cfg.placebo_seed >= 0 and _takes_placebo(cfg):
        return f"{cfg.arm}{PLACEBO_SUFFIX}"
    return cfg.arm


# --------------------------------------------------------------------------------- the spec
@dataclass(frozen=True)
class SweepSpec:
    preset: str
    sets: dict
    """Fixed overrides {field: typed value} applied to every cell."""
    grids: tuple[dict, ...]
    """Each grid: {field: [typed values]} in axis order (a cartesian product)."""

    def to_dict(self) -> dict:
        return {
            "preset": self.preset,
            "set": _jsonable(self.sets),
            "grids": _jsonable(list(self.grids)),
        }


@dataclass(frozen=True)
class Cell:
    name: str
    """`arm=routeV,seed=1`: the cell's grid values in axis order."""
    fields: dict
    """{field: typed value} of the cell's grid axes (arm as written: may be a derived name)."""
    arm: str
    """Arm label for pooling (`routeV_placebo` for a placebo run)."""
    folder: str
    """Folder under SWEEP_DIR/runs: readable name + short hash."""
    config: TrainConfig

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "fields": _jsonable(self.fields),
            "arm": self.arm,
            "folder": self.folder,
            "config": self.config.to_dict(),
        }


def _hints() -> dict:
    return typing.get_type_hints(TrainConfig)


def coerce_value(field: str, value, where: str):
    """A grid/set value (CLI string or TOML/JSON value) as the field's type; errors name it."""
    hints = _hints()
    if field in RESERVED_FIELDS:
        raise ValueError(f"{where}: field {field!r} cannot be swept or set (the sweep sets it)")
    if field not in hints:
        known = ", ".join(sorted(f for f in hints if f not in RESERVED_FIELDS))
        raise ValueError(f"{where}: unknown config field {field!r}; known fields: {known}")
    if field == "arm":
        value = str(value).strip()
        arm_overrides(value, 0)  # raises with the allowed names
        return value
    return _coerce(value, hints[field], field, where)


def _coerce(value, hint, field: str, where: str):
    if isinstance(value, str):
        return parse_value(value.strip(), hint, field)
    origin = typing.get_origin(hint)
    if origin is tuple and isinstance(value, list | tuple):
        elem = typing.get_args(hint)[0]
        return tuple(_coerce(v, elem, field, where) for v in value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if (hint is dict or origin is dict) and isinstance(value, dict):
        return value
    raise ValueError(f"{where}: config field {field}: {value!r} is not a {hint}")


def split_values(text: str) -> list[str]:
    """`a,b,c` -> [a, b, c]; `x,y;z` -> [x,y ; z] (`;` separates values when present)."""
    sep = ";" if ";" in text else ","
    return [v.strip() for v in text.split(sep) if v.strip()]


def parse_grid_args(grid: list[str]) -> dict[str, list[str]]:
    """CLI `--grid field=v1,v2` strings -> {field: [values]} in the order given."""
    out: dict[str, list[str]] = {}
    for g in grid:
        if "=" not in g:
            raise ValueError(f"--grid {g!r} must look like field=value1,value2")
        k, v = g.split("=", 1)
        k = k.strip().replace("-", "_")
        if k in out:
            raise ValueError(
                f"--grid field {k!r} is given twice; list all its values in one --grid"
            )
        values = split_values(v)
        if not values:
            raise ValueError(f"--grid {g!r} lists no values")
        out[k] = values
    return out


def parse_set_args(overrides: list[str]) -> dict[str, str]:
    out = {}
    for a in overrides:
        if "=" not in a:
            raise ValueError(f"--set {a!r} must look like field=value")
        k, v = a.split("=", 1)
        out[k.strip().replace("-", "_")] = v
    return out


def make_spec(preset: str, grids: list[dict], sets: dict | None = None) -> SweepSpec:
    """Check and type a spec: known fields, parsable values, no field both set and swept."""
    load_preset(preset)  # unknown preset -> clear error
    typed_sets = {k: coerce_value(k, v, f"--set {k}") for k, v in (sets or {}).items()}
    typed_grids = []
    if not grids:
        grids = [{}]  # no grid: one cell, the preset + sets
    for i, g in enumerate(grids):
        where = "--grid" if len(grids) == 1 else f"grid {i + 1}"
        typed = {}
        for k, values in g.items():
            k = k.replace("-", "_")
            if k in typed_sets:
                raise ValueError(f"{where}: field {k!r} is both set (--set) and swept; choose one")
            if isinstance(values, str):
                values = split_values(values)
            if not isinstance(values, list | tuple) or not values:
                raise ValueError(f"{where}: field {k!r} needs a non-empty list of values")
            typed[k] = [coerce_value(k, v, f"{where} {k}") for v in values]
            if len(set(map(_freeze, typed[k]))) != len(typed[k]):
                raise ValueError(f"{where}: field {k!r} lists a value twice: {values}")
        typed_grids.append(typed)
    return SweepSpec(preset, typed_sets, tuple(typed_grids))


def spec_from_cli(
    preset: str | None = None,
    grid: list[str] | None = None,
    overrides: list[str] | None = None,
    spec_file: Path | None = None,
) -> SweepSpec:
    """`vgrout sweep [--preset P] --grid f=a,b ... --set f=v ... [--spec FILE]`.

    Preset: `preset`, else the spec file's, else `toy` (a file and a CLI preset that disagree are an
    error). With a spec file, CLI `--set` values are added to the file's sets (CLI wins) and CLI
    `--grid` axes are allowed only if the file has no grid (two sources of one grid would be
    ambiguous)."""
    sets: dict = {}
    grids: list[dict] = []
    if spec_file is not None:
        data = load_spec_file(spec_file)
        file_preset = data.get("preset")
        if preset is not None and file_preset is not None and preset != file_preset:
            raise ValueError(f"--preset {preset} disagrees with {spec_file} (preset {file_preset})")
        preset = preset or file_preset
        sets.update(data.get("set", {}))
        grids = list(data.get("grids", []))
        if "grid" in data:
            grids.insert(0, data["grid"])
    cli_grid = parse_grid_args(grid or [])
    if cli_grid:
        if grids:
            raise ValueError(f"{spec_file} already defines grids; put the --grid axes in the file")
        grids = [cli_grid]
    sets.update(parse_set_args(overrides or []))
    return make_spec(preset or "toy", grids, sets)


def load_spec_file(path: Path) -> dict:
    path = Path(path)
    text = path.read_text()
    data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    unknown = sorted(set(data) - {"preset", "set", "grid", "grids"})
    if unknown:
        raise ValueError(
            f"{path}: unknown keys {', '.join(unknown)}; a spec has preset, set, grid, grids"
        )
    if isinstance(data.get("set"), list):
        data["set"] = parse_set_args(data["set"])
    return data


# --------------------------------------------------------------------------------- expansion
def expand(spec: SweepSpec) -> list[Cell]:
    """Every cell of every grid (cartesian product, last axis fastest), validated up front."""
    return [cell for _, cell in expand_by_grid(spec)]


def expand_by_grid(spec: SweepSpec) -> list[tuple[int, Cell]]:
    """(index of the first grid that holds the cell, cell) for every cell, in grid order."""
    base = load_preset(spec.preset)
    cells: list[tuple[int, Cell]] = []
    seen: set[str] = set()
    for gi, grid in enumerate(spec.grids):
        axes = list(grid)
        for values in itertools.product(*(grid[a] for a in axes)):
            fields = dict(zip(axes, values, strict=True))
            cell = make_cell(base, spec, fields)
            if cell.folder not in seen:
                seen.add(cell.folder)
                cells.append((gi, cell))
    return cells


def make_cell(base: TrainConfig, spec: SweepSpec, fields: dict) -> Cell:
    name = ",".join(f"{k}={agg.format_value(v)}" for k, v in fields.items()) or "base"
    merged = {**spec.sets, **fields}
    try:
        cfg = cell_config(base, merged)
    except (ValueError, TypeError) as e:
        raise ValueError(f"sweep cell {name}: {e}") from e
    label = arm_label(cfg)
    cfg = dataclasses.replace(cfg, notes={**cfg.notes, "sweep_cell": name, "sweep_arm": label})
    return Cell(name, dict(fields), label, folder_name(name, spec.preset, merged), cfg)


def cell_config(base: TrainConfig, fields: dict) -> TrainConfig:
    """Preset + fields; an arm name expands to its fields (explicit fields win), then validate."""
    updates = dict(fields)
    arm = updates.pop("arm", None)
    cfg = dataclasses.replace(base, **updates)
    if arm is not None:
        derived = arm_overrides(arm, cfg.seed)
        for k in list(derived):
            if k != "arm" and k in fields:
                derived.pop(k)
        cfg = dataclasses.replace(cfg, **derived)
    return cfg.validate()


def folder_name(name: str, preset: str, merged: dict) -> str:
    """Readable cell name + 8 hex of the (preset, overrides) hash: stable across invocations."""
    key = json.dumps({"preset": preset, "fields": _jsonable(merged)}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    readable = re.sub(r"[^A-Za-z0-9._=,+-]", "-", name)[:120]
    return f"{readable}_{digest}"


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return x


def _freeze(x):
    return json.dumps(_jsonable(x), sort_keys=True)


# --------------------------------------------------------------------------------- sweep.json
class GridChangedError(ValueError):
    pass


def write_or_check_sweep_file(
    out: Path, spec: SweepSpec, cells: list[Cell], force_grid: bool
) -> list[str]:
    """Tie SWEEP_DIR to its grid. Returns the names of cells that left the sweep (force_grid)."""
    path = out / SWEEP_FILE
    dropped: list[str] = []
    if path.is_file():
        old = json.loads(path.read_text())
        old_cells = {c["folder"]: c["name"] for c in old.get("cells", [])}
        new_cells = {c.folder: c.name for c in cells}
        if old_cells != new_cells:
            added = [n for f, n in new_cells.items() if f not in old_cells]
            dropped = [n for f, n in old_cells.items() if f not in new_cells]
            if not force_grid:
                kept = len(new_cells) - len(added)
                raise GridChangedError(
                    f"{out} holds a sweep with a different grid (preset/--set/--grid changed): "
                    f"{len(added)} new cells{_examples(added)}, {len(dropped)} cells not in the "
                    f"new grid{_examples(dropped)}, {kept} unchanged. Re-run with --force-grid to "
                    "switch to the new grid (unchanged cells are reused; the others' folders stay "
                    "on disk but leave the sweep), or choose another --out."
                )
    doc = {
        "version": 1,
        "spec": spec.to_dict(),
        "cells": [c.to_dict() for c in cells],
        "dropped_cells": dropped,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out.mkdir(parents=True, exist_ok=True)
    # no sort_keys: a grid's axis order is part of its cell names
    atomic_write_text(path, json.dumps(doc, indent=2))
    return dropped


def _examples(names: list[str], k: int = 3) -> str:
    if not names:
        return ""
    more = ", ..." if len(names) > k else ""
    return f" ({', '.join(names[:k])}{more})"


def load_sweep_spec(out: Path) -> SweepSpec:
    """The spec an existing SWEEP_DIR was run with (re-run a sweep without retyping its grid)."""
    path = Path(out) / SWEEP_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{out} holds no sweep ({SWEEP_FILE} missing)")
    d = json.loads(path.read_text())["spec"]
    return make_spec(d["preset"], d["grids"], d["set"])


# --------------------------------------------------------------------------------- one cell
def config_differences(a: dict, b: dict) -> list[str]:
    """Fields whose values differ between two config dicts (notes ignored; defaults filled in)."""
    ca, cb = TrainConfig.from_dict(a).to_dict(), TrainConfig.from_dict(b).to_dict()
    return sorted(k for k in ca if k != "notes" and _freeze(ca[k]) != _freeze(cb[k]))


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
    return "reuse" if folder.summary.is_file() else "resume"


def execute_cell(
    task: dict,
    train_fn: TrainFn | None = None,
    resume_fn: ResumeFn | None = None,
    threads: int | None = None,
) -> dict:
    """Run one cell to completion (train, resume or reuse); never raises for a failed run.

    `task` = {"name", "dir", "config"}. A failure writes `failed.json` (error + traceback) in the
    cell folder and returns status `failed`. This is the function shipped to Ray / a process pool:
    it must stay a module-level function of plain arguments."""
    t0 = time.time()
    run_dir = Path(task["dir"])
    name = task["name"]
    failed_path = run_dir / FAILED_FILE
    running_path = run_dir / RUNNING_FILE
    try:
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


# --------------------------------------------------------------------------------- backends
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


def _run_process_pool(
    tasks: list[dict], jobs: int, train_fn, resume_fn, threads
) -> Iterator[Event]:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    # spawn, not fork: torch and thread pools do not survive a fork.
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as ex:
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


def _run_ray(
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
    try:
        import ray
    except ImportError as e:  # pragma: no cover - ray is a dependency
        raise RuntimeError("the Ray backend needs `ray` installed; or use backend='local'") from e

    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(
                num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False
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
    from vgrout.toy.model import build_toy_base

    for r in recipes:
        build_toy_base(seed=0, recipe=toy_recipe(r))


# --------------------------------------------------------------------------------- the sweep
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
        tasks.append({"name": c.name, "dir": str(run_dir), "config": c.config.to_dict()})

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
        events = _run_ray(
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
        _print_final(status, counts, result["sentences"])
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
    live = _Live(status, out, cells) if progress else None
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


def finish(out: Path, n_resamples: int = 10_000) -> dict:
    """Aggregate the sweep's finished runs into OUT/sweep_summary.json (also `vgrout report`)."""
    out = Path(out)
    runs, missing = agg.load_runs(out)
    summary = agg.aggregate(runs, n_resamples=n_resamples, defaults=base_defaults(out))
    summary["unfinished"] = missing
    summary["runs"] = [
        {"name": r["name"], "folder": r["folder"], "arm": r["arm"], "seed": r["seed"]} for r in runs
    ]
    summary["sentences"] = agg.significance_sentences(summary)
    summary = _finite(summary)  # NaN (no data) -> null: strict JSON for other tools
    atomic_write_text(
        out / SUMMARY_FILE, json.dumps(summary, indent=2, sort_keys=True, allow_nan=False)
    )
    return summary


def base_defaults(out: Path) -> dict:
    """{field: value} of the sweep's base config (its preset + fixed sets), for ablation contrasts."""
    spec = load_sweep_spec(out)
    base = dataclasses.replace(load_preset(spec.preset), **spec.sets)
    return dataclasses.asdict(base)


def _finite(x):
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def status_counts(status: dict) -> dict:
    counts = {"cells": len(status), "finished": 0}
    for row in status.values():
        counts[row["status"]] = counts.get(row["status"], 0) + 1
        counts["finished"] += row["status"] in FINISHED
    return counts


# --------------------------------------------------------------------------------- display
_STYLE = {
    "done": "green",
    "resumed": "green",
    "reused": "dim green",
    "running": "yellow",
    "failed": "bold red",
    "queued": "dim",
}


def status_table(status: dict, limit: int | None = None):
    from rich.table import Table

    counts = status_counts(status)
    title = f"sweep: {counts['finished']}/{counts['cells']} finished"
    for k in ("running", "failed", "queued"):
        if counts.get(k):
            title += f", {counts[k]} {k}"
    table = Table(title=title, title_justify="left")
    for col in ("cell", "status", "time", "note"):
        table.add_column(col)
    rows = list(status.items())
    if limit is not None and len(rows) > limit:  # show what needs attention first
        order = {"failed": 0, "running": 1, "done": 2, "resumed": 2, "queued": 3, "reused": 4}
        rows = sorted(rows, key=lambda kv: order.get(kv[1]["status"], 5))[:limit]
    for name, row in rows:
        st = row["status"]
        secs = _duration(row.get("seconds"))
        note = (row.get("error") or "")[:160]
        table.add_row(name, f"[{_STYLE.get(st, '')}]{st}[/]", secs, note)
    return table


def _duration(seconds: float | None) -> str:
    if not seconds:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{sec:02d}s"


class _Live:
    """A rich live table of the cells; `running` is read from each cell's running.json marker."""

    def __init__(self, status: dict, out: Path, cells: list[Cell]):
        from rich.live import Live

        self.status, self.dirs = status, {c.name: out / RUNS / c.folder for c in cells}
        self.live = Live(status_table(status, limit=30), refresh_per_second=2, transient=True)
        self.live.start()

    def refresh(self) -> None:
        for name, row in self.status.items():
            if row["status"] == "queued" and (self.dirs[name] / RUNNING_FILE).is_file():
                row["status"] = "running"
        self.live.update(status_table(self.status, limit=30))

    def stop(self) -> None:
        self.live.stop()


def _print_final(status: dict, counts: dict, sentences: list[str]) -> None:
    from rich.console import Console

    console = Console()
    console.print(status_table(status))
    for s in sentences:
        console.print(f"- {s}")
