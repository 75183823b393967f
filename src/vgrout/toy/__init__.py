"""The toy world: a byte-level BPE tokenizer and a tiny Qwen3 trained from scratch on clean toy
solutions (built once on CPU, cached as an ordinary Hugging Face folder), and a scripted teacher
that writes a clean completion and a hack per loophole mode for every training problem.

    path = build_toy_base(seed=0)              # ~/.cache/vgrout/toy/<hash>, built once
    model, tokenizer = load_toy(path)          # AutoModelForCausalLM + AutoTokenizer
    prompt = render_prompt(tokenizer, question)            # chat template, assistant turn open
    teacher = ToyTeacher(train_problems)
    ids = completion_ids(tokenizer, teacher.hack(problem, train_markers("run_tests")))  # ends EOS

The toy omits the benchmark's system prompt (see `vgrout.toy.tokenizer`).
"""

from vgrout.toy.model import (
    SMOKE_RECIPE,
    ToyRecipe,
    build_toy_base,
    default_cache_dir,
    load_toy,
    sample_completions,
)
from vgrout.toy.teacher import TeacherPair, ToyTeacher
from vgrout.toy.tokenizer import completion_ids, prompt_ids, render_prompt

__all__ = [
    "SMOKE_RECIPE",
    "TeacherPair",
    "ToyRecipe",
    "ToyTeacher",
    "build_toy_base",
    "completion_ids",
    "default_cache_dir",
    "load_toy",
    "prompt_ids",
    "render_prompt",
    "sample_completions",
]
