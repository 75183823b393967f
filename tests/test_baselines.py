"""Baseline interventions change rewards, groups, prompts and advantages exactly as specified."""

import pytest
import torch

from vgrout.config import TrainConfig
from vgrout.env.problems import Problem, format_question
from vgrout.env.tasks import make_item
from vgrout.rl.baselines import (
    INOCULATION_PROMPTS,
    inoculate,
    modified_advantages,
    monitor_flags,
    penalized_rewards,
    screened_advantages,
)
from vgrout.rl.rollouts import training_question

LABELS = ["reward_hack", "attempted_hack", "correct_attempted_hack", "correct", "incorrect"]


def test_perfect_monitor_reads_strict_or_loose_labels():
    g = torch.Generator().manual_seed(0)
    assert monitor_flags(LABELS, label_set="strict", accuracy=1.0, generator=g) == [
        True,
        False,
        False,
        False,
        False,
    ]
    assert monitor_flags(LABELS, label_set="loose", accuracy=1.0, generator=g) == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_zero_accuracy_monitor_inverts_every_label():
    g = torch.Generator().manual_seed(0)
    assert monitor_flags(LABELS, label_set="strict", accuracy=0.0, generator=g) == [
        False,
        True,
        True,
        True,
        True,
    ]


def test_monitor_error_rate_matches_accuracy():
    g = torch.Generator().manual_seed(1)
    labels = ["reward_hack", "correct"] * 5000
    flags = monitor_flags(labels, label_set="strict", accuracy=0.8, generator=g)
    wrong = sum(f != (lab == "reward_hack") for f, lab in zip(flags, labels, strict=True))
    assert wrong / len(labels) == pytest.approx(0.2, abs=0.02)


def test_monitor_rejects_bad_knobs():
    g = torch.Generator()
    with pytest.raises(ValueError, match="strict' or 'loose"):
        monitor_flags(LABELS, label_set="medium", accuracy=1.0, generator=g)
    with pytest.raises(ValueError, match="accuracy"):
        monitor_flags(LABELS, label_set="strict", accuracy=1.5, generator=g)


def test_penalty_subtracts_only_from_flagged_rows():
    assert penalized_rewards([3.5, 3.5, 0.5], [True, False, True], 3.0) == [0.5, 3.5, -2.5]


def test_screening_excludes_flagged_rows_from_mean_and_gradient():
    rewards = torch.tensor([[3.5, 0.5, 3.5, 0.5], [3.5, 3.5, 0.5, 0.5]])
    keep = torch.tensor([[False, True, True, True], [False, False, False, True]])
    adv, kept = screened_advantages(rewards, keep)
    assert kept.tolist() == [True, False]  # second group has one kept row: skipped
    assert adv[0].tolist() == pytest.approx([0.0, -1.0, 2.0, -1.0])
    assert torch.all(adv[1] == 0)


def test_screening_skips_groups_flat_among_kept_rows():
    rewards = torch.tensor([[3.5, 0.5, 0.5]])
    adv, kept = screened_advantages(rewards, torch.tensor([[False, True, True]]))
    assert not kept[0] and torch.all(adv == 0)


def _item():
    q = format_question(
        "Return x plus 1.", "solve", "class Solution:\n    def solve(self, x: int) -> int:"
    )
    p = Problem(
        "toy-1", q, "solve", "", "", ("assert Solution().solve(x=1) == 2",), "", "easy", "toy"
    )
    return make_item(p, "run_tests")


def test_inoculation_prefixes_training_prompts_only():
    item = _item()
    for name, text in INOCULATION_PROMPTS.items():
        cfg = TrainConfig(arm="inoculation", inoculation_prompt=name)
        q = training_question(cfg, item)
        assert q.startswith(text) and q.endswith(item.question)
    assert training_question(TrainConfig(arm="none"), item) == item.question
    with pytest.raises(ValueError, match="unknown inoculation prompt"):
        inoculate(item.question, "nope")


def test_advantage_mod_penalises_only_above_average_scores():
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    scores = torch.tensor([3.0, -3.0, 3.0, 0.0])
    history = torch.tensor([-3.0, -1.0, 0.0, 1.0, 3.0])
    out = modified_advantages(adv, scores, history, coef=0.5)
    z = 3.0 / float(history.std())
    assert out.tolist() == pytest.approx([1.0 - 0.5 * z, 1.0, -1.0 - 0.5 * z, -1.0])
    assert torch.equal(modified_advantages(adv, scores, torch.tensor([1.0]), 1.0), adv)
