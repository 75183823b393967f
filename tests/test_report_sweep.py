"""`vgrout report SWEEP_DIR` on a synthetic sweep: fixed per-run summaries and evals, one failed cell."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vgrout.cli import main
from vgrout.experiments.report.sweep_tables import arms_table
from vgrout.experiments.sweep import arm_label, run_sweep, spec_from_cli
from vgrout.runfolder import RunFolder

ARMS = ("none", "absorb", "routeV", "routeV_placebo")
SEEDS = (0, 1, 2)
FAILING = "arm=absorb,seed=2"
# (deployed hack, deployed solve, as-trained hack, as-trained solve) per arm and seed, by hand
FINAL = {
    "none": [(0.50, 0.40, 0.50, 0.40), (0.60, 0.50, 0.60, 0.50), (0.70, 0.60, 0.70, 0.60)],
    "absorb": [(0.40, 0.55, 0.45, 0.50), (0.20, 0.45, 0.35, 0.40), (0.90, 0.90, 0.90, 0.90)],
    "routeV": [(0.10, 0.45, 0.80, 0.45), (0.30, 0.45, 0.90, 0.40), (0.20, 0.55, 0.70, 0.50)],
    "routeV_placebo": [
        (0.45, 0.50, 0.60, 0.50),
        (0.55, 0.50, 0.50, 0.45),
        (0.40, 0.45, 0.65, 0.55),
    ],
}
EVAL_STEPS = (0, 5, 10)


def curve_value(arm: str, seed: int, step: int, key: str) -> float:
    """Periodic eval values: a straight line from 0.1 at step 0 to the run's final value."""
    final = dict(zip(("deployed.hack", "deployed.solve", "as_trained.hack", "as_trained.solve"),
                     FINAL[arm][seed], strict=True))  # fmt: skip
    return 0.1 + (final[key] - 0.1) * step / EVAL_STEPS[-1]


STEP_TIMES = {"seconds": 2.0, "time_generate": 1.0, "time_grade": 0.5, "time_update": 0.2,
              "time_refresh": 0.0, "gen_tokens_per_s": 640.0}  # fmt: skip
GATE_TIME = {"routeV": 0.2}


HACK_SCORES = {"routeV": {8, 9}, "routeV_placebo": {0}}  # scores (0-9 each step) of the hacks


def fake_rollouts(hack_scores: set) -> list[dict]:
    """Two steps of 10 kept students scored 0-9 (keep 0, rout 9), plus rows the score table must
    leave out: a teacher hack and an unkept student hack without a score."""
    rows = []
    for step in (0, 1):
        for sc in range(10):
            zone = "keep" if sc == 0 else "rout" if sc == 9 else "absorb"
            rows.append({"step": step, "source": "student", "kept": True, "zone": zone,
                         "score": float(sc), "exploited": sc in hack_scores,
                         "feature_norm": 10.0 - sc})  # fmt: skip
        rows.append({"step": step, "source": "teacher", "kept": True, "zone": "keep",
                     "score": 0.0, "exploited": True, "feature_norm": 0.0})  # fmt: skip
        rows.append({"step": step, "source": "student", "kept": False, "zone": None,
                     "score": None, "exploited": True, "feature_norm": None})  # fmt: skip
    return rows


def state(hack: float, solve: float) -> dict:
    return {"hack": hack, "solve": solve, "n": 20}


def fake_train(cfg, out: Path) -> dict:
    folder = RunFolder(out)
    folder.create(cfg.to_json())
    arm = arm_label(cfg)
    if cfg.notes["sweep_cell"] == FAILING:
        raise RuntimeError("grader pool died")
    for step in EVAL_STEPS:
        row = {"kind": "periodic", "step": step, "split": "test"}
        for st in ("deployed", "as_trained"):
            row[st] = {m: curve_value(arm, cfg.seed, step, f"{st}.{m}") for m in ("hack", "solve")}
        folder.append(folder.evals, row)
    for step in range(EVAL_STEPS[-1]):
        folder.append(folder.metrics, {"step": step, "share_rout": 0.1, "share_keep": 0.9,
                                       "qmass": 0.05, "auroc": 0.7 if arm == "routeV" else None,
                                       **STEP_TIMES, "time_gate": GATE_TIME.get(arm, 0.0)})  # fmt: skip
    if arm in HACK_SCORES:
        folder.write_rollouts(fake_rollouts(HACK_SCORES[arm]))
    dh, ds, ah, as_ = FINAL[arm][cfg.seed]
    summary = {"arm": cfg.arm, "seed": cfg.seed, "deployed": state(dh, ds),
               "as_trained": state(ah, as_), "seconds": 2.0}  # fmt: skip
    folder.write_json(folder.summary, summary)
    return summary


def no_resume(out: Path) -> dict:
    raise AssertionError("nothing to resume")


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep")
    spec = spec_from_cli("smoke", [f"arm={','.join(ARMS)}", "seed=0,1,2"], ["steps=10"])
    run_sweep(spec, out, backend="local", progress=False, n_resamples=500,
              train_fn=fake_train, resume_fn=no_resume)  # fmt: skip
    return out


def report(sweep_dir: Path, capsys=None) -> str:
    assert main(["report", str(sweep_dir)]) == 0
    return (sweep_dir / "report.md").read_text()


def table_row(text: str, first_cell: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row starts with {first_cell!r}")


def section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def fmt_interval(values: list[float]) -> str:
    # 3 seeds: every resample has probability 1/27 > 2.5%, so the percentile interval is the
    # range of the values (see test_aggregate); 2 seeds: likewise [min, max].
    return f"{np.mean(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def test_arms_table_is_the_mean_over_seeds_with_intervals(sweep_dir, capsys):
    text = report(sweep_dir)
    arms = section(text, "Arms")
    for arm in ARMS:
        seeds = [s for s in SEEDS if not (arm == "absorb" and s == 2)]  # the failed cell
        row = table_row(arms, arm)
        assert row[1] == str(len(seeds))
        for col in range(4):
            assert row[2 + col] == fmt_interval([FINAL[arm][s][col] for s in seeds]), (arm, col)
        assert row[6] == f"{len(seeds)}/3"
    # the terminal gets the arms table and the verdicts
    printed = capsys.readouterr().out
    assert table_row(printed, "routeV") == table_row(arms, "routeV")
    assert "report:" in printed


def test_arms_table_prints_a_dash_for_a_field_the_arm_does_not_read():
    summary = {"group_by": ["arm", "band_tail_q", "monitor_accuracy"], "groups": []}
    groups = {
        name: {"arm": arm, "fields": {"band_tail_q": tail, "monitor_accuracy": acc},
               "cells": 1, "finished": 0}
        for name, arm, tail, acc in (("a", "routeV_placebo", 0.45, 1.0),
                                     ("b", "gt_screen", 0.1, 0.8), ("c", "absorb", 0.1, 1.0))
    }  # fmt: skip
    table = arms_table(summary, groups)
    assert table_row(table, "routeV_placebo")[1:4] == ["0.45", "-", "0"]
    assert table_row(table, "gt_screen")[1:3] == ["-", "0.8"]
    assert table_row(table, "absorb")[1:3] == ["-", "-"]


def test_failed_cell_is_listed_and_left_out(sweep_dir):
    text = report(sweep_dir)
    arms = section(text, "Arms")
    assert f"- `{FAILING}`: failed: RuntimeError: grader pool died" in arms
    runs = section(text, "Runs")
    assert table_row(runs, FAILING)[3] == "failed"
    assert table_row(runs, "arm=routeV,seed=1")[3:6] == ["finished", "0.300", "0.450"]


def test_where_the_time_goes_shows_mean_phase_seconds_and_shares(sweep_dir):
    times = section(report(sweep_dir), "Where the time goes")
    assert table_row(times, "routeV") == [
        "routeV", "2.00", "1.00 (50%)", "0.50 (25%)", "0.20 (10%)", "0.20 (10%)", "0.00 (0%)",
        "0.10 (5%)", "640", "30",
    ]  # fmt: skip
    assert table_row(times, "none")[4] == "0.00 (0%)"  # no scoring pass


def test_where_the_gate_puts_hacks_per_zone_and_score_bin(sweep_dir):
    """Hack rates of kept, scored students by zone and by within-step score quantile (bins: score
    0 | 1-2 | 3-6 | 7-8 | 9 of each step's 0-9), teachers and unkept rows left out."""
    text = section(report(sweep_dir), "Where the gate's scores put the hacks")
    assert table_row(text, "routeV") == [
        "routeV",
        "3",
        "0.200",
        "0.000",
        "0.125",
        "1.000",
        "0.000",  # hacks kept: neither hack (scores 8, 9) scored lowest
        "0.500",  # hacks routed: the one at score 9 of each step
        "0.000",
        "0.000",
        "0.000",
        "0.500",
        "1.000",
        "+0.800 [+0.800, +0.800]",
        "0.000",
    ]  # fmt: skip  (norm 10 - score: the hacks, scores 8 and 9, have the two smallest norms)
    placebo = table_row(text, "routeV_placebo")
    assert placebo[2:9] == ["0.100", "1.000", "0.000", "0.000", "1.000", "0.000", "1.000"]
    assert placebo[-2:] == ["-0.100 [-0.100, -0.100]", "1.000"]
    with pytest.raises(AssertionError, match="no table row"):
        table_row(text, "none")  # no scores: no row


def test_contrasts_placebo_band_and_significance_paragraph(sweep_dir):
    text = report(sweep_dir)
    # routeV - none deployed hack per seed: -0.4, -0.3, -0.5 -> significant
    contrasts = section(text, "Paired contrasts")
    row = table_row(contrasts, "routeV - none")
    assert row[1] == "3"
    assert row[2] == "-0.400 [-0.500, -0.300] *"
    # absorb - none pairs only seeds 0 and 1: not tested
    row = table_row(contrasts, "absorb - none")
    assert row[1] == "2" and row[2].endswith(" ~")
    assert table_row(contrasts, "routeV - routeV_placebo")[2] == "-0.267 [-0.350, -0.200] *"
    # 3 contrasts tested per column: routeV - none's t-test p 0.020 is x3 under Holm, no `†`
    assert "3 contrasts in each column" in contrasts
    paragraph = section(text, "What is significant")
    assert (
        "paired t-test p = 0.020, Holm-adjusted over 3 contrasts 0.061: does not hold after "
        "correction" in paragraph
    )
    band = section(text, "Placebo band")
    row = table_row(band, "routeV_placebo")
    assert row[2:5] == ["3", "0.400", "0.405"] and row[9] == "0.200"
    assert row[10] == "below every placebo run"
    paragraph = section(text, "What is significant")
    assert "routeV vs none (paired by seed, 3 seeds): deployed hack difference -0.400" in paragraph
    assert "significant, the interval excludes 0" in paragraph
    assert "absorb vs none" in paragraph and "not tested, 2 seeds paired" in paragraph


def test_curves_are_plotted_and_their_values_are_means_over_seeds(sweep_dir):
    text = report(sweep_dir)
    for png in ("curves.png", "zones.png"):
        data = (sweep_dir / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
        assert f"]({png})" in text  # referenced relatively: the folder is self-contained
    values = section(text, "Curve values")
    for line in values.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:2] == ["routeV", "5"]:
            want = np.mean([curve_value("routeV", s, 5, "deployed.hack") for s in SEEDS])
            assert cells[2] == "3" and cells[3] == f"{want:.3f}"
            break
    else:
        raise AssertionError("no curve value row for routeV at update 5")
    gate = section(text, "Gate as a classifier during training")
    assert table_row(gate, "routeV")[1] == "0.700"


def test_classifier_table_says_how_to_produce_it_then_aggregates_it(tmp_path, sweep_dir):
    import shutil

    from vgrout.experiments.classify import RolloutTable, SiteFeatures, analyse

    text = report(sweep_dir)
    assert "vgrout classify RUN_DIR" in section(text, "Offline classifier analysis")

    own = tmp_path / "sw"
    shutil.copytree(sweep_dir, own)
    doc = json.loads((own / "sweep.json").read_text())
    aurocs = []
    for c in doc["cells"]:
        if c["arm"] != "routeV":
            continue
        seed = c["config"]["seed"]
        rng = np.random.default_rng(seed)
        y = np.arange(60) % 3 == 0
        x = rng.standard_normal((60, 4)) + np.outer(y, [1.5 + seed, 0, 0, 0])
        pos = rng.standard_normal((5, 4)) + [2, 0, 0, 0]
        analysis = analyse(
            RolloutTable(y, rng.standard_normal(60), np.array([f"p{i % 12}" for i in range(60)])),
            {"cgrad": SiteFeatures.flat(x)},
            {"authored": {"cgrad": (SiteFeatures.flat(pos), SiteFeatures.flat(-pos))}},
            {"self_generated": "no pair survived"},
            seed=seed, n_haar=5,
        )  # fmt: skip
        RunFolder(own / "runs" / c["folder"]).write_json(
            own / "runs" / c["folder"] / "classify.json", analysis
        )
        aurocs.append(analysis["results"]["cgrad"]["authored"]["eval"]["auroc_pos_adv"])
    text = report(own)
    table = section(text, "Offline classifier analysis")
    assert "3 of 11 finished runs" in table
    row = table_row(table.split("**F0.5 A>0**")[0], "routeV")
    assert row[1] == "c-probe gradient" and row[2] == "3"
    assert row[3].startswith(f"{np.mean(aurocs):.2f} [")
    assert row[4] == "skip"  # self-generated pairs could not be built in any run


def test_report_classify_flag_is_refused_outside_a_sweep(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--classify"]) == 2
    assert "--classify works on a sweep folder" in capsys.readouterr().err


def test_a_swept_init_gets_its_own_column_and_rows(tmp_path):
    def train(cfg, out: Path) -> dict:
        folder = RunFolder(out)
        folder.create(cfg.to_json())
        hack = {"gaussian": 0.5, "pissa": 0.2}[cfg.init] + 0.1 * cfg.seed
        summary = {"deployed": state(hack, 0.5), "as_trained": state(hack, 0.5)}
        folder.write_json(folder.summary, summary)
        return summary

    spec = spec_from_cli("smoke", ["arm=none,routeV", "init=gaussian,pissa", "seed=0,1,2"])
    run_sweep(spec, tmp_path, backend="local", progress=False, n_resamples=500,
              train_fn=train, resume_fn=no_resume)  # fmt: skip
    text = report(tmp_path)
    arms = section(text, "Arms")
    assert arms.strip().startswith("| arm | init | seeds | deployed hack |")
    rows = [line for line in arms.splitlines() if line.startswith("| routeV | pissa |")]
    assert len(rows) == 1 and "| 3 | 0.300 [0.200, 0.400] |" in rows[0]
    contrasts = section(text, "Paired contrasts")
    assert "routeV [init=pissa] - none [init=pissa]" in contrasts


def test_runs_csv_one_row_per_finished_run_with_overrides(sweep_dir):
    import csv

    from vgrout.experiments import sweep as sweep_mod

    routev1 = next((sweep_dir / sweep_mod.RUNS).glob("arm=routeV,seed=1_*"))
    (routev1 / "base.json").write_text(
        json.dumps({"name_or_path": "/b", "weights_sha256": "ab" * 32})
    )
    report(sweep_dir)
    rows = list(csv.DictReader((sweep_dir / "runs.csv").open()))
    assert len(rows) == len(ARMS) * len(SEEDS) - 1  # the failed cell has no row
    assert list(rows[0]) == [
        "arm", "seed", "overrides", "deployed_hack", "deployed_solve", "as_trained_hack",
        "as_trained_solve", "n", "commit", "threads", "cpu", "base",
    ]  # fmt: skip
    row = next(r for r in rows if r["arm"] == "routeV" and r["seed"] == "1")
    assert row["base"] == "ab" * 6  # the weights hash, short; runs without one leave it empty
    assert {r["base"] for r in rows if r is not row} == {""}
    assert {r["cpu"] for r in rows} == {torch.backends.cpu.get_cpu_capability()}
    assert (row["deployed_hack"], row["deployed_solve"]) == ("0.3", "0.45")
    assert (row["as_trained_hack"], row["as_trained_solve"], row["n"]) == ("0.9", "0.4", "20")
    # the sweep's fixed override is listed; the placebo's conventional Haar seed is implied
    assert row["overrides"] == "steps=10"
    placebo = next(r for r in rows if r["arm"] == "routeV_placebo" and r["seed"] == "2")
    assert placebo["overrides"] == "steps=10"
    from vgrout.runfolder import code_provenance

    prov = code_provenance()  # RunFolder.create records it, for fake runs too
    assert {r["commit"] for r in rows} == {prov["commit"] + ("-dirty" if prov["dirty"] else "")}
    assert {r["threads"] for r in rows} == {str(torch.get_num_threads())}


def test_run_overrides_round_trip_through_the_train_cli():
    """A runs.csv row's overrides, given to `vgrout train`'s argument parsing, rebuild the config."""
    from vgrout.cli import _config_from_args, build_parser
    from vgrout.experiments.report.sweep import run_overrides
    from vgrout.experiments.sweep import cell_config
    from vgrout.presets import load_preset

    cfg = cell_config(
        load_preset("toy"),
        {"arm": "routeV_placebo", "seed": 3, "gen_deploy_frac": 0.0, "modes": ("sentinel",)},
    )
    text = run_overrides(cfg.to_dict(), "toy")
    assert text == "modes=sentinel;gen_deploy_frac=0.0"
    argv = ["train", "--preset", "toy", "--arm", "routeV_placebo", "--seed", "3", "--out", "x"]
    for part in text.split(";"):
        argv += ["--set", part]
    rebuilt = _config_from_args(build_parser().parse_args(argv))
    assert rebuilt.placebo_seed == 1003 and rebuilt.arm == "routeV"
    assert rebuilt.to_dict() == {**cfg.to_dict(), "notes": rebuilt.notes}
    assert run_overrides(load_preset("toy").to_dict(), "toy") == ""


def test_publish_copies_report_plots_and_csv(sweep_dir, tmp_path):
    dest = tmp_path / "docs" / "evidence"
    reading = tmp_path / "reading.md"
    reading.write_text("Nothing removes the hack but the oracle.\n")
    assert main(["report", str(sweep_dir), "--publish", str(dest), "--reading", str(reading)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        ["report.md", "runs.csv", *(p.name for p in sweep_dir.glob("*.png"))]
    )
    text = (dest / "report.md").read_text()
    assert section(text, "Reading").strip() == "Nothing removes the hack but the oracle."
    assert (dest / "runs.csv").read_text() == (sweep_dir / "runs.csv").read_text()


def test_report_names_the_machines_and_flags_mixed_draws(tmp_path):
    from vgrout.experiments.report.runs_csv import machines_sentence

    def run(name, cpu=None, base=None):
        d = tmp_path / name
        d.mkdir()
        if cpu:
            (d / "provenance.json").write_text(json.dumps({"cpu": {"capability": cpu}}))
        if base:
            (d / "base.json").write_text(json.dumps({"name_or_path": "/b", "weights_sha256": base}))
        return d

    same = [run("a", "AVX512", "ab" * 32), run("b", "AVX512", "ab" * 32)]
    text = machines_sentence(same)
    assert text == "Made with CPU kernels AVX512 (2 runs); base weights abababababab (2 runs)."
    old = run("c")  # made before either was recorded: named, not counted as another machine
    assert "not recorded (1 run)" in machines_sentence([*same, old])
    assert "mix" not in machines_sentence([*same, old])
    other = run("d", "AVX2", "cd" * 32)
    assert "**These runs mix machines or base weights**" in machines_sentence([*same, other])
    assert machines_sentence([]) == ""


def test_a_declared_contrast_is_listed_first_with_its_reason(tmp_path):
    from vgrout.experiments.sweep.spec import make_spec

    spec = make_spec(
        "smoke",
        [{"arm": ["absorb", "routeV"], "seed": [0, 1, 2]}],
        {"steps": 10},
        [{"a": {"arm": "routeV"}, "b": {"arm": "absorb"}, "why": "a gate against none"}],
    )
    run_sweep(spec, tmp_path, backend="local", progress=False, n_resamples=500,
              train_fn=fake_train, resume_fn=no_resume)  # fmt: skip
    contrasts = section(report(tmp_path), "Paired contrasts")
    first = contrasts.split("\n|")[3]  # the header, its rule, then the first row
    assert first.startswith(" routeV - absorb (a gate against none) |")
    # absorb seed 2 failed: seeds 0, 1 pair (0.10 - 0.40, 0.30 - 0.20): not tested
    row = table_row(contrasts, "routeV - absorb (a gate against none)")
    assert row[1:3] == ["2", "-0.100 [-0.300, +0.100] ~"]


def test_contrast_cells_mark_what_holds_after_holm():
    from vgrout.experiments.aggregate import aggregate
    from vgrout.experiments.report.sweep_tables import contrasts_table, holm_families

    def rec(arm, seed, hack):
        s = {"hack": hack, "solve": 0.5}
        return {"arm": arm, "seed": seed, "fields": {}, "summary": {"deployed": s, "as_trained": s}}

    # routeV - none per seed -0.4, -0.3, -0.5: alone in its family, t-test p 0.020 holds
    runs = [rec("none", s, h) for s, h in enumerate((0.5, 0.6, 0.7))]
    runs += [rec("routeV", s, h) for s, h in enumerate((0.1, 0.3, 0.2))]
    summary = aggregate(runs, n_resamples=500)
    row = table_row(contrasts_table(summary), "routeV - none")
    assert row[2] == "-0.400 [-0.500, -0.300] *†"
    assert row[3] == "+0.000 [+0.000, +0.000]"  # solve unchanged: p = 1, no mark
    assert holm_families(summary) == "1 contrast in each column"
