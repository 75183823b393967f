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
cell sets `placebo_seed` itself. This package is the one home of that convention (`arms`) and of running
a cell (`cells`): `vgrout.experiments.decision` builds its arms with `cell_config` and runs them
with `run_local`.

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

Modules: `arms` (arm names, the placebo convention), `spec` (spec, grid, cells), `folder` (file
names, sweep.json), `cells` (one cell's state and run), `backends` (in process, process pool,
Ray), `run` (`run_sweep`), `summary` (sweep_summary.json), `display` (status tables).
"""

from vgrout.experiments.sweep.arms import (
    PLACEBO_SEED_OFFSET,
    PLACEBO_SUFFIX,
    arm_label,
    arm_names,
    arm_overrides,
    derived_arms,
    placebo_arms,
)
from vgrout.experiments.sweep.backends import (
    Event,
    local_threads,
    prebuild_toy_bases,
    run_local,
    run_ray,
)
from vgrout.experiments.sweep.cells import (
    ResumeFn,
    TrainFn,
    cell_state,
    config_differences,
    execute_cell,
    record_failure,
)
from vgrout.experiments.sweep.display import (
    FINISHED,
    LiveStatus,
    print_final_status,
    status_counts,
    status_table,
)
from vgrout.experiments.sweep.folder import (
    FAILED_FILE,
    RUNNING_FILE,
    RUNS,
    STATUS_FILE,
    SUMMARY_FILE,
    SWEEP_FILE,
    GridChangedError,
    load_sweep_spec,
    write_or_check_sweep_file,
)
from vgrout.experiments.sweep.run import run_sweep
from vgrout.experiments.sweep.spec import (
    RESERVED_FIELDS,
    Cell,
    SweepSpec,
    canonical_json,
    cell_config,
    coerce_value,
    expand,
    expand_by_grid,
    folder_name,
    load_spec_file,
    make_cell,
    make_spec,
    parse_grid_args,
    parse_set_args,
    spec_from_cli,
    split_values,
)
from vgrout.experiments.sweep.summary import base_defaults, finish

__all__ = [
    "FAILED_FILE",
    "FINISHED",
    "PLACEBO_SEED_OFFSET",
    "PLACEBO_SUFFIX",
    "RESERVED_FIELDS",
    "RUNNING_FILE",
    "RUNS",
    "STATUS_FILE",
    "SUMMARY_FILE",
    "SWEEP_FILE",
    "Cell",
    "Event",
    "GridChangedError",
    "LiveStatus",
    "ResumeFn",
    "SweepSpec",
    "TrainFn",
    "arm_label",
    "arm_names",
    "arm_overrides",
    "base_defaults",
    "canonical_json",
    "cell_config",
    "cell_state",
    "coerce_value",
    "config_differences",
    "derived_arms",
    "execute_cell",
    "expand",
    "expand_by_grid",
    "finish",
    "folder_name",
    "load_spec_file",
    "load_sweep_spec",
    "local_threads",
    "make_cell",
    "make_spec",
    "parse_grid_args",
    "parse_set_args",
    "placebo_arms",
    "prebuild_toy_bases",
    "print_final_status",
    "record_failure",
    "run_local",
    "run_ray",
    "run_sweep",
    "spec_from_cli",
    "split_values",
    "status_counts",
    "status_table",
    "write_or_check_sweep_file",
]
