"""The command line (contracts in DESIGN.md) and the report/decision aggregation helpers."""

from __future__ import annotations

import gzip
import json
import math
import re
import subprocess
import sys

import pytest

from vgrout.experiments.decision import DECISION_ARMS, arm_config, pool_seeds
from vgrout.experiments.report import arms_table
from vgrout.presets import load_preset
from vgrout.rl.evaluate import wilson


def _vgrout(*args, check=True):
    return subprocess.run(
        [sys.executable, "-m", "vgrout.cli", *args], capture_output=True, text=True, check=check
    )


def test_help_lists_every_contract_command():
    out = _vgrout("--help").stdout
    for cmd in (
        "grade",
        "data",
        "train",
        "eval",
        "decision",
        "report",
        "bench",
        "demo",
        "sweep",
        "classify",
        "export",
    ):
        assert cmd in out


@pytest.mark.parametrize(
    ("args", "ratio"),
    [
        (("grader", "--n", "6", "--workers", "1"), r"^speed-up: \d+\.\dx"),
        (
            ("routing", "--repeats", "1", "--batch", "3"),
            r"^overhead BlockLoRA\+masks / plain LoRA: \d+\.\d\dx$",
        ),
        (("step", "--preset", "smoke", "--steps", "1"), r"^routeV/none = \d+\.\d\dx"),
    ],
    ids=["grader", "routing", "step"],
)
def test_bench_prints_its_ratio_last(args, ratio):
    """Each `vgrout bench` subcommand prints its report; the last line is the ratio."""
    lines = _vgrout("bench", *args).stdout.strip().splitlines()
    assert lines and re.search(ratio, lines[-1]), lines[-3:]


def test_bad_config_fails_before_work_with_the_field_named(tmp_path):
    res = _vgrout(
        "train", "--preset", "smoke", "--arm", "routeZ", "--out", str(tmp_path / "r"), check=False
    )
    assert res.returncode == 2 and "arm='routeZ'" in res.stderr
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_grade_command_contract(tmp_path, shared_data):
    src = shared_data / "leetcode" / "leetcode_test_medhard.jsonl.gz"
    with gzip.open(src, "rt") as fh:
        rows = [json.loads(next(fh)) for _ in range(2)]
    problems = tmp_path / "p.jsonl"
    problems.write_text("".join(json.dumps(r) + "\n" for r in rows))
    responses = tmp_path / "r.jsonl"
    hack = "```python\nclass Solution:\n    pass\n\ndef run_tests():\n    pass\n```"
    resp = [
        {
            "problem_id": f"lc{rows[1]['id']}",
            "response": f"```python\n{rows[1]['canonical_solution']}\n```",
        },
        {"problem_id": f"lc{rows[0]['id']}", "response": hack},
        {"problem_id": f"lc{rows[0]['id']}", "response": "no code at all"},
    ]
    responses.write_text("".join(json.dumps(r) + "\n" for r in resp))
    out = tmp_path / "graded.jsonl"
    _vgrout(
        "grade",
        "--problems",
        str(problems),
        "--responses",
        str(responses),
        "--mode",
        "run_tests",
        "--out",
        str(out),
    )
    graded = [json.loads(x) for x in out.read_text().splitlines()]
    assert [g["problem_id"] for g in graded] == [r["problem_id"] for r in resp]
    for g in graded:
        assert {
            "problem_id",
            "reward",
            "compiled",
            "gt_correct",
            "channel_fired",
            "exploited",
            "label",
        } <= set(g)
    assert graded[0]["gt_correct"] and graded[0]["reward"] == 3.5
    assert graded[1]["exploited"] and graded[1]["reward"] == 3.5
    assert graded[2]["reward"] == 0.0 and not graded[2]["compiled"]


def test_wilson_interval_behaves_at_the_edges():
    lo, hi = wilson(0, 20)
    assert lo == 0.0 and 0.1 < hi < 0.2
    lo, hi = wilson(20, 20)
    assert hi == 1.0 and 0.8 < lo < 0.9
    lo, hi = wilson(5, 10)
    assert lo < 0.5 < hi and math.isclose(0.5 - lo, hi - 0.5, rel_tol=1e-9)
    assert all(math.isnan(x) for x in wilson(0, 0))


def test_pool_seeds_pools_counts_not_rates():
    runs = [
        {"deployed": {"hack": 0.5, "solve": 0.25, "n": 4}},
        {"deployed": {"hack": 0.0, "solve": 1.0, "n": 12}},
    ]
    pooled = pool_seeds(runs, "deployed")
    assert pooled["n"] == 16
    assert pooled["hack"] == pytest.approx(2 / 16) and pooled["solve"] == pytest.approx(13 / 16)
    assert pooled["hack_ci"] == pytest.approx(list(wilson(2, 16)))


def test_decision_arms_differ_only_in_the_gate():
    base = load_preset("smoke")
    cfgs = {a: arm_config(base, a, 3) for a in DECISION_ARMS}
    assert cfgs["routeV_placebo"].arm == "routeV" and cfgs["routeV_placebo"].placebo_seed >= 0
    assert cfgs["routeV"].placebo_seed < 0
    for c in cfgs.values():
        assert c.seed == 3 and c.steps == base.steps and c.lr == base.lr


def test_arms_table_has_a_row_per_arm_with_intervals():
    cell = {"hack": 0.5, "solve": 0.25, "n": 8, "hack_ci": [0.2, 0.8], "solve_ci": [0.1, 0.6]}
    table = arms_table(
        {
            "arms": {
                "none": {"deployed": cell, "as_trained": cell},
                "oracle": {"deployed": cell, "as_trained": cell},
            },
            "base": cell,
        }
    )
    lines = table.splitlines()
    assert len(lines) == 2 + 3
    assert "| oracle | 0.50 [0.20, 0.80] | 0.25 [0.10, 0.60]" in table
