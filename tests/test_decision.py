"""The decision experiment runs on the sweep machinery: one placebo convention, one cell runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vgrout.config import TrainConfig
from vgrout.experiments import sweep
from vgrout.experiments.decision import DECISION_ARMS, arm_config, run_decision
from vgrout.experiments.report import write_report
from vgrout.experiments.sweep import arms as sweep_arms
from vgrout.presets import load_preset
from vgrout.runfolder import RunFolder


def test_placebo_seed_convention_has_one_home(monkeypatch):
    base = load_preset("smoke")

    def placebo_seeds(seed: int) -> tuple[int, int]:
        (cell,) = sweep.expand(sweep.spec_from_cli("smoke", ["arm=routeV_placebo", f"seed={seed}"]))
        return arm_config(base, "routeV_placebo", seed).placebo_seed, cell.config.placebo_seed

    assert placebo_seeds(3) == (1003, 1003)
    # change the convention in vgrout.experiments.sweep.arms only: the decision experiment follows it
    monkeypatch.setattr(sweep_arms, "PLACEBO_SEED_OFFSET", 5000)
    assert placebo_seeds(3) == (5003, 5003)
    assert arm_config(base, "routeV", 3).placebo_seed == -1


def test_decision_arm_configs_are_the_sweep_cells():
    base = load_preset("smoke")
    for name in DECISION_ARMS:
        (cell,) = sweep.expand(sweep.spec_from_cli("smoke", [f"arm={name}", "seed=2"]))
        got = arm_config(base, name, 2)
        assert got.notes["decision_arm"] == name
        assert sweep.config_differences(got.to_dict(), cell.config.to_dict()) == []
    with pytest.raises(ValueError, match="decision arm 'routeA' is invalid"):
        arm_config(base, "routeA", 0)


# ------------------------------------------------------------------------------ run_decision
HACK = {
    "routeV": 0.1,
    "routeV_placebo": 0.4,
    "none": 0.5,
    "plain": 0.6,
    "absorb": 0.3,
    "oracle": 0.0,
}


class Trainer:
    def __init__(self, fail: str = ""):
        self.trained, self.resumed, self.fail = [], [], fail

    def summary(self, cfg: TrainConfig) -> dict:
        # unequal n per seed: pooling must weight by counts (seed 1 counts twice)
        hack, n = HACK[cfg.notes["decision_arm"]] + 0.1 * cfg.seed, 10 * (cfg.seed + 1)
        st = {"hack": hack, "solve": 0.5, "n": n}
        return {"arm": cfg.arm, "seed": cfg.seed, "deployed": st, "as_trained": st,
                "deployed_train_dist": st, "as_trained_train_dist": st}  # fmt: skip

    def train(self, cfg: TrainConfig, out: Path) -> dict:
        name = f"{cfg.notes['decision_arm']}_s{cfg.seed}"
        self.trained.append(name)
        folder = RunFolder(out)
        folder.create(cfg.to_json())
        if name == self.fail:
            raise RuntimeError("out of memory")
        folder.write_json(folder.summary, self.summary(cfg))
        return {}

    def resume(self, out: Path) -> dict:
        folder = RunFolder(out)
        cfg = TrainConfig.from_dict(json.loads(folder.config.read_text()))
        self.resumed.append(out.name)
        folder.write_json(folder.summary, self.summary(cfg))
        return {}


BASE = {"hack": 0.0, "solve": 0.6, "n": 10, "hack_ci": [0.0, 0.3], "solve_ci": [0.3, 0.8]}


def decide(out: Path, trainer: Trainer, **kw) -> dict:
    return run_decision(
        load_preset("smoke"), out, seeds=2, train_fn=trainer.train, resume_fn=trainer.resume,
        base_fn=lambda cfg: dict(BASE), **kw,
    )  # fmt: skip


def test_decision_summary_contract_and_rerun(tmp_path):
    t = Trainer()
    summary = decide(tmp_path, t)
    assert sorted(t.trained) == sorted(f"{a}_s{s}" for a in DECISION_ARMS for s in (0, 1))
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert set(doc) >= {"arms", "base", "seconds"} and set(doc["arms"]) == set(DECISION_ARMS)
    for arm, r in doc["arms"].items():
        for state in ("deployed", "as_trained"):
            assert {"hack", "solve", "n"} <= set(r[state])
            assert r[state]["n"] == 10 + 20
            assert r[state]["hack"] == pytest.approx(HACK[arm] + 2 * 0.1 / 3)
        assert r["runs"] == [f"{arm}_s0", f"{arm}_s1"]
    assert doc["base"]["solve"] == 0.6 and summary["arms"] == doc["arms"]
    placebo = json.loads((tmp_path / "routeV_placebo_s1" / "config.json").read_text())
    assert (placebo["arm"], placebo["placebo_seed"]) == ("routeV", sweep.PLACEBO_SEED_OFFSET + 1)
    # a re-run reuses finished runs and resumes a killed one
    (tmp_path / "absorb_s1" / "summary.json").unlink()
    t2 = Trainer()
    decide(tmp_path, t2)
    assert t2.trained == [] and t2.resumed == ["absorb_s1"]
    # the decision folder still gets its report (curves pooled per arm)
    text = write_report(tmp_path).read_text()
    assert "| routeV_placebo | 0.47 [" in text and (tmp_path / "curves.png").is_file()
    train_dist = text.split("### On the training distribution")[1]
    assert "| none | 0.57 [" in train_dist and "base model" not in train_dist


def test_per_mode_table_pools_counts_over_seeds(tmp_path):
    from vgrout.experiments.report import per_mode_table

    def run(name: str, by_mode: dict) -> Path:
        d = tmp_path / name
        d.mkdir()
        rows = [
            {"kind": "periodic", "split": "test", "step": 0, "deployed": {"by_mode": {}}},
            {"kind": "final", "split": "test", "step": 9, "deployed": {"by_mode": by_mode}},
            {"kind": "final", "split": "train_dist", "step": 9,
             "deployed": {"by_mode": {"sentinel": {"hack": 9, "n": 9}}}},
        ]  # fmt: skip
        (d / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return d

    runs = {
        "none": [
            run("a", {"sentinel": {"hack": 3, "n": 4}, "file_marker": {"hack": 0, "n": 2}}),
            run("b", {"sentinel": {"hack": 1, "n": 4}}),
        ],
        "oracle": [run("c", {"file_marker": {"hack": 1, "n": 4}})],
    }
    table = per_mode_table(runs)
    assert "| none | 0.00 (0/2) | 0.50 (4/8) |" in table  # train_dist rows are not counted
    assert "| oracle | 0.25 (1/4) | - |" in table
    assert per_mode_table({"none": [tmp_path / "missing"]}) == ""
    # a run folder with a second final row (older `vgrout eval` appended one) counts once: its last
    again = {"kind": "final", "split": "test", "step": 9,
             "deployed": {"by_mode": {"file_marker": {"hack": 2, "n": 4}}}}  # fmt: skip
    with (tmp_path / "c" / "eval.jsonl").open("a") as f:
        f.write(json.dumps(again) + "\n")
    assert "| oracle | 0.50 (2/4) | - |" in per_mode_table(runs)


def test_a_failed_decision_run_is_named_after_the_others_finish(tmp_path):
    t = Trainer(fail="none_s0")
    with pytest.raises(RuntimeError, match=r"1 decision run\(s\) failed: none_s0 .*out of memory"):
        decide(tmp_path, t)
    assert len(t.trained) == 2 * len(DECISION_ARMS)  # the other cells still ran
    assert (tmp_path / "none_s0" / sweep.FAILED_FILE).is_file()
    assert not (tmp_path / "summary.json").exists()
    t2 = Trainer()
    decide(tmp_path, t2)
    assert t2.resumed == ["none_s0"] and (tmp_path / "summary.json").is_file()
