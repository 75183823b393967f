"""A sweep's finished runs evaluated on another evaluation set (`vgrout eval SWEEP_DIR --set ...`):
each run's last checkpoint through `rl.run_eval.final_evaluation_from_dir` with evaluation-only
overrides (nothing is written into the run folders), then per group the mean over seeds with the
same bootstrap intervals as the sweep report. E.g. runs trained on an honest grader
(`modes=gt_only`) scored on the loophole modes' held-out set that the main arms are read on."""

from __future__ import annotations

import json
from pathlib import Path

from vgrout.experiments import aggregate as agg
from vgrout.experiments.report.common import format_number, markdown_table
from vgrout.experiments.sweep.folder import RUNS, SWEEP_FILE


def cross_evaluate(root: Path, overrides: list[str], progress=print) -> dict:
    """{"eval_overrides", "runs": [{name, folder, arm, seed, summary}], "groups": aggregate}."""
    from vgrout.rl.run_eval import final_evaluation_from_dir

    if not overrides:
        raise ValueError("vgrout eval SWEEP_DIR needs --set: the evaluation set to score runs on")
    root = Path(root)
    cells = json.loads((root / SWEEP_FILE).read_text())["cells"]
    runs, records = [], []
    axes = [f for f in dict.fromkeys(f for c in cells for f in c["fields"]) if f != "arm"]
    for c in cells:
        run_dir = root / RUNS / c["folder"]
        if not (run_dir / "summary.json").is_file():
            progress(f"skipped {c['name']}: not finished")
            continue
        result = final_evaluation_from_dir(run_dir, overrides)
        progress(f"evaluated {c['name']}")
        seed = int(c["config"]["seed"])
        runs.append({"name": c["name"], "folder": c["folder"], "arm": c["arm"], "seed": seed,
                     "summary": result})  # fmt: skip
        fields = {f: c["config"].get(f) for f in axes}
        records.append({"arm": c["arm"], "seed": seed, "fields": fields, "summary": result})
    groups = agg.aggregate(records, n_resamples=10_000)["groups"] if records else []
    return {"eval_overrides": list(overrides), "runs": runs, "groups": groups}


def cross_eval_table(result: dict) -> str:
    """A row per group: seeds, then mean [95% CI] of the four rates on the other set."""
    rows = []
    for g in result["groups"]:
        m = g["metrics"]
        rows.append([
            g["display"], len(g["seeds"]),
            *(format_number(m[k]["mean"], (m[k]["lo"], m[k]["hi"]), 3) for k in agg.METRICS),
        ])  # fmt: skip
    header = ["group", "seeds", "deployed hack", "deployed solve", "as-trained hack",
              "as-trained solve"]  # fmt: skip
    return markdown_table(header, rows)
