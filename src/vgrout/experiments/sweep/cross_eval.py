"""A sweep's finished runs evaluated on another evaluation set (`vgrout eval SWEEP_DIR --set ...`):
each run's last checkpoint through `rl.run_eval.final_evaluation_from_dir` with evaluation-only
overrides (nothing is written into the run folders), then per group the mean over seeds with the
same bootstrap intervals as the sweep report. E.g. runs trained on an honest grader
(`modes=gt_only`) scored on the loophole modes' held-out set that the main arms are read on."""

from __future__ import annotations

from pathlib import Path

from vgrout.experiments import aggregate as agg
from vgrout.experiments.report.common import format_number, markdown_table
from vgrout.experiments.sweep.folder import RUNS


def cross_evaluate(root: Path, overrides: list[str], progress=print) -> dict:
    """{"eval_overrides", "runs": [{name, folder, arm, seed, summary}], "groups": aggregate}."""
    from vgrout.rl.run_eval import final_evaluation_from_dir

    if not overrides:
        raise ValueError("vgrout eval SWEEP_DIR needs --set: the evaluation set to score runs on")
    records, missing = agg.load_runs(Path(root))
    for name in missing:
        progress(f"skipped {name}: not finished")
    for r in records:
        r["summary"] = final_evaluation_from_dir(Path(root) / RUNS / r["folder"], overrides)
        progress(f"evaluated {r['name']}")
    runs = [{k: r[k] for k in ("name", "folder", "arm", "seed", "summary")} for r in records]
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
