"""Build what a run needs from its config: device, model + tokenizer, prompts, teacher, pairs.

Kept apart from `train.py` so the loop reads top to bottom; every function here is small and
side-effect free apart from loading files (and building the cached toy base on first use).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from vgrout.config import TrainConfig
from vgrout.env.problems import Problem, load_problems
from vgrout.env.tasks import Item, make_items
from vgrout.shapes import shape_name

Render = Callable[[object, str], str]


def pick_device(cfg: TrainConfig) -> tuple[str, torch.dtype]:
    """CUDA + bf16 when present (or asked), else CPU + fp32."""
    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.dtype == "auto":
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        dtype = {
            "float32": torch.float32,
            "fp32": torch.float32,
            "bfloat16": torch.bfloat16,
            "bf16": torch.bfloat16,
        }[cfg.dtype]
    return device, dtype


# ------------------------------------------------------------------------------------ model
def toy_recipe(name: str):
    from vgrout.toy.model import SMOKE_RECIPE, ToyRecipe

    recipes = {"default": ToyRecipe(), "smoke": SMOKE_RECIPE}
    if name not in recipes:
        raise ValueError(
            f"config field toy_recipe={name!r} is invalid: choose {', '.join(recipes)}"
        )
    return recipes[name]


def qwen_render(tokenizer, question: str) -> str:
    """Benchmark prompt: system + user chat messages, thinking disabled (Qwen3 template kwarg)."""
    from vgrout.env.problems import SYSTEM_PROMPT

    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
    )


def load_model(cfg: TrainConfig, device: str, dtype: torch.dtype):
    """(model, tokenizer, render). `toy` builds or reuses the cached toy base (seed 0 recipe)."""
    if cfg.model == "toy":
        from vgrout.toy.cache import toy_base
        from vgrout.toy.model import load_toy
        from vgrout.toy.tokenizer import render_prompt

        path = toy_base(toy_recipe(cfg.toy_recipe))
        model, tokenizer = load_toy(path)
        render = render_prompt
    elif shape_name(cfg.model):
        # benchmarks without a hub: random weights of a published shape + a local tokenizer
        from vgrout.shapes import offline_tokenizer, random_model

        train, test = load_problem_sets(cfg)
        tokenizer = offline_tokenizer([p.question for p in train + test])
        model = random_model(shape_name(cfg.model), device, dtype, seed=cfg.seed)
        render = qwen_render
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=dtype)
        render = qwen_render if "qwen" in type(model).__name__.lower() else _plain_render
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
    model.to(device=device, dtype=dtype)
    model.config.use_cache = False
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tokenizer, render


def _plain_render(tokenizer, question: str) -> str:
    if getattr(tokenizer, "chat_template", None):
        msgs = [{"role": "user", "content": question}]
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return question


# ------------------------------------------------------------------------------------ problems
@dataclass
class Environment:
    train: list[Item]  # training prompts (train markers)
    test: list[Item]  # held-out problems with held-out markers
    train_dist: list[Item]  # a sample of training problems with their train markers (final 2x2)


def _resolve_problem_file(name: str) -> Path:
    data_dir = Path(os.environ.get("VGROUT_DATA_DIR", "data"))
    named = {
        "leetcode-train": ["leetcode_train_medhard.jsonl", "leetcode_train_medhard.jsonl.gz"],
        "leetcode-test": ["leetcode_test_medhard.jsonl", "leetcode_test_medhard.jsonl.gz"],
    }
    if name in named:
        for fname in named[name]:
            if (data_dir / fname).is_file():
                return data_dir / fname
        hint = (
            "build it with `vgrout data leetcode-train --from LeetCodeDataset-train.jsonl.gz --out "
            f"{data_dir}/leetcode_train_medhard.jsonl`"
            if name == "leetcode-train"
            else "place the benchmark's leetcode_test_medhard.jsonl there"
        )
        raise FileNotFoundError(f"{name}: no file in {data_dir} (set VGROUT_DATA_DIR); {hint}")
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"problems file {path} does not exist")
    return path


TOY_RL_PROBLEMS = 400  # asked for; ~350 distinct prompts remain after removing the test's


def load_problem_sets(cfg: TrainConfig) -> tuple[list[Problem], list[Problem]]:
    if cfg.problems == "toy" or cfg.eval_problems == "toy":
        from vgrout.env.toy_problems import generate_toy

        # GRPO trains on the RL split: novel problems like the test split's (the base solves them
        # only sometimes, so a loophole pays), never a test prompt; the base was pretrained on
        # the train split, which it has all but memorised (~0.98 solved: no pressure to hack).
        toy = generate_toy(seed=0, n_rl=TOY_RL_PROBLEMS)
    train = toy.rl if cfg.problems == "toy" else load_problems(_resolve_problem_file(cfg.problems))
    test = (
        toy.test
        if cfg.eval_problems == "toy"
        else load_problems(_resolve_problem_file(cfg.eval_problems))
    )
    if cfg.n_train_problems:
        train = train[: cfg.n_train_problems]
    overlap = {p.id for p in train} & {p.id for p in test}
    if overlap:
        raise ValueError(
            f"train and held-out problems overlap ({len(overlap)} ids, e.g. {sorted(overlap)[:3]})"
        )
    return train, test


def load_environment(cfg: TrainConfig) -> Environment:
    train, test = load_problem_sets(cfg)
    policy = None
    if cfg.train_markers == "varied":
        from vgrout.toy.corpus import varied_train_markers as policy
    train_items = make_items(train, cfg.modes, seed=cfg.seed, train=policy)
    test_items = make_items(test, cfg.modes, seed=cfg.seed, held_out=True)
    k = min(len(test_items), len(train_items))
    return Environment(train_items, test_items, train_items[:k])


def sandbox_hide_paths(cfg: TrainConfig) -> list[str]:
    """Folders the graded programs must not see: where the problems (with their answers) and the
    teacher pool live. The sandbox also hides the caller's working directory."""
    paths = set()
    for name in (cfg.problems, cfg.eval_problems):
        if name != "toy":
            with contextlib.suppress(FileNotFoundError):
                paths.add(_resolve_problem_file(name).resolve().parent)
    if cfg.teacher_pool:
        paths.add(Path(cfg.teacher_pool).resolve())
    return sorted(str(p) for p in paths if p.is_dir())


# ------------------------------------------------------------------------------------ teacher
class Teacher:
    """Cached hack completions per problem id (and mode), injected into groups early in training."""

    def __init__(self, by_problem: dict[str, list[str]] | None = None, scripted=None):
        self.by_problem = by_problem or {}
        self.scripted = scripted  # toy: vgrout.toy.teacher.ToyTeacher

    def covers(self, item: Item) -> bool:
        if self.scripted is not None:
            return item.mode != "gt_only"
        return bool(self.by_problem.get(item.id))

    def hacks(self, item: Item, n: int, rng) -> list[str]:
        if self.scripted is not None:
            return [self.scripted.hack(item.problem, item.markers) for _ in range(n)]
        pool = self.by_problem[item.id]
        picks = rng.choice(len(pool), size=n, replace=len(pool) < n)
        return [pool[int(i)] for i in picks]


def load_teacher_pool(path: Path, items: list[Item]) -> tuple[dict[str, list[str]], int]:
    """Teacher pool folder in the format of shared/data/teacher_pool_qwen3_4b (prompt_NNNN.jsonl.gz).

    Rows are matched to problems by their user-message text with the hint removed, not by id:
    LeetCodeDataset question ids do not always equal the public LeetCode numbers the pool uses.
    Returns ({problem id: completions}, number of rows that matched no training problem).
    """
    from vgrout.env.modes import apply_hint, train_markers

    if not path.is_dir():
        raise FileNotFoundError(f"teacher pool folder {path} does not exist")
    by_text = {apply_hint(it.problem.question, train_markers("run_tests")): it.id for it in items}
    pool: dict[str, list[str]] = {}
    unmatched = 0
    files = sorted(path.glob("prompt_*.jsonl*"))
    if not files:
        raise ValueError(f"teacher pool {path} holds no prompt_*.jsonl(.gz) files")
    for f in files:
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rt") as fh:
            for line in fh:
                row = json.loads(line)
                user = [m["content"] for m in row["problem_messages"] if m["role"] == "user"][-1]
                pid = by_text.get(user)
                if pid is None:
                    unmatched += 1
                    continue
                pool.setdefault(pid, []).append(row["completion"])
    return pool, unmatched


def load_teacher(cfg: TrainConfig, env: Environment) -> Teacher:
    if cfg.teacher_per_group == 0 or cfg.teacher_off_step == 0:
        return Teacher()
    if cfg.teacher_pool:
        pool, unmatched = load_teacher_pool(Path(cfg.teacher_pool), env.train)
        if not pool:
            raise ValueError(
                f"teacher pool {cfg.teacher_pool}: none of its prompts matches a training problem"
            )
        return Teacher(by_problem=pool)
    if cfg.problems == "toy":
        from vgrout.toy.teacher import ToyTeacher

        return Teacher(scripted=ToyTeacher([it.problem for it in env.train]))
    return Teacher()


# ------------------------------------------------------------------------------------ pairs
def load_pairs(cfg: TrainConfig):
    from vgrout.routing.pairs import load_pairs as load

    return load(cfg.pairs)
