"""The toy tokenizer: byte-level BPE trained on the toy corpus, with a Qwen-style chat template.

Choices and why:
- Byte-level: every byte has a token, so no text is ever unknown (held-out marker names included).
- GPT-2 word split (minus its contractions) + digits one by one: a name tokenises the same way in
  the hint ("called check_submission()", "`verification complete`") and in code ("def
  check_submission():", "print('verification complete')"), so copying it is copying tokens;
  numbers are digit sequences, so unseen constants are still spelled from seen digits.
- `min_frequency`: a string must be common in the corpus to earn its own token. Rare words (the
  held-out marker words the corpus does not use) stay split into pieces the model *has* trained
  on, instead of becoming a dedicated token whose embedding was never trained (checked by a test).
- The benchmark's fixed sentences ("Your solution to the problem should be a method of the class
  Solution called", "Use the following starter code:", ...) are added tokens, one token each. They
  carry no information, and without them they would be ~40 of a ~90-token prompt: halving the
  prompt halves the cost of every training step and rollout. They are derived from
  `format_question` itself, so they follow any change of the format (if they stop matching, prompts
  just get longer). Hint text stays ordinary words: the hint is the information.
- No system prompt by default: the benchmark's ~40-token system prompt carries no information for a
  model trained from scratch and would double the prompt length. The template still renders a
  system message when one is given.
- A completion is the assistant text followed by `<|im_end|>` (the EOS generation stops on).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from vgrout.env.problems import HINT_ANCHOR, format_question

PAD = "<|endoftext|>"
TURN_START = "<|im_start|>"
EOS = "<|im_end|>"  # end of turn; generation stops here
SPECIAL_TOKENS = (PAD, TURN_START, EOS)

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def boilerplate() -> tuple[str, ...]:
    """The fixed pieces of every benchmark question, in order, each to become one token.

    The piece before the method name ends without its space, so the name tokenises as " solve"
    both in the prompt and in `def solve(`; the hint anchor is its own piece, so a hinted prompt
    only loses that one token.
    """
    slots = ("\x00", "\x01", "\x02")  # description, method, starter code
    text = format_question(*slots)
    pieces = []
    for slot in slots:
        head, text = text.split(slot, 1)
        pieces.append(head)
    pieces.append(text)
    problem, called, anchor_and_starter, tail = pieces
    space_anchor = " " + HINT_ANCHOR
    if not (called.endswith(" ") and anchor_and_starter.startswith(space_anchor)):
        raise ValueError("format_question changed shape; update vgrout.toy.tokenizer.boilerplate")
    return problem, called[:-1], space_anchor, anchor_and_starter[len(space_anchor) :], tail


# GPT-2's word split without its English contractions: with them, `'verification` in code splits
# as `'ve` + `rification`, so a name would tokenise differently in print('...') and in the prompt.
WORD_SPLIT = r" ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.Split(Regex(WORD_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 1024, min_frequency: int = 8
) -> PreTrainedTokenizerFast:
    """Train the byte-level BPE on `texts` and wrap it as a HF fast tokenizer with the template."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = _pre_tokenizer()
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    fixed = boilerplate()
    bpe.train_from_iterator((_without(text, fixed) for text in texts), trainer=trainer)
    bpe.add_tokens([AddedToken(piece, normalized=False) for piece in fixed])
    return wrap_tokenizer(bpe)


def _without(text: str, pieces: tuple[str, ...]) -> str:
    # Merges are learnt from the informative text only; the fixed pieces become tokens anyway.
    for piece in pieces:
        text = text.replace(piece, "\n")
    return text


def wrap_tokenizer(bpe: Tokenizer) -> PreTrainedTokenizerFast:
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=EOS,
        pad_token=PAD,
        chat_template=CHAT_TEMPLATE,
        padding_side="left",  # batched generation appends to the right end of every row
        model_max_length=512,
        clean_up_tokenization_spaces=False,
    )
    return tokenizer


def render_prompt(tokenizer, question: str, system: str | None = None) -> str:
    """The prompt text for one user message: chat template with the assistant turn opened."""
    messages = [{"role": "user", "content": question}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_ids(tokenizer, question: str, system: str | None = None) -> list[int]:
    return tokenizer.encode(render_prompt(tokenizer, question, system), add_special_tokens=False)


def completion_ids(tokenizer, completion: str) -> list[int]:
    """Token ids of a completion as the model emits it, ending with EOS.

    Tokenised on its own (not jointly with the prompt): the prompt ends with a newline after the
    `assistant` role, so the split is a clean token boundary and prompt ids + completion ids equal
    the ids of the concatenated text.
    """
    if EOS in completion:
        raise ValueError("a completion must not contain the end-of-turn token; it is appended here")
    return tokenizer.encode(completion, add_special_tokens=False) + [tokenizer.eos_token_id]


def save_tokenizer(tokenizer, folder) -> None:
    """Save with the chat template inside tokenizer_config.json (read by transformers 4 and 5)."""
    tokenizer.save_pretrained(folder, save_jinja_files=False)
