"""`vgrout bench step` and `vgrout bench trl` on tiny arguments: the breakdown and the ratio line."""

from __future__ import annotations

import re

import pytest

from vgrout.cli import main

PHASE_LINE = re.compile(
    r"^(\S+)\s+\d+\.\d{3} s/step .*\| generate [\d.]+ \(\d+%\), grade .*, gate .*, update .*, "
    r"refresh .* \| \d+ gen tok/s"
)


def bench_lines(capsys, argv: list[str]) -> list[str]:
    assert main(argv) == 0
    return capsys.readouterr().out.strip().splitlines()


def test_bench_step_toy_prints_phases_per_arm_and_the_ratio_last(capsys):
    lines = bench_lines(capsys, ["bench", "step", "--preset", "smoke", "--steps", "1",
                                 "--warmup", "0", "--arms", "none,plain,routeV"])  # fmt: skip
    assert [m.group(1) for m in map(PHASE_LINE.match, lines) if m] == ["none", "plain", "routeV"]
    assert re.fullmatch(r"routeV/none = \d+\.\d\dx \(target <= 1\.3\)", lines[-1])


def test_bench_step_refuses_random_weights_for_the_toy_and_a_ratio_without_its_arms(capsys):
    assert main(["bench", "step", "--preset", "smoke", "--random-weights"]) != 0
    assert "--random-weights is for hub models" in capsys.readouterr().err
    assert main(["bench", "step", "--preset", "smoke", "--arms", "none,plain"]) != 0
    assert "must include none and routeV" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_step_random_weights_of_a_published_shape(capsys, shared_data):
    leetcode = shared_data / "leetcode"
    lines = bench_lines(capsys, [
        "bench", "step", "--preset", "leetcode-qwen3-4b", "--random-weights",
        "--shape", "qwen3-vocab-tiny", "--steps", "1", "--warmup", "0",
        "--set", f"problems={leetcode / 'LeetCodeDataset-v0.2.0-train.jsonl.gz'}",
        "--set", f"eval_problems={leetcode / 'leetcode_test_medhard.jsonl.gz'}",
        "--set", "prompts_per_step=2", "--set", "group_size=2", "--set", "max_new_tokens=4",
        "--set", "rank=2", "--set", "device=cpu",
    ])  # fmt: skip
    assert "model=random:qwen3-vocab-tiny" in lines[0] or "random:qwen3-vocab-tiny" in lines[0]
    assert [m.group(1) for m in map(PHASE_LINE.match, lines) if m] == ["none", "routeV"]
    assert re.fullmatch(r"routeV/none = \d+\.\d\dx \(target <= 1\.3\)", lines[-1])


def test_random_weights_train_every_row_and_the_toy_keeps_its_defaults():
    """A random model earns no reward: without this every group is flat and skipped, and the step
    would time neither the gate nor the update."""
    from vgrout.bench.step import bench_configs

    scale = bench_configs("leetcode-qwen3-4b", True, "qwen3-vocab-tiny", (), None)
    assert set(scale) == {"none", "routeV"}
    assert all(
        not c.skip_flat_groups and c.model == "random:qwen3-vocab-tiny" for c in scale.values()
    )
    toy = bench_configs("toy", False, None, (), None)
    assert all(c.skip_flat_groups and c.teacher_off_step == 1000 for c in toy.values())


def test_an_unknown_random_shape_is_refused_by_name():
    from vgrout.presets import load_preset

    with pytest.raises(ValueError, match="unknown shape 'qwen9'.*random:qwen3-4b"):
        load_preset("toy").override(["model=random:qwen9"]).validate()


@pytest.mark.slow
def test_bench_trl_prints_both_steps_and_the_ratio_last(capsys):
    pytest.importorskip("trl")
    lines = bench_lines(capsys, ["bench", "trl", "--steps", "1", "--warmup", "1",
                                 "--set", "toy_recipe=smoke", "--set", "max_new_tokens=8"])  # fmt: skip
    assert any(line.startswith("TRL GRPOTrainer ") and "s/step" in line for line in lines)
    assert any(line.startswith("vgrout none ") and "100% of rows trained" in line for line in lines)
    assert re.fullmatch(
        r"none/TRL = \d+\.\d\dx \(target <= 0\.8; per-step pairs: quartiles "
        r"\d+\.\d\d-\d+\.\d\dx\)",
        lines[-1],
    )
