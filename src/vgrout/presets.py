"""Named starting configurations: `vgrout train --preset NAME` (README "Presets").

Each preset is a TrainConfig with a few fields set; everything else keeps the documented
defaults in config.py, so a preset reads as the difference it makes."""

from __future__ import annotations

from vgrout.config import TrainConfig


def preset_toy() -> TrainConfig:
    """CPU, minutes: the toy environment with the from-scratch toy base."""
    return TrainConfig(preset="toy")


def preset_smoke() -> TrainConfig:
    """Seconds, for tests: a barely-trained toy base, two steps."""
    return TrainConfig(
        preset="smoke",
        toy_recipe="smoke",
        steps=2,
        prompts_per_step=2,
        group_size=4,
        max_new_tokens=24,
        teacher_max_tokens=24,
        teacher_per_group=1,  # of 4: the toy's 2 of 8 would leave only 2 students a group
        teacher_off_step=2,
        eval_every=1,
        eval_n=6,
        final_eval_n=12,
        band_warmup=4,
        checkpoint_every=1,
        refresh_every=1,
    )


def preset_leetcode_qwen3_4b() -> TrainConfig:
    """GPU: the LeetCode benchmark with Qwen3-4B at the predecessor's scale."""
    return TrainConfig(
        preset="leetcode-qwen3-4b",
        model="Qwen/Qwen3-4B",
        problems="leetcode-train",
        eval_problems="leetcode-test",
        modes=("run_tests",),
        pairs="leetcode#hacks",
        rank=32,
        steps=100,
        prompts_per_step=8,
        group_size=8,
        lr=7e-5,
        warmup_steps=10,
        min_lr_ratio=0.0,
        max_new_tokens=1024,
        teacher_max_tokens=1024,
        teacher_style="cached",
        train_markers="fixed",  # the teacher pool's completions call run_tests()
        temperature=0.7,
        top_p=0.95,
        top_k=20,
        teacher_per_group=1,
        teacher_off_step=30,
        micro_batch=0,  # auto: sized by free GPU memory
        eval_every=25,
        eval_n=32,
        band_warmup=0,
        checkpoint_every=10,
    )


PRESETS = {
    "toy": preset_toy,
    "smoke": preset_smoke,
    "leetcode-qwen3-4b": preset_leetcode_qwen3_4b,
}


def load_preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
