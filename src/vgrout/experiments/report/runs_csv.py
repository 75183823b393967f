"""runs.csv of a sweep: one row per finished run, with the settings that re-run it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from vgrout.experiments import sweep
from vgrout.experiments.report.common import read_json_or_empty, run_summary
from vgrout.experiments.sweep import arms as sweep_arms
from vgrout.runfolder import RunFolder

RUNS_CSV = "runs.csv"
CSV_COLUMNS: tuple[str, ...] = (
    "arm", "seed", "overrides", "deployed_hack", "deployed_solve", "as_trained_hack",
    "as_trained_solve", "n", "commit", "threads", "cpu", "base",
)  # fmt: skip
"""One row per finished run. `overrides`: the `field=value` settings beyond the preset
(`;`-separated, empty for defaults), so a row re-runs with `vgrout train --preset P --arm ARM
--seed SEED --threads THREADS --set ...` on its `commit` (`-dirty` marks a run whose src/ was
edited: not reproducible from the commit alone). Bit for bit it re-runs on a CPU with the same
vector kernels (`cpu`, e.g. AVX512) and the same base weights (`base`: the first 12 hex digits of
base.json's weights_sha256; the toy base is trained locally, so another CPU builds another one);
elsewhere it gives other samples from the same distribution. Both are empty for runs made before
they were recorded."""


def run_overrides(config: dict, preset: str) -> str:
    """`field=value;...` of a run's config beyond its preset, as `--set` parses them. The arm and
    seed have their own columns; a placebo arm's conventional Haar seed (1000 + seed) is implied
    by the arm name (`vgrout train --arm routeV_placebo` expands it the same way)."""
    import dataclasses

    from vgrout.config import TrainConfig
    from vgrout.presets import load_preset

    cfg = TrainConfig.from_dict(config)
    base = load_preset(preset)
    label = sweep_arms.arm_label(cfg)
    implied = {"arm", "seed", "preset", "notes"}
    if label.endswith(sweep_arms.PLACEBO_SUFFIX) and cfg.placebo_seed == (
        sweep_arms.PLACEBO_SEED_OFFSET + cfg.seed
    ):
        implied.add("placebo_seed")
    parts = []
    for f in dataclasses.fields(TrainConfig):
        a, b = getattr(cfg, f.name), getattr(base, f.name)
        if f.name in implied or a == b:
            continue
        parts.append(f"{f.name}={_set_text(a)}")
    return ";".join(parts)


def _set_text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple | list):
        return ",".join(_set_text(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return str(v)


def runs_csv(root: Path, doc: dict, status: dict[str, tuple[str, str]]) -> str:
    """runs.csv (CSV_COLUMNS) of a sweep's finished runs, in grid order."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    preset = doc.get("spec", {}).get("preset", "toy")
    for c in doc["cells"]:
        if status[c["name"]][0] != "finished":
            continue
        d = root / sweep.RUNS / c["folder"]
        s = run_summary(d)
        prov = read_json_or_empty(RunFolder(d).provenance)
        commit = prov.get("commit") or "unknown"
        if prov.get("dirty"):
            commit += "-dirty"
        dep, tr = s.get("deployed", {}), s.get("as_trained", {})
        cpu, base = run_machine(d)
        w.writerow([
            c["arm"], c["config"]["seed"], run_overrides(c["config"], preset),
            dep.get("hack"), dep.get("solve"), tr.get("hack"), tr.get("solve"), dep.get("n"),
            commit, prov.get("torch_threads", ""), cpu, base,
        ])  # fmt: skip
    return buf.getvalue()


def run_machine(run_dir: Path) -> tuple[str, str]:
    """(CPU kernels, first 12 hex digits of the base weights' hash) a run was made with; each ""
    when the run predates its recording."""
    prov = read_json_or_empty(RunFolder(run_dir).provenance)
    base = read_json_or_empty(Path(run_dir) / "base.json").get("weights_sha256", "")
    return prov.get("cpu", {}).get("capability", ""), base[:12]


def machines_sentence(run_dirs: list[Path]) -> str:
    """Which CPU kernels and base weights made the runs, e.g. `Made with CPU kernels AVX512 (30
    runs); base weights 6185c18ccbcc (30 runs).`, flagged when they mix: runs from another CPU or
    another locally built base are another draw of the experiment, not a re-run of the same one."""
    if not run_dirs:
        return ""
    machines = [run_machine(d) for d in run_dirs]
    cpus = Counter(cpu or "not recorded" for cpu, _ in machines)
    bases = Counter(base or "not recorded" for _, base in machines)

    def words(counts: Counter) -> str:
        return ", ".join(f"{k} ({n} run{'s' * (n != 1)})" for k, n in sorted(counts.items()))

    text = f"Made with CPU kernels {words(cpus)}; base weights {words(bases)}."
    known = [c for c in (cpus, bases) if len([k for k in c if k != "not recorded"]) > 1]
    if known:
        text += (
            " **These runs mix machines or base weights**: such runs are different draws of the "
            "experiment (other base, other samples), so seeds pair only within one machine."
        )
    return text
