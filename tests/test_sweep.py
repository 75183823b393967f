"""Sweeps: grid expansion, stable folders, skip/resume/fail bookkeeping, one real Ray run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vgrout.experiments.sweep import (
    FAILED_FILE,
    GridChangedError,
    arm_label,
    expand,
    load_sweep_spec,
    make_spec,
    run_sweep,
    spec_from_cli,
)
from vgrout.experiments.sweep.spec import contrast_side
from vgrout.presets import load_preset
from vgrout.runfolder import RunFolder

# ------------------------------------------------------------------------------ grid expansion


def test_grid_is_the_cartesian_product_last_axis_fastest():
    cells = expand(spec_from_cli("smoke", ["arm=none,routeV", "seed=0,1,2"], ["steps=3"]))
    assert [c.name for c in cells] == [
        "arm=none,seed=0", "arm=none,seed=1", "arm=none,seed=2",
        "arm=routeV,seed=0", "arm=routeV,seed=1", "arm=routeV,seed=2",
    ]  # fmt: skip
    assert [(c.config.arm, c.config.seed, c.config.steps) for c in cells[2:4]] == [
        ("none", 2, 3),
        ("routeV", 0, 3),
    ]
    assert all(c.config.preset == "smoke" for c in cells)
    assert cells[4].config.notes["sweep_cell"] == "arm=routeV,seed=1"


def test_derived_placebo_arm_follows_the_decision_convention():
    cells = expand(spec_from_cli("smoke", ["arm=routeV,routeV_placebo", "seed=0,1"]))
    placebo = [c for c in cells if c.fields["arm"] == "routeV_placebo"]
    assert [(c.config.arm, c.config.placebo_seed, c.arm) for c in placebo] == [
        ("routeV", 1000, "routeV_placebo"),
        ("routeV", 1001, "routeV_placebo"),
    ]
    real = [c for c in cells if c.fields["arm"] == "routeV"]
    assert all(c.config.placebo_seed == -1 and c.arm == "routeV" for c in real)
    # an explicit placebo_seed wins over the derived one; routeV + a placebo seed is a placebo run
    (c,) = expand(spec_from_cli("smoke", ["arm=routeV_placebo", "placebo_seed=7"]))
    assert c.config.placebo_seed == 7 and c.arm == "routeV_placebo"
    (c,) = expand(spec_from_cli("smoke", ["arm=routeV", "placebo_seed=7"]))
    assert arm_label(c.config) == "routeV_placebo"


def test_folder_names_are_stable_readable_and_distinct():
    spec = spec_from_cli("smoke", ["arm=none,absorb", "seed=0,1"], ["steps=3"])
    a, b = (
        expand(spec),
        expand(spec_from_cli("smoke", ["arm=none,absorb", "seed=0,1"], ["steps=3"])),
    )
    assert [c.folder for c in a] == [c.folder for c in b]
    assert len({c.folder for c in a}) == 4
    assert a[0].folder.startswith("arm=none,seed=0_") and len(a[0].folder.split("_")[-1]) == 8
    other = expand(spec_from_cli("smoke", ["arm=none,absorb", "seed=0,1"], ["steps=4"]))
    assert not {c.folder for c in a} & {c.folder for c in other}
    # the spec written to sweep.json re-expands to the same folders
    again = make_spec(
        **{"preset": "smoke", "grids": spec.to_dict()["grids"], "sets": spec.to_dict()["set"]}
    )
    assert [c.folder for c in expand(again)] == [c.folder for c in a]


def test_tuple_fields_take_semicolon_separated_values():
    cells = expand(spec_from_cli("smoke", ["modes=run_tests,sentinel;exit_code"]))
    assert [c.config.modes for c in cells] == [("run_tests", "sentinel"), ("exit_code",)]
    assert cells[0].name == "modes=run_tests+sentinel"


@pytest.mark.parametrize(
    ("grid", "sets", "match"),
    [
        (["seeds=0,1"], [], "unknown config field 'seeds'"),
        (["arm=routeX"], [], "arm='routeX' is invalid"),
        (["steps=a,b"], [], "config field steps: cannot parse 'a' as int$"),
        (["seed=0,0"], [], "field 'seed' lists a value twice"),
        (["steps=1,2"], ["steps=3"], "field 'steps' is both set"),
        (["preset=toy"], [], "field 'preset' cannot be swept"),
        (["seed"], [], "must look like field=value1,value2"),
        ([], ["lrr=1"], "unknown config field 'lrr'"),
    ],
)
def test_bad_grids_name_the_field(grid, sets, match):
    with pytest.raises(ValueError, match=match):
        spec_from_cli("smoke", grid, sets)


def test_invalid_cell_names_the_cell_and_field():
    with pytest.raises(ValueError, match=r"sweep cell arm=none,placebo_seed=3: .*placebo_seed"):
        expand(spec_from_cli("smoke", ["arm=none", "placebo_seed=3"]))
    with pytest.raises(ValueError, match="unknown preset"):
        spec_from_cli("nope", ["seed=0"])


def test_a_missing_or_malformed_spec_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"sweep spec .*nope\.toml not found"):
        spec_from_cli(spec_file=tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('preset = "smoke"\n[[grids]\n')
    with pytest.raises(ValueError, match=r"bad\.toml is not a valid sweep spec"):
        spec_from_cli(spec_file=bad)


def test_spec_file_joins_several_grids(tmp_path):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(
        'preset = "smoke"\n'
        "set = {steps = 3, lr = 1}\n"
        "[[grids]]\n"
        'arm = ["none", "routeV"]\n'
        "seed = [0, 1]\n"
        "[[grids]]\n"
        'arm = ["routeV"]\n'
        "placebo_seed = [50, 51]\n"
        "seed = [0]\n"
    )
    cells = expand(spec_from_cli(spec_file=spec_file, overrides=["eval_n=4"]))
    assert len(cells) == 4 + 2
    assert cells[-1].name == "arm=routeV,placebo_seed=51,seed=0"
    assert cells[-1].arm == "routeV_placebo"
    assert all(c.config.steps == 3 and c.config.lr == 1.0 and c.config.eval_n == 4 for c in cells)
    with pytest.raises(ValueError, match="already defines grids"):
        spec_from_cli(grid=["seed=0"], spec_file=spec_file)
    with pytest.raises(ValueError, match="disagrees"):
        spec_from_cli("toy", spec_file=spec_file)


# ------------------------------------------------------------------------------ running (fakes)
HACK = {"none": 0.6, "absorb": 0.4, "routeV": 0.2, "routeV_placebo": 0.5}


def fake_summary(cfg) -> dict:
    hack = HACK[arm_label(cfg)] + 0.01 * cfg.seed
    return {"arm": cfg.arm, "seed": cfg.seed, "deployed": {"hack": hack, "solve": 0.5, "n": 10},
            "as_trained": {"hack": hack + 0.1, "solve": 0.5, "n": 10}}  # fmt: skip


class FakeTrainer:
    """Writes a run folder like `train` would, in microseconds, and counts calls."""

    def __init__(self, fail: str = ""):
        self.trained, self.resumed, self.fail = [], [], fail

    def train(self, cfg, out: Path) -> dict:
        self.trained.append(cfg.notes["sweep_cell"])
        folder = RunFolder(out)
        folder.create(cfg.to_json())
        if self.fail and self.fail == cfg.notes["sweep_cell"]:
            raise RuntimeError("grader pool died")
        summary = fake_summary(cfg)
        folder.write_json(folder.summary, summary)
        return summary

    def resume(self, out: Path) -> dict:
        from vgrout.config import TrainConfig

        folder = RunFolder(out)
        cfg = TrainConfig.from_dict(json.loads(folder.config.read_text()))
        self.resumed.append(cfg.notes["sweep_cell"])
        summary = fake_summary(cfg)
        folder.write_json(folder.summary, summary)
        return summary


def sweep(spec, out, trainer, **kw):
    return run_sweep(
        spec, out, backend="local", progress=False, n_resamples=500,
        train_fn=trainer.train, resume_fn=trainer.resume, **kw,
    )  # fmt: skip


SPEC = ["arm=none,routeV,routeV_placebo", "seed=0,1,2"]


def test_sweep_runs_every_cell_once_and_aggregates(tmp_path):
    spec = spec_from_cli("smoke", SPEC)
    t = FakeTrainer()
    res = sweep(spec, tmp_path, t)
    assert len(t.trained) == 9 and not t.resumed
    assert res["counts"]["done"] == 9 and res["counts"]["finished"] == 9
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert [c["name"] for c in doc["cells"]] == [c.name for c in expand(spec)]
    for c in expand(spec):
        assert (tmp_path / "runs" / c.folder / "summary.json").is_file()
    summary = json.loads((tmp_path / "sweep_summary.json").read_text())
    route = next(g for g in summary["groups"] if g["name"] == "arm=routeV")
    assert route["metrics"]["deployed.hack"]["mean"] == pytest.approx(0.21)
    diff = next(c for c in summary["vs_none"] if c["a"] == "arm=routeV")["metrics"]["deployed.hack"]
    assert diff["mean"] == pytest.approx(-0.4) and diff["significant"] is True
    assert summary["real_vs_placebo"][0]["metrics"]["deployed.hack"]["mean"] == pytest.approx(-0.3)
    assert any("routeV vs none" in s and "significant" in s for s in summary["sentences"])
    status = json.loads((tmp_path / "status.json").read_text())
    assert {r["status"] for r in status.values()} == {"done"}


def test_rerun_skips_finished_and_resumes_killed_cells(tmp_path):
    spec = spec_from_cli("smoke", SPEC)
    sweep(spec, tmp_path, FakeTrainer())
    cells = expand(spec)
    # kill one cell: config.json present, summary.json gone
    killed = cells[4]
    (tmp_path / "runs" / killed.folder / "summary.json").unlink()
    t = FakeTrainer()
    res = sweep(spec, tmp_path, t)
    assert t.trained == [] and t.resumed == [killed.name]
    assert res["cells"][killed.name]["status"] == "resumed"
    assert res["counts"]["reused"] == 8 and res["counts"]["finished"] == 9


def test_a_failing_cell_is_reported_and_the_others_finish(tmp_path):
    spec = spec_from_cli("smoke", SPEC)
    bad = expand(spec)[3].name
    t = FakeTrainer(fail=bad)
    res = sweep(spec, tmp_path, t)
    assert len(t.trained) == 9
    assert res["counts"]["failed"] == 1 and res["counts"]["done"] == 8
    row = res["cells"][bad]
    assert row["status"] == "failed" and "grader pool died" in row["error"]
    failed = json.loads((tmp_path / "runs" / row["folder"] / FAILED_FILE).read_text())
    assert (
        "RuntimeError: grader pool died" in failed["error"] and "Traceback" in failed["traceback"]
    )
    status = json.loads((tmp_path / "status.json").read_text())
    assert status[bad]["status"] == "failed"
    assert bad in json.loads((tmp_path / "sweep_summary.json").read_text())["unfinished"]
    # the failed run had written config.json: the next invocation resumes it, and clears failed.json
    t2 = FakeTrainer()
    res2 = sweep(spec, tmp_path, t2)
    assert t2.trained == [] and t2.resumed == [bad]
    assert res2["counts"]["finished"] == 9
    assert not (tmp_path / "runs" / row["folder"] / FAILED_FILE).exists()


def test_changed_grid_is_refused_unless_forced(tmp_path):
    sweep(spec_from_cli("smoke", ["arm=none,routeV", "seed=0,1"]), tmp_path, FakeTrainer())
    bigger = spec_from_cli("smoke", ["arm=none,routeV", "seed=0,1,2"])
    with pytest.raises(GridChangedError, match=r"2 new cells .*--force-grid"):
        sweep(bigger, tmp_path, FakeTrainer())
    t = FakeTrainer()
    res = sweep(bigger, tmp_path, t, force_grid=True)
    assert sorted(t.trained) == ["arm=none,seed=2", "arm=routeV,seed=2"]
    assert res["counts"]["reused"] == 4
    # the folder now belongs to the new grid; re-running it needs no flag
    assert load_sweep_spec(tmp_path).grids == bigger.grids
    smaller = spec_from_cli("smoke", ["arm=none", "seed=0"])
    res = sweep(smaller, tmp_path, FakeTrainer(), force_grid=True)
    assert res["counts"]["cells"] == 1 and len(res["dropped"]) == 5
    assert json.loads((tmp_path / "sweep_summary.json").read_text())["n_runs"] == 1


def test_sweep_file_keeps_axis_order_so_a_rerun_matches(tmp_path):
    spec = spec_from_cli("smoke", ["seed=1,0", "arm=none,absorb"])
    sweep(spec, tmp_path, FakeTrainer())
    again = load_sweep_spec(tmp_path)
    assert [c.folder for c in expand(again)] == [c.folder for c in expand(spec)]
    assert expand(again)[0].name == "seed=1,arm=none"
    t = FakeTrainer()
    assert sweep(again, tmp_path, t)["counts"]["reused"] == 4 and t.trained == []


def test_a_folder_holding_another_config_is_never_mixed_in(tmp_path):
    spec = spec_from_cli("smoke", ["arm=none", "seed=0,1"])
    cell = expand(spec)[0]
    other = load_preset("smoke").override(["arm=none", "seed=0", "lr=0.5"])
    RunFolder(tmp_path / "runs" / cell.folder).create(other.to_json())
    t = FakeTrainer()
    res = sweep(spec, tmp_path, t)
    assert t.trained == ["arm=none,seed=1"]
    row = res["cells"][cell.name]
    assert row["status"] == "failed" and "different config (fields lr)" in row["error"]


def pool_train(cfg, out: Path) -> dict:
    """Module-level (picklable) fake for the process-pool backend; logs calls to a file."""
    with open(Path(out).parents[1] / "calls.log", "a") as fh:
        fh.write(f"train {cfg.notes['sweep_cell']}\n")
    folder = RunFolder(out)
    folder.create(cfg.to_json())
    folder.write_json(folder.summary, fake_summary(cfg))
    return {}


def pool_resume(out: Path) -> dict:
    raise AssertionError("nothing to resume")


def test_process_pool_backend_runs_the_same_cells(tmp_path):
    spec = spec_from_cli("smoke", ["arm=none,absorb", "seed=0,1"])
    res = run_sweep(
        spec, tmp_path, backend="local", jobs=2, progress=False, n_resamples=200,
        train_fn=pool_train, resume_fn=pool_resume,
    )  # fmt: skip
    assert res["counts"]["done"] == 4
    calls = sorted((tmp_path / "calls.log").read_text().split("\n")[:-1])
    assert calls == sorted(f"train {c.name}" for c in expand(spec))


# ------------------------------------------------------------------------------ the real thing
@pytest.mark.slow
def test_real_sweep_on_local_ray(tmp_path):
    spec = spec_from_cli("smoke", ["arm=none,absorb"], ["steps=1"])
    res = run_sweep(
        spec, tmp_path / "sw", backend="ray", num_cpus=2, progress=False, n_resamples=500
    )
    assert res["counts"].get("done") == 2, res["cells"]
    for c in expand(spec):
        d = tmp_path / "sw" / "runs" / c.folder
        for name in ("config.json", "metrics.jsonl", "eval.jsonl", "summary.json"):
            assert (d / name).is_file(), (c.name, name)
        assert json.loads((d / "config.json").read_text())["arm"] == c.config.arm
    summary = json.loads((tmp_path / "sw" / "sweep_summary.json").read_text())
    assert sorted(g["name"] for g in summary["groups"]) == ["arm=absorb", "arm=none"]
    absorb = next(g for g in summary["groups"] if g["name"] == "arm=absorb")
    assert 0.0 <= absorb["metrics"]["deployed.hack"]["mean"] <= 1.0
    (vs,) = summary["vs_none"]
    assert vs["metrics"]["deployed.hack"]["significant"] is None  # one seed: not tested
    # a second invocation finds everything finished and starts nothing (not even Ray)
    again = run_sweep(
        spec, tmp_path / "sw", backend="ray", num_cpus=2, progress=False, n_resamples=500
    )
    assert again["counts"]["reused"] == 2
    # every finished run scored on another evaluation set, per group, run folders untouched
    from vgrout.cli import main

    evals = {c.folder: (tmp_path / "sw" / "runs" / c.folder / "eval.jsonl").read_bytes()
             for c in expand(spec)}  # fmt: skip
    out = tmp_path / "cross.json"
    argv = ["eval", str(tmp_path / "sw"), "--set", "modes=gt_only", "--set", "final_eval_n=4",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    cross = json.loads(out.read_text())
    assert sorted(r["name"] for r in cross["runs"]) == ["arm=absorb", "arm=none"]
    assert all(r["summary"]["deployed"]["n"] == 4 for r in cross["runs"])
    assert {g["name"]: g["metrics"]["deployed.hack"]["mean"] for g in cross["groups"]} == {
        "arm=none": 0.0,
        "arm=absorb": 0.0,
    }  # gt_only has no loophole to pay
    for c in expand(spec):
        assert (tmp_path / "sw" / "runs" / c.folder / "eval.jsonl").read_bytes() == evals[c.folder]


def test_cells_run_grid_by_grid_and_seed_by_seed(tmp_path):
    """A sweep stopped early holds whole seeds of its first grid (the main arms)."""
    order = []

    def train_fn(cfg, out):
        order.append(cfg.notes["sweep_cell"])
        folder = RunFolder(out)
        folder.create(cfg.to_json())
        st = {"hack": 0.0, "solve": 0.0, "n": 1}
        folder.write_json(folder.summary, {"deployed": st, "as_trained": st})
        return {}

    spec = make_spec(
        "smoke",
        [{"arm": ["none", "absorb"], "seed": [0, 1]}, {"arm": ["oracle"], "seed": [0, 1]}],
    )
    run_sweep(spec, tmp_path, backend="local", progress=False, n_resamples=10,
              train_fn=train_fn, resume_fn=lambda out: {})  # fmt: skip
    assert order == [
        "arm=none,seed=0", "arm=absorb,seed=0", "arm=none,seed=1", "arm=absorb,seed=1",
        "arm=oracle,seed=0", "arm=oracle,seed=1",
    ]  # fmt: skip


def test_a_run_from_before_provenance_is_not_reused(tmp_path):
    """Arm `none` changed meaning (it was today's `plain`): a finished run with the same config.json
    but no provenance.json (made by an older vgrout) must not be reused as a new `none` run."""
    from vgrout.experiments.sweep import cell_state

    cfg = load_preset("smoke").override(["arm=none"]).validate()
    folder = RunFolder(tmp_path / "run")
    folder.create(cfg.to_json())
    folder.write_json(folder.summary, {"deployed": {}, "as_trained": {}})
    assert cell_state(folder.root, cfg.to_dict()) == "reuse"
    folder.provenance.unlink()
    with pytest.raises(ValueError, match="older vgrout"):
        cell_state(folder.root, cfg.to_dict())


def test_shipped_specs_expand_and_the_evidence_pins_how_it_was_made():
    # sweeps/*.toml are what `make evidence` / `make main-arms` run: they must parse, and the
    # evidence must keep the decode mode its published runs were made with
    sweeps = Path(__file__).resolve().parents[1] / "sweeps"
    evidence = expand(spec_from_cli(spec_file=sweeps / "evidence.toml"))
    main = expand(spec_from_cli(spec_file=sweeps / "main-arms.toml"))
    assert len(evidence) == 65 and len(main) == 30
    for spec in sweeps.glob("*.toml"):  # every shipped spec expands (validated configs)
        assert expand(spec_from_cli(spec_file=spec)), spec
    # and each but the evidence (its own target, with a classifier pass) is a `make NAME` target
    makefile = (sweeps.parent / "Makefile").read_text()
    listed = makefile.split("EVIDENCE_SWEEPS := ", 1)[1].split("\n", 1)[0].split()
    assert sorted(listed) == sorted(s.stem for s in sweeps.glob("*.toml") if s.stem != "evidence")
    assert {(c.config.mixed_decode, c.config.share_prompt_forward) for c in evidence} == {
        ("auto", False)
    }
    toy = load_preset("toy")
    assert {c.config.mixed_decode for c in main} == {toy.mixed_decode} == {"on"}
    assert {c.config.share_prompt_forward for c in main} == {toy.share_prompt_forward} == {True}
    # the main arms are the evidence's first grid, cell for cell, but for the two pinned fields
    first = {c.name: c.config.to_dict() for c in evidence[:30]}
    for c in main:
        cfg = c.config.to_dict()
        assert {k for k in cfg if cfg[k] != first[c.name][k]} == {
            "mixed_decode", "share_prompt_forward"
        }  # fmt: skip


def _gone(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # exited (a zombie)
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_pool_worker_exits_when_its_sweep_process_is_killed():
    """A killed sweep must not leave workers finishing cells into its folder."""
    import signal
    import subprocess
    import sys
    import time

    worker = (
        "import os, time; from vgrout.experiments.sweep.backends import exit_with_parent; "
        "exit_with_parent(os.getppid(), 0.05); print('ready', flush=True); time.sleep(60)"
    )
    sweep = (
        "import subprocess, sys, time; "
        f"w = subprocess.Popen([sys.executable, '-c', {worker!r}]); "
        "print(w.pid, flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", sweep], stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "ready" and not _gone(pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid)


# ------------------------------------------------------------------------------ declared contrasts
CONTRAST_SPEC = (
    'preset = "smoke"\n'
    "[[grids]]\n"
    'arm = ["none", "plain"]\n'
    "seed = [0, 1]\n"
    "[[grids]]\n"
    'arm = ["plain"]\n'
    "rank = [2]\n"
    "seed = [0, 1]\n"
)


def test_declared_contrasts_resolve_their_sides_and_survive_the_sweep_file(tmp_path):
    """A side names a group by the fields it gives, every other field at its default; the
    contrasts travel in sweep.json, so a re-run and the report read the same ones."""
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(
        CONTRAST_SPEC
        + '[[contrasts]]\na = { arm = "plain", rank = "2" }\nb = { arm = "none" }\nwhy = "slots"\n'
    )
    spec = spec_from_cli(spec_file=spec_file)
    assert spec.contrasts == ({"a": {"arm": "plain", "rank": 2}, "b": {"arm": "none"},
                               "why": "slots"},)  # fmt: skip
    a = contrast_side(load_preset("smoke"), spec, spec.contrasts[0]["a"])
    b = contrast_side(load_preset("smoke"), spec, spec.contrasts[0]["b"])
    assert (a["arm"], a["fields"]["rank"]) == ("plain", 2)
    assert (b["arm"], b["fields"]["rank"]) == ("none", load_preset("smoke").rank)
    sweep(spec, tmp_path / "sw", FakeTrainer())
    assert load_sweep_spec(tmp_path / "sw").contrasts == spec.contrasts


@pytest.mark.parametrize(
    ("contrast", "match"),
    [
        (
            'a = { arm = "plain", rank = 3 }\nb = { arm = "none" }\n',
            "contrast 1 a .* names no group",
        ),
        ('a = { arm = "none" }\nb = { arm = "none", rank = 4 }\n', "a and b name the same group"),
        ('a = { arm = "plain", seed = 1 }\nb = { arm = "none" }\n', "'seed' cannot name a side"),
        ('a = { arm = "plain", rnak = 2 }\nb = { arm = "none" }\n', "unknown config field 'rnak'"),
        ('a = { arm = "plain" }\n', "keys are a and b"),
        ('a = { arm = "plain" }\nb = {}\n', "contrast 1 b: a non-empty table"),
        ('a = { arm = "plain" }\nb = { arm = "none" }\nhow = "x"\n', "keys are a and b"),
    ],
)
def test_a_bad_declared_contrast_is_refused_with_its_number(tmp_path, contrast, match):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(CONTRAST_SPEC + "[[contrasts]]\n" + contrast)
    with pytest.raises(ValueError, match=match):
        spec_from_cli(spec_file=spec_file)


def test_final_status_prints_group_labels_with_their_brackets(capsys):
    # rich reads `[...]` as markup: a sentence naming `routeA [band_tail_q=0.2]` lost its label
    from vgrout.experiments.sweep.display import print_final_status

    print_final_status({}, {}, ["routeA [band_tail_q=0.2] vs routeA: deployed hack +0.018"])
    assert "routeA [band_tail_q=0.2] vs routeA" in capsys.readouterr().out
