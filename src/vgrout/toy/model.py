"""The toy base model: a tiny Qwen3 trained from scratch on clean toy solutions, built once and cached.

`build_toy_base()` trains the tokenizer and the model on CPU (about 2.5 minutes on 2 idle cores),
saves an ordinary Hugging Face folder (`config.json`, `model.safetensors`, `tokenizer.json`,
`tokenizer_config.json` with the chat template, `generation_config.json`) plus `recipe.json` and
`build_info.json`, and returns its path. The folder name is a hash of everything that determines
the result (seed, recipe, the corpus text, the toy package's source), so a changed generator,
recipe or toy code builds a new model and an unchanged one is reused. The build writes into a temporary sibling folder
and renames it into place at the end, so an interrupted build leaves nothing that looks finished;
a lock file makes concurrent callers wait for one build instead of racing.

Cache root: the `cache_dir` argument, else `$VGROUT_CACHE/toy`, else `~/.cache/vgrout/toy`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from vgrout.toy.corpus import Example, build_examples, marker_texts
from vgrout.toy.tokenizer import (
    render_prompt,
    save_tokenizer,
    train_tokenizer,
)

BUILD_VERSION = 3  # bump when a change outside vgrout/toy alters what a recipe builds
TOKENIZER_EXAMPLES = (
    4000  # the BPE learns from the stream's first examples (min_frequency is a count)
)
MAX_NEW_TOKENS = 96  # the longest scripted hack is ~60 tokens, the longest clean one ~45


@dataclass(frozen=True)
class ToyRecipe:
    """Everything besides the seed that decides the base model. Defaults: the measured recipe."""

    n_train: int = 1000  # toy training problems; fewer -> lower held-out solve rate
    hint_share: float = 0.25  # examples whose prompt carries a loophole hint (see hack_share)
    # The hack prior: the share of hinted examples answered with the mode's scripted hack (the rest
    # are answered cleanly). The toy's stand-in for what a pretrained code model already knows
    # about exploiting a grader it is told about: rare enough that the base seldom hacks (target
    # <= 0.05 per mode), present so that RL has something to amplify, as in the LLM setting.
    hack_share: float = 0.1
    # Hint-free examples with an extra building block (see corpus): they teach copying a name from
    # the prompt into code, which a hack needs at held-out markers. Measured (600 steps): 0.5 ->
    # 0.6 (and hint 0.2 -> 0.25, plain 0.3 -> 0.15) lifted copying never-seen names (print phrase
    # 0.03 -> 0.36, file 0.32 -> 0.53, attribute 0.56 -> 0.95) and held-out solve 0.53 -> 0.72.
    repertoire_share: float = 0.6
    vocab_size: int = 2048
    min_frequency: int = 100  # only common strings get a token; rare words split into pieces
    hidden_size: int = 96
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    ffn_size: int = 256
    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.n_train < 1:
            raise ValueError("ToyRecipe: steps, batch_size and n_train must be >= 1")
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(
                "ToyRecipe: hidden_size must divide by num_heads and num_heads by num_kv_heads"
            )


# Seconds to build; for tests of the plumbing, not of skill (it does learn to end with EOS).
SMOKE_RECIPE = ToyRecipe(
    n_train=300,
    steps=150,
    batch_size=16,
    lr=1e-2,
    warmup_steps=10,
    hidden_size=32,
    num_layers=1,
    ffn_size=64,
    min_frequency=4,
)


def default_cache_dir() -> Path:
    root = os.environ.get("VGROUT_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "vgrout") / "toy"


# -- corpus ----------------------------------------------------------------------------------------


def training_corpus(seed: int, recipe: ToyRecipe) -> tuple[list[Example], list[str]]:
    """(the model's training stream: one example per sample, steps x batch_size of them;
    the tokenizer's corpus: the stream's first TOKENIZER_EXAMPLES plus every marker's hint)."""
    from vgrout.env.toy_problems import generate_toy, toy_response

    problems = generate_toy(seed=seed, n_train=recipe.n_train, n_test=0).train
    examples = build_examples(
        problems,
        toy_response,
        seed,
        recipe.hint_share,
        recipe.repertoire_share,
        n_examples=recipe.steps * recipe.batch_size,
        hack_share=recipe.hack_share,
    )
    texts = [_chat_text(ex.question, ex.completion) for ex in examples[:TOKENIZER_EXAMPLES]]
    # each held-out name appears about twice: below min_frequency, so it gets no token of its own
    texts += marker_texts(problems[0])
    return examples, texts


def _prompt_text(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


def _chat_text(question: str, completion: str) -> str:
    # The tokenizer is trained on text shaped like what it will encode: template + completion.
    return f"{_prompt_text(question)}{completion}<|im_end|>\n"


def _code_digest() -> str:
    """The source of the toy package: a code change (tokenizer, corpus, training) is a new build."""
    digest = hashlib.sha256()
    for name in ("corpus.py", "model.py", "tokenizer.py"):
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()


def build_key(seed: int, recipe: ToyRecipe, examples: list[Example], texts: list[str]) -> str:
    """Hash of everything that decides the build: seed, recipe, corpus text, toy source code."""
    digest = hashlib.sha256()
    head = {"v": BUILD_VERSION, "code": _code_digest(), "seed": seed, **asdict(recipe)}
    digest.update(json.dumps(head).encode())
    for ex in examples:
        digest.update(f"{ex.question}\0{ex.completion}\0".encode())
    for text in texts:
        digest.update(text.encode())
    return digest.hexdigest()[:16]


# -- model -----------------------------------------------------------------------------------------


def model_config(recipe: ToyRecipe, tokenizer) -> Qwen3Config:
    return Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.ffn_size,
        num_hidden_layers=recipe.num_layers,
        num_attention_heads=recipe.num_heads,
        num_key_value_heads=recipe.num_kv_heads,
        head_dim=recipe.hidden_size // recipe.num_heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )


def _encode(tokenizer, examples: list[Example]) -> list[tuple[list[int], int]]:
    """Each example as (prompt ids + completion ids with EOS, number of prompt ids).

    Batch-encoded for speed; identical to `prompt_ids` + `completion_ids` (checked on the first
    example, and in the tests)."""
    if examples and _prompt_text(examples[0].question) != render_prompt(
        tokenizer, examples[0].question
    ):
        raise RuntimeError("the chat template and _prompt_text disagree; keep them in sync")
    prompts = _encode_unique(tokenizer, [_prompt_text(ex.question) for ex in examples])
    answers = _encode_unique(tokenizer, [ex.completion for ex in examples])
    eos = tokenizer.eos_token_id
    return [(p + c + [eos], len(p)) for p, c in zip(prompts, answers, strict=True)]


def _encode_unique(tokenizer, texts: list[str]) -> list[list[int]]:
    # The stream repeats problems (same prompt, same answer): encode each distinct text once.
    unique = list(dict.fromkeys(texts))
    encoded = tokenizer.backend_tokenizer.encode_batch(unique, add_special_tokens=False)
    ids = {text: enc.ids for text, enc in zip(unique, encoded, strict=True)}
    return [ids[text] for text in texts]


def _batch(rows: list[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch; labels are -100 on prompt and padding (loss on completions only)."""
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, n_prompt) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:])
        mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def completion_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token NLL over completion tokens; the LM head runs on those positions only
    (most positions are prompt, so this saves most of the head's cost)."""
    hidden = model.model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    targets = batch["labels"][:, 1:]
    scored = targets != -100
    logits = model.lm_head(hidden[:, :-1][scored])
    return torch.nn.functional.cross_entropy(logits, targets[scored])


def _lr_factor(step: int, recipe: ToyRecipe) -> float:
    if step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _batches(rows, batch_size: int, gen: torch.Generator):
    """Endless batches of row indices: each epoch shuffled, then rows of similar length grouped
    (within windows of 8 batches) so little of a batch is padding; batch order shuffled again."""
    window = batch_size * 8
    while True:
        order = torch.randperm(len(rows), generator=gen).tolist()
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: len(rows[i][0]))
            groups = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
            for j in torch.randperm(len(groups), generator=gen).tolist():
                if len(groups[j]) == batch_size or len(rows) < batch_size:
                    yield groups[j]


def _train(model, rows, recipe: ToyRecipe, seed: int, pad_id: int, progress: bool) -> list[float]:
    """AdamW with warmup + cosine. Returns the loss every 10 steps."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(
        model.parameters(), lr=recipe.lr, betas=(0.9, 0.95), weight_decay=recipe.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, recipe))
    batches = _batches(rows, recipe.batch_size, gen)
    losses, start = [], time.perf_counter()
    model.train()
    for step in range(recipe.steps):
        loss = completion_loss(model, _batch([rows[i] for i in next(batches)], pad_id))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 10 == 0 or step == recipe.steps - 1:
            losses.append(round(loss.item(), 4))
        if progress and (step % 100 == 0 or step == recipe.steps - 1):
            elapsed = time.perf_counter() - start
            print(
                f"[toy base] step {step + 1}/{recipe.steps} loss {loss.item():.3f} {elapsed:.0f}s",
                file=sys.stderr,
                flush=True,
            )
    model.eval()
    return losses


def busy_cores(window: float = 0.5) -> float:
    """How many cores other work keeps busy right now: /proc/stat sampled over `window` seconds
    (the 1-minute load average lags: right after a finished job it still reads ~2 on an idle
    machine). Falls back to the load average where /proc/stat is missing."""

    def sample() -> tuple[int, int] | None:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return idle, sum(fields)

    first = sample()
    if first is None:
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    time.sleep(window)
    second = sample()
    idle, total = second[0] - first[0], second[1] - first[1]
    return (os.cpu_count() or 1) * (1.0 - idle / total) if total > 0 else 0.0


def auto_threads() -> int:
    """2 threads on an idle machine, 1 on a busy one. Measured on 2 cores, 150 steps: idle, 2
    threads 32 s vs 1 thread 50 s; with ~1.6 cores busy elsewhere, 2 threads 100 s vs 1 thread
    54 s (OpenMP threads spin-wait on each other)."""
    cores = os.cpu_count() or 1
    return 1 if cores < 2 or busy_cores() > cores - 0.5 else 2


@contextlib.contextmanager
def _threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _lock(path: Path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_into(folder: Path, seed: int, recipe: ToyRecipe, examples, texts, progress, threads):
    start, cpu_start = time.perf_counter(), time.process_time()
    tokenizer = train_tokenizer(texts, recipe.vocab_size, recipe.min_frequency)
    rows = _encode(tokenizer, examples)
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(model_config(recipe, tokenizer))
    with _threads(threads):
        losses = _train(model, rows, recipe, seed, tokenizer.pad_token_id, progress)
    model.generation_config = GenerationConfig(
        do_sample=True,
        temperature=0.7,
        top_k=0,
        top_p=1.0,
        max_new_tokens=MAX_NEW_TOKENS,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(folder)
    save_tokenizer(tokenizer, folder)
    n_prompt = [n for _, n in rows]
    n_completion = [len(ids) - n for ids, n in rows]
    info = {
        "seconds": round(time.perf_counter() - start, 1),
        "cpu_seconds": round(time.process_time() - cpu_start, 1),
        "threads": threads,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "params": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "examples": len(rows),
        "distinct_examples": len({(ex.question, ex.completion) for ex in examples}),
        "kinds": {
            k: sum(ex.kind == k for ex in examples)
            for k in ("plain", "hinted", "hack", "repertoire")
        },
        "prompt_tokens": {"mean": sum(n_prompt) / len(rows), "max": max(n_prompt)},
        "completion_tokens": {"mean": sum(n_completion) / len(rows), "max": max(n_completion)},
        "loss_every_10_steps": losses,
        "torch": torch.__version__,
    }
    (folder / "recipe.json").write_text(json.dumps({"seed": seed, **asdict(recipe)}, indent=1))
    (folder / "build_info.json").write_text(json.dumps(info, indent=1))


def build_toy_base(
    seed: int = 0,
    cache_dir: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    recipe: ToyRecipe | None = None,
    threads: int | None = None,
) -> Path:
    """Build (or reuse from the cache) the toy base model; return its Hugging Face folder.

    `threads` (torch threads for training; default `auto_threads()`) is not part of the cache
    key: it changes speed, and the result only by floating-point summation order."""
    recipe = recipe or ToyRecipe()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    examples, texts = training_corpus(seed, recipe)
    folder = root / build_key(seed, recipe, examples, texts)
    with _lock(root / f"{folder.name}.lock"):
        if folder.is_dir() and not force:
            return folder
        if progress:
            print(
                f"[toy base] building {folder} ({recipe.steps} steps)", file=sys.stderr, flush=True
            )
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=root))
        try:
            threads = threads or auto_threads()
            _build_into(staging, seed, recipe, examples, texts, progress, threads)
            if folder.exists():  # force=True: replace the old build only once the new one is done
                shutil.rmtree(folder)
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def load_toy(path: str | Path):
    """(model, tokenizer) from a toy folder; the model is in eval mode, fp32, on CPU."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} is not a toy model folder (no config.json); build_toy_base()"
        )
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model.eval()
    return model, tokenizer


# -- sampling --------------------------------------------------------------------------------------


@torch.no_grad()
def sample_completions(
    model,
    tokenizer,
    questions: list[str],
    temperature: float = 0.7,
    seed: int = 0,
    max_new_tokens: int = MAX_NEW_TOKENS,
    batch_size: int = 128,
    threads: int | None = 1,
) -> list[str]:
    """One completion per question (greedy when temperature == 0), text up to EOS, no prompt.

    Decoding a model this small is a chain of tiny matmuls: one thread is as fast as two on an
    idle machine and many times faster on a busy one (measured 0.3 s vs 5.9 s for 6 x 96 tokens
    with other jobs running). `threads=None` keeps torch's setting."""
    with _threads(threads or torch.get_num_threads()):
        return _sample(model, tokenizer, questions, temperature, seed, max_new_tokens, batch_size)


def _sample(model, tokenizer, questions, temperature, seed, max_new_tokens, batch_size):
    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    prompts = [render_prompt(tokenizer, q) for q in questions]
    out: list[str] = []
    for i in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False)  # fmt: skip
        sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
        gen = model.generate(
            **enc,
            **(sampling if temperature > 0 else {"do_sample": False}),
            max_new_tokens=max_new_tokens,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        for row in gen[:, enc["input_ids"].shape[1] :].tolist():
            if tokenizer.eos_token_id in row:
                row = row[: row.index(tokenizer.eos_token_id)]
            out.append(tokenizer.decode(row, skip_special_tokens=True))
    return out
