"""`make demo`: the decision experiment on the toy environment, on a laptop CPU.

Builds (or reuses) the toy base model, runs the decision arms (routeV real, routeV placebo, none,
absorb, oracle) into runs/demo (a re-run skips finished arms and resumes killed ones), writes
runs/demo/report.md with plots, and prints the arms table. Under `VGROUT_CPU_KERNELS=portable` the
default folder is runs/demo-portable: the two modes' runs are different draws and never share one.
"""

from __future__ import annotations

import time
from pathlib import Path

from vgrout import kernels
from vgrout.presets import load_preset


def default_out() -> Path:
    """runs/demo, or runs/demo-<mode> under non-native CPU kernels."""
    mode = kernels.requested()
    return Path("runs/demo" if mode == "native" else f"runs/demo-{mode}")


def demo(out: Path, jobs: int = 2) -> int:
    from vgrout.experiments.decision import run_decision
    from vgrout.experiments.report import arms_table, write_report

    t0 = time.time()
    cfg = load_preset("toy").validate()
    summary = run_decision(cfg, out, seeds=1, jobs=jobs)
    write_report(out)
    print()
    print(arms_table(summary))
    print(f"\nreport: {out / 'report.md'}   wall time: {time.time() - t0:.0f} s")
    return 0
