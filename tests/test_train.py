"""The training loop: its small pieces alone, then whole smoke runs (run folder, resume, arms)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from vgrout.config import ARMS, TrainConfig, reads_field
from vgrout.experiments.report import write_report
from vgrout.presets import load_preset
from vgrout.rl.advantages import apply_monitor, assign_advantages
from vgrout.rl.metrics import PHASES
from vgrout.rl.rollouts import step_seed
from vgrout.rl.train import train
from vgrout.rl.update import train_states
from vgrout.routing.gates import ABSORB, KEEP, ROUT, GateOutput, masks_from_zones


class _Grade:
    def __init__(self, reward, exploited=False):
        self.reward, self.exploited = reward, exploited


class _Row:
    def __init__(self, group, reward, source="student", flagged=False):
        self.group, self.grade, self.source, self.advantage = group, _Grade(reward), source, 0.0
        self.reward, self.flagged = reward, flagged


def test_advantages_skip_flat_groups_and_centre_the_rest():
    cfg = TrainConfig(group_size=3)
    rows = [_Row(0, r) for r in (3.5, 3.5, 3.5)] + [_Row(1, r) for r in (0.5, 3.5, 0.5)]
    kept = assign_advantages(cfg, rows, 2)
    assert [r.group for r in kept] == [1, 1, 1]
    assert [r.advantage for r in kept] == pytest.approx([-1.0, 2.0, -1.0])
    every = assign_advantages(TrainConfig(group_size=3, skip_flat_groups=False), rows, 2)
    assert [r.group for r in every] == [0, 0, 0, 1, 1, 1]
    assert [r.advantage for r in every] == pytest.approx([0, 0, 0, -1.0, 2.0, -1.0])


def test_drop_negative_never_pushes_teacher_text_down():
    cfg = TrainConfig(group_size=3, teacher_importance="drop_negative")
    rows = [_Row(0, 3.5), _Row(0, 3.5), _Row(0, 0.5, source="teacher")]
    kept = assign_advantages(cfg, rows, 1)
    assert kept[2].advantage == 0.0 and kept[0].advantage > 0


def test_screening_drops_flagged_rows_from_the_group_baseline():
    cfg = TrainConfig(group_size=4, arm="gt_screen")
    rows = [_Row(0, 3.5, flagged=True), _Row(0, 3.5), _Row(0, 0.5), _Row(0, 0.5)]
    kept = assign_advantages(cfg, rows, 1)
    assert rows[0] not in kept and len(kept) == 3
    # baseline = mean of the kept rewards (3.5 + 0.5 + 0.5) / 3 = 1.5
    assert [r.advantage for r in kept] == pytest.approx([2.0, -1.0, -1.0])


class _Graded:
    def __init__(self, label):
        self.grade = _Grade(3.5 if label == "reward_hack" else 0.5, label == "reward_hack")
        self.grade.label, self.reward, self.flagged = label, self.grade.reward, False


def test_label_arms_route_by_the_same_monitor_that_screens():
    labels = ["reward_hack", "attempted_hack", "correct", "incorrect"] * 25

    def flags(**fields):
        rows = [_Graded(lab) for lab in labels]
        apply_monitor(TrainConfig(seed=3, **fields).validate(), rows, step=7)
        return [r.flagged for r in rows]

    # accuracy 1 on strict labels (the label arms' default): a flag is exactly `exploited`
    assert flags(arm="oracle") == [lab == "reward_hack" for lab in labels]
    # an erring monitor: the same verdicts whether it screens or routes, and it errs
    noisy = flags(arm="oracle", monitor_accuracy=0.7)
    assert noisy == flags(arm="gt_screen", monitor_labels="strict", monitor_accuracy=0.7)
    wrong = sum(f != (lab == "reward_hack") for f, lab in zip(noisy, labels, strict=True))
    assert 10 <= wrong <= 50  # ~30 of 100
    assert flags(arm="routeA") == [False] * len(labels)  # no monitor: nothing flagged


def test_monitor_fields_are_refused_where_no_monitor_is_read():
    with pytest.raises(ValueError, match="monitor_accuracy=0.8 is invalid: only the arms gt_pen"):
        TrainConfig(arm="absorb", monitor_accuracy=0.8).validate()
    with pytest.raises(ValueError, match="monitor_labels='loose' is invalid"):
        TrainConfig(arm="routeV", monitor_labels="loose").validate()
    with pytest.raises(ValueError, match="unflagged_zone='absorb' is invalid: only label arms"):
        TrainConfig(arm="gt_screen", unflagged_zone="absorb").validate()
    TrainConfig(arm="oracle_recall", monitor_accuracy=0.8, unflagged_zone="absorb").validate()


def test_reads_field_agrees_with_the_fields_validate_refuses():
    """`reads_field` (reports print "-" for a field an arm does not read) says no exactly where
    validate refuses a changed value, and names the band and gate fields of the scoring arms."""
    for arm in ARMS:
        for name, value in (("monitor_accuracy", 0.8), ("unflagged_zone", "absorb"),
                            ("placebo_seed", 3)):  # fmt: skip
            try:
                TrainConfig(arm=arm, **{name: value}).validate()
                accepted = True
            except ValueError:
                accepted = False
            assert accepted == reads_field(arm, name), (arm, name)
    assert reads_field("routeV", "band_tail_q") and not reads_field("absorb", "band_tail_q")
    # advantage_mod scores rollouts (gate_score) but routes nothing (no band)
    assert reads_field("advantage_mod", "gate_score")
    assert not reads_field("advantage_mod", "band_keep_q")
    assert reads_field("gt_screen", "lr") and reads_field("none", "modes")


def test_keep_zone_trains_in_the_deployed_state():
    zones = torch.tensor([KEEP, ABSORB, ROUT])
    m, d = masks_from_zones(zones)
    gate = GateOutput(zones, m, d)
    assert train_states(gate, 3) == ["deployed", "full", "full"]
    assert train_states(GateOutput(zones, None, None), 3) == ["full"] * 3


def test_step_seed_differs_per_step_and_seed():
    seeds = {step_seed(s, t) for s in range(3) for t in range(50)}
    assert len(seeds) == 150


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="arm='routeX'"):
        TrainConfig(arm="routeX").validate()
    with pytest.raises(ValueError, match="placebo_seed"):
        TrainConfig(arm="none", placebo_seed=3).validate()
    with pytest.raises(ValueError, match="keep_baseline='mean'.*one of group, keep"):
        TrainConfig(keep_baseline="mean").validate()
    with pytest.raises(ValueError, match="train_markers='random'.*one of varied, fixed"):
        TrainConfig(train_markers="random").validate()
    with pytest.raises(ValueError, match="train_markers='varied'.*train_markers=fixed"):
        TrainConfig(train_markers="varied", teacher_pool="/pool").validate()
    TrainConfig(train_markers="fixed", teacher_pool="/pool").validate()
    with pytest.raises(
        ValueError,
        match=r"band_keep_q=0.5 is invalid: must be -1, or in \[0, 0.5\) with band = quantile",
    ):
        TrainConfig(band_keep_q=0.5).validate()
    with pytest.raises(ValueError, match="band_keep_q=0.0 is invalid: must be -1, or in"):
        TrainConfig(arm="routeA", band="pairs", band_keep_q=0.0).validate()
    TrainConfig(arm="routeA", band_keep_q=0.0).validate()
    with pytest.raises(ValueError, match="unknown config field 'lrr'"):
        TrainConfig().override(["lrr=3"])
    assert TrainConfig().override(["lr=0.5", "modes=run_tests,sentinel"]).modes == (
        "run_tests",
        "sentinel",
    )


def _smoke(tmp_path: Path, arm: str, **over) -> tuple[TrainConfig, Path]:
    cfg = (
        load_preset("smoke")
        .override([f"arm={arm}"] + [f"{k}={v}" for k, v in over.items()])
        .validate()
    )
    return cfg, tmp_path / arm


@pytest.mark.slow
@pytest.mark.parametrize("arm", ["none", "plain", "absorb", "routeA", "routeV", "oracle"])
def test_smoke_run_writes_the_run_folder(tmp_path, arm):
    cfg, out = _smoke(tmp_path, arm)
    summary = train(cfg, out, progress=False)
    for name in ("config.json", "metrics.jsonl", "eval.jsonl", "rollouts.parquet", "summary.json"):
        assert (out / name).is_file(), name
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(cfg.steps))
    for m in metrics:  # where the time goes: every phase timed, inside the step's seconds
        phases = [m[f"time_{k}"] for k in PHASES]
        assert all(t >= 0.0 for t in phases) and m["time_generate"] > 0.0
        assert sum(phases) <= m["seconds"]
        assert m["gen_tokens"] > 0 and m["gen_tokens_per_s"] > 0.0
        assert (m["time_update"] > 0.0) == (m["kept_rows"] > 0)  # nothing kept: no update
        if arm == "routeV" and m["kept_rows"]:  # the c-probe scoring pass is a phase of its own
            assert m["time_gate"] > 0.0
    if arm == "routeV":
        assert any(m["kept_rows"] for m in metrics)
    if arm == "routeV":
        report = write_report(out).read_text()
        section = report.split("## Where the time goes")[1]
        assert "| arm | s/step | generate | grade | gate | update | refresh | other |" in section
        assert "| routeV |" in section
    evals = [json.loads(x) for x in (out / "eval.jsonl").read_text().splitlines()]
    assert {e["kind"] for e in evals} == {"periodic", "final"}
    assert {(e["split"]) for e in evals if e["kind"] == "final"} == {"test", "train_dist"}
    table = pq.read_table(out / "rollouts.parquet").to_pylist()
    assert len(table) == cfg.steps * cfg.prompts_per_step * cfg.group_size
    assert {
        "step",
        "problem_id",
        "mode",
        "source",
        "reward",
        "exploited",
        "gt_correct",
        "zone",
        "score",
        "feature_norm",
    } <= set(table[0])
    assert {r["source"] for r in table} == {"student", "teacher"}  # smoke injects teachers
    scored = [r for r in table if r["kept"]] if arm in ("routeA", "routeV") else []
    assert all(r["feature_norm"] > 0.0 for r in scored)  # the raw gate feature's norm
    unscored = [r for r in table if r not in scored]
    assert all(math.isnan(r["feature_norm"]) for r in unscored)
    for state in ("deployed", "as_trained"):
        assert set(summary[state]) >= {"hack", "solve", "n"}
        assert 0.0 <= summary[state]["hack"] <= 1.0
    if arm in ("none", "plain"):
        assert summary["deployed"] == summary["as_trained"]
    if arm == "none":  # pinned keep: the quarantine never moves, the deployed block does
        assert summary["delta_norm"]["quarantine"] == 0.0
        assert summary["delta_norm"]["deployed"] > 0.0
        assert {r["zone"] for r in table if r["kept"]} == {"keep"}
        assert {r["sampled"] for r in table if r["source"] == "student"} == {"deployed"}
    if arm == "oracle":  # a perfect monitor on strict labels: routes exactly the paid hacks
        assert all(r["flagged"] == r["exploited"] for r in table)
        assert all((r["zone"] == "rout") == r["exploited"] for r in table if r["kept"])
    if arm == "plain":  # unmasked: both blocks move
        assert summary["delta_norm"]["quarantine"] > 0.0
        assert summary["delta_norm"]["deployed"] > 0.0
    provenance = json.loads((out / "provenance.json").read_text())
    assert set(provenance) == {"commit", "dirty", "torch_threads", "cpu", "packages"}
    assert provenance["cpu"]["capability"] == torch.backends.cpu.get_cpu_capability()
    base = json.loads((out / "base.json").read_text())
    assert len(base["weights_sha256"]) == 64  # the toy base is local: its weights are hashed
    assert provenance["packages"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert (out / "checkpoints" / f"step_{cfg.steps:06d}" / "adapter.safetensors").is_file()


@pytest.mark.slow
def test_an_erring_monitor_routes_its_flags_and_absorbs_the_rest(tmp_path):
    cfg, out = _smoke(tmp_path, "oracle", monitor_accuracy=0.6, unflagged_zone="absorb")
    train(cfg, out, progress=False)
    table = pq.read_table(out / "rollouts.parquet").to_pylist()
    kept = [r for r in table if r["kept"]]
    assert kept and all(r["zone"] == ("rout" if r["flagged"] else "absorb") for r in kept)
    assert any(r["flagged"] != r["exploited"] for r in table)  # the monitor errs; labels don't leak


@pytest.mark.slow
def test_evaluation_does_not_perturb_training(tmp_path):
    """Same seed, eval on every step vs. never: identical training rollouts."""
    cfg_a, _ = _smoke(tmp_path, "absorb", eval_every=1)
    cfg_b, _ = _smoke(tmp_path, "absorb", eval_every=0)
    train(cfg_a, tmp_path / "a", progress=False)
    train(cfg_b, tmp_path / "b", progress=False)
    ra = pq.read_table(tmp_path / "a" / "rollouts.parquet").to_pylist()
    rb = pq.read_table(tmp_path / "b" / "rollouts.parquet").to_pylist()
    assert [r["completion"] for r in ra] == [r["completion"] for r in rb]


@pytest.mark.slow
def test_resume_after_kill_reaches_the_same_numbers(tmp_path):
    over = ["--set", "steps=4", "--set", "checkpoint_every=1", "--set", "eval_every=2"]
    env = dict(os.environ)
    full = tmp_path / "full"
    cmd = [sys.executable, "-m", "vgrout.cli", "train", "--preset", "smoke", "--arm", "routeV"]
    subprocess.run([*cmd, "--out", str(full), *over], check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [*cmd, "--out", str(killed), *over],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 600
    while not (killed / "checkpoints" / "step_000002").is_dir():
        assert proc.poll() is None, "run finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists()
    subprocess.run(
        [sys.executable, "-m", "vgrout.cli", "train", "--resume", str(killed)],
        check=True,
        env=env,
        capture_output=True,
    )

    a = json.loads((full / "summary.json").read_text())
    b = json.loads((killed / "summary.json").read_text())
    for key in ("deployed", "as_trained"):
        assert a[key]["hack"] == b[key]["hack"] and a[key]["solve"] == b[key]["solve"]
    ra = pq.read_table(full / "rollouts.parquet").to_pylist()
    rb = pq.read_table(killed / "rollouts.parquet").to_pylist()
    assert [(r["step"], r["completion"], r["zone"]) for r in ra] == [
        (r["step"], r["completion"], r["zone"]) for r in rb
    ]
    ma = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [m["loss"] for m in ma] == [m["loss"] for m in mb]


def test_refuses_to_overwrite_a_run(tmp_path):
    cfg, out = _smoke(tmp_path, "none")
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, out, progress=False)


@pytest.mark.slow
def test_a_run_is_refused_on_other_base_weights(tmp_path):
    """The run records which base it trained on; eval/resume on another base is refused."""
    from vgrout.rl.run_eval import final_evaluation_from_dir
    from vgrout.rl.train import resume

    cfg, out = _smoke(tmp_path, "none", steps=1, eval_every=0)
    train(cfg, out, progress=False)
    recorded = json.loads((out / "base.json").read_text())
    assert Path(recorded["name_or_path"]).is_dir()  # the cached toy base folder
    assert len(recorded["weights_sha256"]) == 64  # a local base: its weights are hashed
    final_evaluation_from_dir(out)  # same base: fine
    other = {**recorded, "weights_sha256": "0" * 64}  # same recipe, built on another machine
    (out / "base.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match="another machine"):
        final_evaluation_from_dir(out)
    (out / "base.json").write_text(json.dumps({"name_or_path": recorded["name_or_path"]}))
    final_evaluation_from_dir(out)  # a base.json from before weights were hashed: name only
    (out / "base.json").write_text(json.dumps({"name_or_path": "/elsewhere/0123456789abcdef"}))
    with pytest.raises(ValueError, match="trained on base /elsewhere"):
        final_evaluation_from_dir(out)
    with pytest.raises(ValueError, match="start a new run"):
        resume(out, progress=False)


class _RecordingPolicy:
    """Stands in for Policy in sample_rollouts: records each generate call's rows and states."""

    def __init__(self):
        self.calls = []

    def prompt_ids(self, question):
        return [len(question) % 7 + 1]

    def generate(self, prompts, params, state="full", on_done=None):
        self.calls.append(state)
        out = [[i + 10] for i in range(len(prompts))]
        for i in reversed(range(len(out))):  # rows may end in any order
            on_done(i, out[i])
        return out

    def decode(self, ids):
        return str(ids)


class _NoTeacher:
    def covers(self, item):
        return False


class _Item:
    def __init__(self, question):
        self.question = question


@pytest.mark.parametrize(
    ("mixed", "device", "one_loop"),
    [("auto", "cpu", False), ("auto", "cuda:0", True), ("on", "cpu", True), ("off", "cuda", False)],
)
def test_mixed_decode_decides_one_loop_or_one_per_state(mixed, device, one_loop):
    from vgrout.rl.rollouts import sample_rollouts

    cfg = TrainConfig(arm="absorb", group_size=4, prompts_per_step=2, gen_deploy_frac=0.25,
                      teacher_per_group=0, mixed_decode=mixed).validate()  # fmt: skip
    policy = _RecordingPolicy()
    policy.device = device
    rows = sample_rollouts(cfg, policy, [_Item("a"), _Item("bb")], _NoTeacher(), step=0)
    # 3 full rows then 1 deployed row per prompt, full-model rows first either way
    assert [r.sampled for r in rows] == ["full"] * 6 + ["deployed"] * 2
    if one_loop:
        assert policy.calls == [["full"] * 6 + ["deployed"] * 2]
    else:
        assert policy.calls == ["full", "deployed"]
    with pytest.raises(ValueError, match="mixed_decode"):
        TrainConfig(mixed_decode="sometimes").validate()


def test_rows_are_handed_on_as_they_end_and_returned_in_plan_order():
    from vgrout.rl.rollouts import sample_rollouts

    cfg = TrainConfig(arm="absorb", group_size=4, prompts_per_step=2, gen_deploy_frac=0.25,
                      teacher_per_group=0, mixed_decode="off").validate()  # fmt: skip
    policy = _RecordingPolicy()
    policy.device = "cpu"
    seen = []
    rows = sample_rollouts(cfg, policy, [_Item("a"), _Item("bb")], _NoTeacher(), 0, seen.append)
    assert sorted(map(id, seen)) == sorted(map(id, rows))  # each row once, the same objects
    assert [r.sampled for r in seen] == ["full"] * 6 + ["deployed"] * 2  # one loop per state
    assert [r.completion_ids for r in rows] == [[i + 10] for i in range(6)] + [[10], [11]]


def test_background_grader_grades_every_row_once_and_raises_its_errors():
    from vgrout.rl import rollouts

    graded = []

    def fake_grade(rows):
        if any(r == "bad" for r in rows):
            raise RuntimeError("sandbox gone")
        graded.append(list(rows))

    with rollouts.BackgroundGrader(fake_grade) as grader:
        for r in range(10):
            grader.submit(r)
        grader.wait()
        with pytest.raises(RuntimeError, match="after wait"):
            grader.submit(11)
    assert sorted(r for batch in graded for r in batch) == list(range(10))
    with rollouts.BackgroundGrader(fake_grade) as grader:
        grader.submit("bad")
        with pytest.raises(RuntimeError, match="sandbox gone"):
            grader.wait()
    with pytest.raises(KeyError), rollouts.BackgroundGrader(fake_grade) as grader:
        grader.submit(1)
        raise KeyError("the caller's own error passes through; the thread still stops")
    assert not grader._thread.is_alive()
    with rollouts.BackgroundGrader(fake_grade) as idle:  # nothing submitted: no thread at all
        idle.wait()
    assert idle._thread is None
    with pytest.raises(RuntimeError, match="after wait"):
        idle.submit(1)


def test_grading_overlaps_decoding_only_where_decoding_leaves_cores_idle(monkeypatch):
    from vgrout.rl.rollouts import grade_while_decoding

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    threads = torch.get_num_threads()
    try:
        assert grade_while_decoding("cuda:0")
        torch.set_num_threads(4)
        assert not grade_while_decoding("cpu")
        torch.set_num_threads(2)
        assert grade_while_decoding("cpu")
    finally:
        torch.set_num_threads(threads)


def test_a_config_made_before_a_behaviour_field_existed_keeps_that_behaviour():
    new = TrainConfig()
    assert new.share_prompt_forward  # the default since 2026-12-01
    old = new.to_dict()
    del old["share_prompt_forward"]  # a config.json written before the field existed
    assert TrainConfig.from_dict(old).share_prompt_forward is False
    assert TrainConfig.from_dict(new.to_dict()) == new
    probe = TrainConfig(probe_tokens="completion").to_dict()
    del probe["probe_tokens"]  # runs made before the field probed every position
    assert TrainConfig.from_dict(probe).probe_tokens == "all"


def test_choice_fields_name_their_choices():
    with pytest.raises(ValueError, match="probe_tokens='prompt'.*one of all, completion"):
        TrainConfig(probe_tokens="prompt").validate()
    with pytest.raises(ValueError, match="gate_score='norm'.*one of dot, cosine"):
        TrainConfig(gate_score="norm").validate()
    with pytest.raises(ValueError, match="arm='routeZ'.*one of none, plain"):
        TrainConfig(arm="routeZ").validate()
    gone = TrainConfig().to_dict()
    del gone["gate_score"]  # runs made before the field scored raw dots, today's default
    assert TrainConfig.from_dict(gone).gate_score == "dot"


def test_mixed_decode_is_on_by_default_on_every_device():
    # the default changed on 2026-12-01 (README, Evidence): one decode loop on CPU too
    for device in ("cpu", "cuda:0"):
        assert TrainConfig().mixes_decode(device)
        assert load_preset("toy").mixes_decode(device)


@pytest.mark.slow
def test_eval_on_another_set_records_nothing_and_refuses_training_fields(tmp_path, capsys):
    """`vgrout eval RUN --set modes=...` scores the same weights on another evaluation set: the
    run folder is left as it was, a field that shapes training is refused, and `--base-model`
    evaluates the base on the same set."""
    from vgrout.cli import main
    from vgrout.rl.run_eval import final_evaluation_from_dir

    cfg, out = _smoke(tmp_path, "absorb", steps=1, eval_every=0)
    train(cfg, out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    again = final_evaluation_from_dir(out)  # the run's own set: the numbers training wrote
    assert again["deployed"] == json.loads((out / "summary.json").read_text())["deployed"]
    res = final_evaluation_from_dir(out, ["modes=gt_only", "final_eval_n=4"])
    assert res["eval_overrides"] == ["modes=gt_only", "final_eval_n=4"]
    for state in ("deployed", "as_trained"):
        assert res[state]["n"] == 4
        assert res[state]["hack"] == 0.0  # gt_only has no loophole to pay
        assert list(res[state]["by_mode"]) == ["gt_only"]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    with pytest.raises(ValueError, match="only evaluation fields can change.*'rank'"):
        final_evaluation_from_dir(out, ["rank=8"])
    capsys.readouterr()
    result = tmp_path / "base.json"
    argv = ["eval", str(out), "--base-model", "--set", "final_eval_n=4", "--out", str(result)]
    assert main(argv) == 0
    base = json.loads(result.read_text())
    assert base["eval_overrides"] == ["final_eval_n=4"] and base["base_model"]["n"] == 4
    assert json.loads(capsys.readouterr().out) == base
